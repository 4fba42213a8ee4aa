"""One scan's way from transients to feed messages: the engine, plus the live extras a viewer needs.

The daemon publishes these messages (stamped with ``feed_seq`` and ``scan_id`` by a feed.Stamper); ``mrsqc tui
FILE`` produces the same ones in-process, so the live view and the offline review show the same engine's
numbers. Types (qc_daemon/feed.py builds and validates them):

- ``scan_start``: ``{"scan": ScanInfo, "limits": the thresholds a viewer draws (see limits()), "checks": what
  the checks that run declare for viewers (plugin_api.Contract.describe())}``
- ``result``: ``{"result": TransientQC}`` (every transient, acquisition order)
- ``progress``: ``{"summary": live ScanSummary (status "running"), "spectrum": SpectrumView or null}``, sent
  after a result when ``progress_interval_s`` of wall time have passed since the last one (so at most
  1 / interval per second, whatever the transient rate; at scan pace, TR >= 1 s, after every transient)
- ``summary``: ``{"summary": final ScanSummary, "spectrum": SpectrumView or null}`` (last message of a scan)

Progress messages are display data: their timing depends on the wall clock, the results never do (a
live summary is read-only; tests compare results with and without them).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from . import display, feed
from .config import Config
from .engine import ScanQC
from .model import RUNNING, ScanInfo, ScanSummary, SpectrumView, Transient, TransientQC
from .plugin_api import limit_values

PROGRESS_INTERVAL_S = 0.5


class LiveScan:
    """Wraps :class:`ScanQC` for one scan; every method returns the feed messages it produced."""

    def __init__(self, scan: ScanInfo, config: Config | None = None,
                 progress_interval_s: float = PROGRESS_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.scan = scan
        self.engine = ScanQC(scan, config)
        self.progress_interval_s = progress_interval_s
        self._clock = clock
        self._last_progress: float | None = None
        self._new_results = False

    def start(self, resumed_from_spool: int | None = None) -> list[dict[str, Any]]:
        return [feed.scan_start(self.scan, limits(self.engine), self.engine.contract.describe(),
                                resumed_from_spool)]

    def process(self, transient: Transient) -> tuple[list[TransientQC], list[dict[str, Any]]]:
        """QC one transient; returns (results now final, their result messages). Publish those first, then
        ask :meth:`progress_if_due`: the live summary (~1 ms) then never delays a result."""
        results = self.engine.process(transient)
        if results:
            self._new_results = True
        return results, [feed.result(r) for r in results]

    def progress_if_due(self) -> list[dict[str, Any]]:
        """[a progress message] when results came since the last one and progress_interval_s have passed."""
        if not self._new_results or (self._last_progress is not None and
                                     self._clock() - self._last_progress < self.progress_interval_s):
            return []
        return [self.progress()]

    def finish(self, status: str = "complete") -> tuple[list[TransientQC], ScanSummary, list[dict[str, Any]]]:
        """End the scan: (results released now, final summary, messages ending with the summary)."""
        tail, summary = self.engine.finish(status)
        messages = [feed.result(r) for r in tail]
        messages.append(feed.final_summary(summary, self._spectrum()))
        return tail, summary, messages

    def progress(self) -> dict[str, Any]:
        """A progress message now: the live summary and the spectrum view."""
        self._last_progress = self._clock()
        self._new_results = False
        return feed.progress(self.engine.summary(RUNNING), self._spectrum())

    def _spectrum(self) -> SpectrumView | None:
        return display.view_of(self.engine.latest_spectra())


def limits(engine: ScanQC) -> dict[str, float]:
    """The thresholds a viewer draws, from every check's ``limits`` at this scan's f0 (name -> value; units
    in the names)."""
    return limit_values([lim for check in engine.checks for lim in check.limits(engine.scan, engine.config)])


def scan_messages(scan: ScanInfo, transients, config: Config | None = None, first_seq: int = 1) -> list[dict]:
    """Every feed message of one whole scan, stamped (feed_seq, scan_id) as the daemon stamps them, with a
    progress message after every result: deterministic (no wall clock), for tests and screenshots."""
    ticks = itertools.count(0.0, PROGRESS_INTERVAL_S)
    live = LiveScan(scan, config, clock=lambda: next(ticks))
    out = list(live.start())
    for t in transients:
        out += live.process(t)[1]
        out += live.progress_if_due()
    out += live.finish("complete")[2]
    return feed.Stamper(first_seq).stamp_all(scan.scan_id, out)
