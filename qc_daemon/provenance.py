"""What made a result: the program and its version, a digest of the whole effective config, and the checks that
ran, in summary.json (``provenance``) and in the journal's scan_start record."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import __version__


def config_digest(config: dict[str, Any]) -> str:
    """``sha256:`` + the first 16 hex digits of the SHA-256 of the effective config as canonical JSON (sorted
    keys, no spaces): equal for equal configs, whatever file or override they came from."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(config: dict[str, Any], check_names: list[str]) -> dict[str, Any]:
    return {"program": "mrsqc", "version": __version__, "config_digest": config_digest(config),
            "checks": list(check_names)}
