"""Background thread: run a recorded scan in-process through the engine (``mrsqc tui FILE``).

The messages are the ones a daemon would publish for the same transients (qc_daemon/session.py: LiveScan),
so the offline review shows exactly the live view's numbers. ``speed``: None = as fast as the engine goes;
N = N x the scan's pace (transient times from the file).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from textual.app import App

from qc_daemon.check import merge_water
from qc_daemon.config import Config
from qc_daemon.errors import InputError
from qc_daemon.feed import OFFLINE, Stamper
from qc_daemon.session import LiveScan
from qc_daemon.sources.open import open_recording

from .messages import ConnectionChanged, FeedMessages

BATCH_S = 0.05  # post what accumulated at most every 50 ms: a fast run is ~20 messages a second, not 1000s


class FileWatcher(threading.Thread):
    def __init__(self, app: App, path: str | Path, water: str | Path | None = None, config: Config | None = None,
                 speed: float | None = None):
        super().__init__(name="mrsqc-file-watcher", daemon=True)
        self.app = app
        self.path, self.water = Path(path), water
        self.config = config
        self.speed = speed
        self._stop_event = threading.Event()
        self._stamper = Stamper()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        name = self.path.name  # the file name only: folders above it may name the patient
        self.app.post_message(ConnectionChanged(OFFLINE, f"reading {name}"))
        try:
            rec = open_recording(self.path)
            if self.water is not None:
                rec = merge_water(rec, open_recording(self.water, role="water"), self.water)
            live = LiveScan(rec.scan, self.config)
            pending = self._stamp(live.start(), rec.scan.scan_id)
            posted = time.monotonic()
            t_start = time.monotonic()
            for t in rec.transients:
                if self._stop_event.is_set():
                    return
                if self.speed:
                    wait = t_start + t.time_s / self.speed - time.monotonic()
                    if wait > 0:
                        self._flush(pending)
                        pending = []
                        if self._stop_event.wait(wait):
                            return
                _, messages = live.process(t)
                pending += self._stamp(messages + live.progress_if_due(), rec.scan.scan_id)
                if time.monotonic() - posted >= BATCH_S:
                    self._flush(pending)
                    pending, posted = [], time.monotonic()
            _, _, messages = live.finish("complete")
            self._flush(pending + self._stamp(messages, rec.scan.scan_id))
            self.app.post_message(ConnectionChanged(OFFLINE, f"{name}: {len(rec.transients)} transients checked"))
        except (InputError, ValueError, OSError) as exc:
            self.app.post_message(ConnectionChanged(OFFLINE, f"cannot check {name}: {exc}"))

    def _stamp(self, messages: list[dict[str, Any]], scan_id: str) -> list[dict[str, Any]]:
        """Number them and name their scan, as the daemon's feed does."""
        return self._stamper.stamp_all(scan_id, messages)

    def _flush(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self.app.post_message(FeedMessages(messages))
