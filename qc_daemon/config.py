"""Configuration: the engine's sections (default_config.toml) and each installed check's own section (its
declaration's ConfigSpec), overlaid with a user TOML file. Every key is typed by its default and checked at
start-up: an unknown section or key, a wrong type or a value out of range is an error that names it."""

from __future__ import annotations

import copy
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError
from .plugin_api import ConfigSpec, Rule, installed_checks

Config = dict[str, dict[str, Any]]

_POSITIVE: Rule = (0.0, math.inf, False)
_NON_NEGATIVE: Rule = (0.0, math.inf, True)
_FRACTION: Rule = (0.0, 1.0, False)  # 0 < v <= 1, e.g. 0.05 = 5 %

#: the rules of the engine's own sections beyond each value's type (the checks declare theirs)
_ENGINE_RULES: dict[str, dict[str, Any]] = {
    "coils": {"integers": {"calibration_transients"}},
    "registration": {
        "integers": {"water_fit_agreement_window"},
        "ranges": {"baseline_skip_s": _NON_NEGATIVE, "ramp_min_dominance": _NON_NEGATIVE,
                   "water_fit_min_snr": _NON_NEGATIVE},
        "unordered": {"band_taper_ppm", "water_fit_taper_ppm"}},
    "tracking": {"integers": {"filter_reacquire_after"}},
    "verdict": {"warn_before_fail": (("flagged_warn_fraction", "flagged_fail_fraction"),)},
}

#: keys that moved to the engine's sections when checks got their own (an old config file says where)
_MOVED = {"frequency." + k: "tracking." + k for k in (
    "filter_jitter_hz", "filter_accel_hz2_per_s3", "filter_slope_prior_hz_per_s", "filter_gate_z",
    "filter_reacquire_after", "trend_window_s")}
_MOVED.update({"snr.noise_window_ppm": "noise.window_ppm", "snr.fallback_tail_fraction": "noise.fallback_tail_fraction",
               "snr.fallback_edges_ppm": "noise.fallback_edges_ppm"})


def toml_section(package: str, filename: str) -> dict[str, Any]:
    """The one section of a TOML file shipped in ``package`` (a check's defaults beside its module)."""
    doc = tomllib.loads(resources.files(package).joinpath(filename).read_text())
    if len(doc) != 1:
        raise ValueError(f"{package}/{filename} must hold exactly one [section]")
    return next(iter(doc.values()))


def specs() -> dict[str, ConfigSpec]:
    """Every config section with its spec: the engine's, then each installed check's (named after it)."""
    engine = tomllib.loads(resources.files("qc_daemon").joinpath("default_config.toml").read_text())
    out = {}
    for section, defaults in engine.items():
        rules = _ENGINE_RULES.get(section, {})
        out[section] = ConfigSpec(defaults, frozenset(rules.get("integers", ())), dict(rules.get("ranges", {})),
                                  frozenset(rules.get("unordered", ())), tuple(rules.get("warn_before_fail", ())))
    for name, cls in installed_checks().items():
        if name in out:
            raise InputError("checks", f"check {name!r} has the name of an engine config section")
        out[name] = cls.declaration.config
    return out


def default_config() -> Config:
    return {section: copy.deepcopy(spec.defaults) for section, spec in specs().items()}


def load_config(path: str | Path | None = None, overrides: Config | None = None) -> Config:
    """Defaults, then the file at ``path``, then ``overrides``. Unknown sections or keys are an error."""
    all_specs = specs()
    cfg = {section: copy.deepcopy(spec.defaults) for section, spec in all_specs.items()}
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
                raise InputError(origin, f"unknown config section [{section}]; sections: {', '.join(cfg)}")
            for key, value in values.items():
                problem = _typed(section, key, value, cfg[section])
                if problem:
                    raise InputError(origin, problem)
                cfg[section][key] = copy.deepcopy(value)
        problem = validate(cfg, all_specs)
        if problem:
            raise InputError(origin, problem)
    return cfg


def _typed(section: str, key: str, value: Any, current: dict[str, Any]) -> str | None:
    name = f"{section}.{key}"
    if key not in current:
        moved = _MOVED.get(name)
        return f"unknown config key {name}" + (f" (it is {moved} now)" if moved else "")
    default = current[key]
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{name} must be true or false"
    if isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{name} must be a number"
    if isinstance(default, str) and not isinstance(value, str):
        return f"{name} must be text"
    if isinstance(default, list):
        if not default or all(isinstance(v, str) for v in default):  # a list of names
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"{name} must be a list of names"
        elif not isinstance(value, list) or len(value) != len(default):
            return f"{name} must be a list of {len(default)} numbers"
    return None


def _rule(spec: ConfigSpec, key: str) -> Rule:
    if key in spec.ranges:
        return spec.ranges[key]
    if key.endswith("_fraction"):
        return _FRACTION
    return _POSITIVE


def _describe(rule: Rule) -> str:
    lo, hi, closed = rule
    if rule == _FRACTION:
        return "a fraction in 0..1 (0.05 = 5 %)"
    low = f">= {lo:g}" if closed else f"> {lo:g}"
    return low if hi == math.inf else f"{low} and <= {hi:g}"


def validate(cfg: Config, all_specs: dict[str, ConfigSpec] | None = None) -> str | None:
    """The first value that makes no sense (wrong range, a window given high..low, a warning limit beyond
    its failure limit, a section's own rule), named with its key and what is allowed; None when all are
    fine."""
    all_specs = all_specs if all_specs is not None else specs()
    for section, values in cfg.items():
        spec = all_specs[section]
        for key, value in values.items():
            problem = _check_value(spec, f"{section}.{key}", key, value)
            if problem:
                return problem
        for warn, fail in spec.warn_before_fail:
            if values[warn] > values[fail]:
                return (f"{section}.{warn} = {values[warn]!r} is above {section}.{fail} = {values[fail]!r}: a "
                        "warning limit must not exceed its failure limit")
        if spec.rule is not None:
            problem = spec.rule(values)
            if problem:
                return f"[{section}]: {problem}"
    installed = installed_checks()
    unknown = [n for n in cfg.get("checks", {}).get("disable", []) if n not in installed]
    if unknown:
        return f"checks.disable names {unknown}: no such check (installed: {', '.join(installed)})"
    return None


def _check_value(spec: ConfigSpec, name: str, key: str, value: Any) -> str | None:
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float, list)):
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return None  # a list of names (checked where it is used)
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items):
        return f"{name} = {value!r}: must be finite numbers"
    if isinstance(value, list):
        if key in spec.unordered:
            if any(v < 0 for v in value):
                return f"{name} = {value}: both widths must be >= 0"
        elif len(value) == 2 and not value[0] < value[1]:
            return f"{name} = {value}: must be [low, high] with low < high"
        return None
    if key in spec.integers and (value != int(value) or value < 1):
        return f"{name} = {value!r}: must be a whole number >= 1"
    lo, hi, closed = rule = _rule(spec, key)
    if not ((value >= lo if closed else value > lo) and value <= hi):
        return f"{name} = {value!r}: must be {_describe(rule)}"
    return None
