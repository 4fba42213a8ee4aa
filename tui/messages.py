"""Typed messages a background watcher posts to the app (one batch per poll, so a burst is one message)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class FeedMessages(Message):
    """Feed messages in feed order (scan_start, result, progress, summary, status, heartbeat). ``snapshot``: they
    are a daemon's snapshot (the scan so far), so per-transient events are summarised, not logged one by one;
    ``daemon_id``: the daemon that answered the snapshot (a new one after a restart)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    snapshot: bool = False
    daemon_id: str | None = None


@dataclass
class ConnectionChanged(Message):
    """The watcher's link to its source: connecting | connected | no daemon | offline. ``reset``: a new daemon
    answered (restart), so feed numbering starts again."""

    state: str
    detail: str = ""
    reset: bool = False
