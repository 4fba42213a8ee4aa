"""Configuration: the packaged defaults (default_config.toml) overlaid with a user TOML file."""

from __future__ import annotations

import copy
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError

Config = dict[str, dict[str, Any]]


def default_config() -> Config:
    text = resources.files("qc_daemon").joinpath("default_config.toml").read_text()
    return tomllib.loads(text)


def load_config(path: str | Path | None = None, overrides: Config | None = None) -> Config:
    """Defaults, then the file at ``path``, then ``overrides``. Unknown sections or keys are an error."""
    cfg = default_config()
    layers: list[tuple[str, Config]] = []
    if path is not None:
        p = Path(path)
        try:
            layers.append((str(p), tomllib.loads(p.read_text())))
        except FileNotFoundError:
            raise InputError(p, "config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, f"not valid TOML ({exc})") from None
    if overrides:
        layers.append(("overrides", overrides))
    for origin, layer in layers:
        for section, values in layer.items():
            if section not in cfg or not isinstance(values, dict):
                raise InputError(origin, f"unknown config section [{section}]")
            for key, value in values.items():
                if key not in cfg[section]:
                    raise InputError(origin, f"unknown config key {section}.{key}")
                default = cfg[section][key]
                if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
                    raise InputError(origin, f"{section}.{key} must be a number")
                if isinstance(default, list) and (not isinstance(value, list) or len(value) != len(default)):
                    raise InputError(origin, f"{section}.{key} must be a list of {len(default)} numbers")
                cfg[section][key] = copy.deepcopy(value)
        problem = validate(cfg)
        if problem:
            raise InputError(origin, problem)
    return cfg


# What each kind of value may be; the unit is in the key's name. (low, high, low inclusive): a number's range.
_POSITIVE = (0.0, math.inf, False)
_NON_NEGATIVE = (0.0, math.inf, True)
_FRACTION = (0.0, 1.0, False)  # 0 < v <= 1, e.g. 0.05 = 5 %
_RANGES: dict[str, tuple[float, float, bool]] = {
    "registration.baseline_skip_s": _NON_NEGATIVE,
    "registration.ramp_min_dominance": _NON_NEGATIVE,
    "registration.water_fit_min_snr": _NON_NEGATIVE,
    "linewidth.min_peak_snr": _NON_NEGATIVE,
    "linewidth.min_fraction_of_water": (0.0, 1.0, True),
    "linewidth.max_ratio_to_reference": (1.0, math.inf, True),
    "frequency.min_drift_span_s": _NON_NEGATIVE,
    "frequency.max_rate_se_fraction": (0.0, 1.0, False),
    "snr.target": _NON_NEGATIVE,
    "motion.min_phase_jump_deg": (0.0, 180.0, True),
    "motion.early_max_phase_deg": (0.0, 180.0, False),
    "motion.min_amplitude_change": (0.0, 1.0, True),
    "motion.early_min_amplitude": (0.0, 1.0, True),
}
_INTEGERS = {"coils.calibration_transients", "linewidth.zero_fill", "linewidth.metab_zero_fill",
             "linewidth.metab_every", "motion.min_history", "motion.history", "frequency.min_drift_transients",
             "snr.min_growth_points", "registration.water_fit_agreement_window",
             "frequency.filter_reacquire_after"}
# two tapers (low edge, high edge), not a window
_UNORDERED_LISTS = {"registration.band_taper_ppm", "registration.water_fit_taper_ppm"}
# (warn, fail) pairs: a warning limit beyond its failure limit is a mistake
_WARN_BEFORE_FAIL = [("frequency.warn_band_ppm", "frequency.fail_ppm"),
                     ("linewidth.water_warn_ppm", "linewidth.water_fail_ppm"),
                     ("linewidth.metab_warn_ppm", "linewidth.metab_fail_ppm"),
                     ("verdict.flagged_warn_fraction", "verdict.flagged_fail_fraction")]


def _rule(name: str) -> tuple[float, float, bool]:
    if name in _RANGES:
        return _RANGES[name]
    if name.endswith("_fraction"):
        return _FRACTION
    return _POSITIVE


def _describe(rule: tuple[float, float, bool]) -> str:
    lo, hi, closed = rule
    if rule == _FRACTION:
        return "a fraction in 0..1 (0.05 = 5 %)"
    low = f">= {lo:g}" if closed else f"> {lo:g}"
    return low if hi == math.inf else f"{low} and <= {hi:g}"


def validate(cfg: Config) -> str | None:
    """The first value that makes no sense (wrong range, a window given high..low, a warning limit beyond
    its failure limit), named with its key and what is allowed; None when all are fine."""
    for section, values in cfg.items():
        for key, value in values.items():
            name = f"{section}.{key}"
            if isinstance(value, bool) or not isinstance(value, (int, float, list)):
                continue
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items):
                return f"{name} = {value!r}: must be finite numbers"
            if isinstance(value, list):
                if name in _UNORDERED_LISTS:
                    if any(v < 0 for v in value):
                        return f"{name} = {value}: both widths must be >= 0"
                elif len(value) == 2 and not value[0] < value[1]:
                    return f"{name} = {value}: must be [low, high] with low < high"
                continue
            if name in _INTEGERS and (value != int(value) or value < 1):
                return f"{name} = {value!r}: must be a whole number >= 1"
            lo, hi, closed = rule = _rule(name)
            if not ((value >= lo if closed else value > lo) and value <= hi):
                return f"{name} = {value!r}: must be {_describe(rule)}"
    for warn, fail in _WARN_BEFORE_FAIL:
        (ws, wk), (fs, fk) = warn.split("."), fail.split(".")
        if cfg[ws][wk] > cfg[fs][fk]:
            return (f"{warn} = {cfg[ws][wk]!r} is above {fail} = {cfg[fs][fk]!r}: a warning limit must not exceed "
                    "its failure limit")
    if cfg["motion"]["history"] < cfg["motion"]["min_history"]:
        return "motion.history must be >= motion.min_history"
    return None
