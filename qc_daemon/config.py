"""Configuration: the packaged defaults (default_config.toml) overlaid with a user TOML file."""

from __future__ import annotations

import copy
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
    return cfg
