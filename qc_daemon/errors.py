"""Errors a user can act on: each names the input and the reason in one line."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input (file, config, stream): ``str(err)`` is one line naming the input and the reason."""

    def __init__(self, source: str | Path, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")
