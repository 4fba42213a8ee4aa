"""What the view knows: feed messages folded into per-scan state, plus the connection and the event log.

Pure Python (no Textual): the app applies every message here as it arrives (cheap: appends), and redraws
from it on a timer, at most ~10 times a second. The same messages come from a daemon's feed or from an
in-process run of a file (qc_daemon/session.py), so both views read the same state.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from qc_daemon import display, feed
from qc_daemon.feed import CONNECTED, CONNECTING, NO_DAEMON, OFFLINE  # noqa: F401 (the views' states)
from qc_daemon.model import FAIL, METABOLITE, OK, WARN, ScanInfo, verdict_word

MAX_SCANS = 50  # finished scans kept for the history list
MAX_EVENTS = 500
EVENT_LEVEL = {OK: "info", WARN: "warn", FAIL: "fail"}  # verdict -> level of its event-log line



@dataclass
class Event:
    """One line of the event log. ``level``: info | warn | fail."""

    time: float
    level: str
    text: str


@dataclass
class ScanState:
    """One scan as seen on the feed."""

    scan: ScanInfo
    limits: dict[str, float] = field(default_factory=dict)
    #: what the checks that run declare for viewers (scan_start "checks"; qc_daemon/display.py reads it)
    checks: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, Any] | None = None  # latest live (running) summary
    final: dict[str, Any] | None = None  # the summary at the end of the scan
    spectrum: dict[str, Any] | None = None
    started_wall: float = field(default_factory=time.time)
    ended_wall: float | None = None
    # set when the scan vanished from the daemon unfinished (restart, or ended while the view was away)
    unfinished_note: str | None = None
    metabolites: list[dict[str, Any]] = field(default_factory=list)  # the metabolite results, kept as they come
    latest_by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    # plot series, appended per result (floats, NaN = not measured): the view redraws from these in O(1) Python
    # "average": the average number as the scanner counts them (1-based, metabolite transients only)
    # (by role: the names come from the checks' TracePlot / GrowthPlot declarations)
    freq_series: dict[str, list[float]] = field(default_factory=lambda: {"average": [], "points": [],
                                                                          "line": [], "accepted": []})
    ordinal: dict[int, str] = field(default_factory=dict)  # transient index -> "avg 12" / "ref 1", as shown
    snr_series: dict[str, list[float]] = field(default_factory=lambda: {"count": [], "value": []})

    def __post_init__(self) -> None:
        self.trace = display.trace(self.checks)  # the declared plots (None: no check that ran offers one)
        self.growth = display.growth(self.checks)

    def add(self, r: dict[str, Any]) -> None:
        """One result in: constant work, so a long scan never slows the redraws down."""
        self.results.append(r)
        self.latest_by_kind[r["kind"]] = r
        if r["kind"] == METABOLITE:
            self.metabolites.append(r)
            self.ordinal[r["index"]] = f"avg {len(self.metabolites)}"
        else:
            self.ordinal[r["index"]] = f"ref {len(self.results) - len(self.metabolites)}"
        if not r["accepted"]:
            self.flagged.append(r)
        if r["kind"] != METABOLITE:
            return
        if self.trace is not None:
            f = self.freq_series
            f["average"].append(float(len(self.metabolites)))
            f["points"].append(as_float(display.value_of(r, self.trace["points"])))
            f["line"].append(as_float(display.value_of(r, self.trace["line"])))
            f["accepted"].append(1.0 if r["accepted"] else 0.0)
        g = self.growth
        if g is not None and r["set"] == 0 and display.value_of(r, g["value"]) is not None:
            self.snr_series["count"].append(as_float(display.value_of(r, g["count"])))
            self.snr_series["value"].append(as_float(display.value_of(r, g["value"])))

    @property
    def scan_id(self) -> str:
        return self.scan.scan_id

    @property
    def summary(self) -> dict[str, Any] | None:
        return self.final or self.live

    @property
    def finished(self) -> bool:
        return self.final is not None

    @property
    def ended(self) -> bool:
        """Finished, or no longer open on the daemon without a summary reaching this view."""
        return self.final is not None or self.unfinished_note is not None

    @property
    def n_flagged_averages(self) -> int:
        return sum(1 for r in self.flagged if r["kind"] == METABOLITE)

    @property
    def n_metabolite(self) -> int:
        return len(self.metabolites)

    def verdict(self) -> str | None:
        """pass | warn | fail from the live or final summary; None before the first one."""
        s = self.summary
        return s["verdict"] if s else None

    def latest(self, kind: str) -> dict[str, Any] | None:
        return self.latest_by_kind.get(kind)

    def remaining_s(self) -> float | None:
        """Time left at the scan's pace: TR when known, else the mean spacing of the transients so far (s)."""
        left = max(0, self.scan.planned_averages - self.n_metabolite)
        if self.unfinished_note is not None:
            return None
        if self.finished or left == 0:
            return 0.0
        if self.scan.tr_ms:
            return left * self.scan.tr_ms / 1000.0
        m = self.metabolites
        if len(m) >= 2 and m[-1]["time_s"] > m[0]["time_s"]:
            return left * (m[-1]["time_s"] - m[0]["time_s"]) / (len(m) - 1)
        return None


class FeedState:
    """Every scan seen (newest last), which one is shown, the connection and the event log."""

    def __init__(self, source: str = "", clock=time.time):
        self.source = source  # what we watch: an endpoint or a file name
        self.clock = clock  # wall clock (s since the epoch) for event times; tests pin it
        self.connection = CONNECTING
        self.connection_detail = ""
        self.daemon_error: str | None = None
        self.daemon: dict[str, Any] | None = None  # the latest heartbeat
        self.daemon_id: str | None = None  # of the daemon whose snapshot was applied last
        self.scans: OrderedDict[str, ScanState] = OrderedDict()
        self.selected: str | None = None  # a scan picked from the history; None = follow the newest
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.version = 0  # bumped on every change: the view redraws when it moved
        self.bad_alerts = 0  # bumped when a shown scan turns BAD (the app rings the bell)
        self.feed_seq = 0  # last feed_seq applied
        self.events_total = 0  # events ever logged (the deque keeps the last MAX_EVENTS)
        self._quiet = False
        self._handlers = {feed.SCAN_START: self._on_scan_start, feed.RESULT: self._on_result,
                          feed.PROGRESS: self._on_progress, feed.SUMMARY: self._on_summary,
                          feed.HEARTBEAT: self._on_heartbeat, feed.STATUS: self._on_status}

    # ------------------------------------------------------------------ queries
    @property
    def current(self) -> ScanState | None:
        if self.selected is not None and self.selected in self.scans:
            return self.scans[self.selected]
        return next(reversed(self.scans.values()), None)

    @property
    def following(self) -> bool:
        return self.selected is None

    def select(self, scan_id: str | None) -> None:
        self.selected = scan_id if scan_id in self.scans else None
        self.version += 1

    # ------------------------------------------------------------------ updates
    def log(self, level: str, text: str) -> None:
        self.events.append(Event(self.clock(), level, text))
        self.events_total += 1
        self.version += 1

    def set_connection(self, state: str, detail: str = "") -> None:
        if (state, detail) == (self.connection, self.connection_detail):
            return
        was = self.connection
        self.connection, self.connection_detail = state, detail
        level = "warn" if state == NO_DAEMON else "info"
        if state != was or detail:
            self.log(level, f"{state}{': ' + detail if detail else ''}")
        self.version += 1

    def apply(self, message: dict[str, Any], quiet: bool = False) -> None:
        """Fold one feed message in (unknown types are ignored: a newer daemon may send more). ``quiet``: no
        per-transient event lines (a snapshot being applied; the caller logs one line for it)."""
        kind = message.get("type")
        handler = self._handlers.get(kind)
        if handler is None:
            return
        self._quiet = quiet
        handler(message)
        if isinstance(message.get("feed_seq"), int) and kind in feed.SCAN_TYPES:
            self.feed_seq = max(self.feed_seq, message["feed_seq"])
        self.version += 1

    def apply_snapshot(self, messages: list[dict[str, Any]], daemon_id: str | None = None) -> None:
        """A daemon's snapshot after (re)connecting: the scan it has open, so far. A scan this view still shows
        as running that the daemon no longer has open is marked unfinished, saying why when it is known (a new
        daemon_id = the daemon restarted, and its journal closes that scan as interrupted)."""
        open_ids = {m["scan"]["scan_id"] for m in messages
                    if m.get("type") == feed.SCAN_START and isinstance(m.get("scan"), dict)}
        restarted = None not in (self.daemon_id, daemon_id) and daemon_id != self.daemon_id
        for st in self.scans.values():
            if st.ended or st.scan_id in open_ids:
                continue
            st.unfinished_note = ("interrupted: the daemon restarted mid-scan (its journal holds the results so "
                                  "far, closed as interrupted)") if restarted else \
                ("ended while the view was disconnected: the final summary is in the daemon's journal")
            st.ended_wall = self.clock()
            self.log("warn", f"scan {st.scan_id[:8]} {st.unfinished_note}")
        if daemon_id is not None:
            self.daemon_id = daemon_id
        for m in messages:
            self.apply(m, quiet=True)
        self.version += 1

    def reset_feed(self) -> None:
        """A new daemon (restart): feed numbering starts again; scans seen so far stay in the history."""
        self.feed_seq = 0

    def _on_scan_start(self, m: dict[str, Any]) -> None:
        scan = ScanInfo.from_dict(m["scan"])
        if scan.scan_id in self.scans:  # a re-sync after reconnecting: start this scan's state afresh
            del self.scans[scan.scan_id]
        self.scans[scan.scan_id] = ScanState(scan, limits=dict(m.get("limits") or {}),
                                             checks=list(m.get("checks") or []), started_wall=self.clock())
        while len(self.scans) > MAX_SCANS:
            oldest = next(iter(self.scans))
            if oldest == self.selected:
                self.selected = None
            del self.scans[oldest]
        self.log("info", f"scan {scan.scan_id[:8]} started: {describe(scan)}")
        if isinstance(m.get("resumed_from_spool"), int):
            self.log("warn", f"scan {scan.scan_id[:8]} resumed by the restarted daemon from its spool "
                             f"({m['resumed_from_spool']} transients so far, nothing lost)")

    def _scan_of(self, m: dict[str, Any]) -> ScanState | None:
        return self.scans.get(m.get("scan_id", ""))

    def _on_result(self, m: dict[str, Any]) -> None:
        st = self._scan_of(m)
        if st is None:
            return
        r = m["result"]
        st.add(r)
        if not r["accepted"] and not self._quiet:
            self.log("warn", f"{st.ordinal.get(r['index'], r['index'])} ({r['time_s']:.1f} s) flagged: "
                             f"{', '.join(r['flags']) or 'rejected'}")

    def _take_summary(self, m: dict[str, Any]) -> ScanState | None:
        """A progress or summary message: note a verdict change and keep its spectrum; returns its scan."""
        st = self._scan_of(m)
        if st is None:
            return None
        self._verdict_change(st, m["summary"])
        if m.get("spectrum"):
            st.spectrum = m["spectrum"]
        return st

    def _on_progress(self, m: dict[str, Any]) -> None:
        st = self._take_summary(m)
        if st is not None:
            st.live = m["summary"]

    def _on_summary(self, m: dict[str, Any]) -> None:
        st = self._take_summary(m)
        if st is None:
            return
        st.final = s = m["summary"]
        st.ended_wall = self.clock()
        level = EVENT_LEVEL.get(s["verdict"], "info")
        self.log(level, f"scan {st.scan_id[:8]} {s['status']}: {verdict_word(s['verdict'])}"
                        + (f" ({'; '.join(s['reasons'])})" if s["reasons"] else ""))

    def _verdict_change(self, st: ScanState, new: dict[str, Any]) -> None:
        old = st.verdict()
        verdict = new["verdict"]
        if verdict == old:
            return
        level = EVENT_LEVEL.get(verdict, "info")
        reasons = "; ".join(new.get("reasons") or []) or "all checks within limits"
        self.log(level, f"status {verdict_word(verdict)}: {reasons}")
        if verdict == FAIL and st is self.current:
            self.bad_alerts += 1

    def _on_heartbeat(self, m: dict[str, Any]) -> None:
        self.daemon = m
        error = m.get("error")
        if error != self.daemon_error:
            self.daemon_error = error
            if error:
                self.log("fail", f"daemon error: {error}")

    def _on_status(self, m: dict[str, Any]) -> None:
        level = {"error": "fail", "warn": "warn"}.get(m.get("state"), "info")
        if m.get("state") == "error":
            self.daemon_error = m.get("detail")
        self.log(level, f"daemon: {m.get('detail', '')}")


def as_float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def describe(scan: ScanInfo) -> str:
    """Sequence, TE/TR, f0 and voxel: the scan line (no patient identifiers exist in ScanInfo)."""
    parts = [scan.sequence or "sequence ?"]
    if scan.te_ms:
        parts.append(f"TE {scan.te_ms:.0f} ms")  # whole ms, as the console and `mrsqc check` show it
    if scan.tr_ms:
        parts.append(f"TR {scan.tr_ms:.0f} ms")
    parts.append(f"f0 {scan.f0_hz / 1e6:.3f} MHz")
    if scan.voxel_mm:
        x, y, z = scan.voxel_mm
        parts.append(f"voxel {x:g}x{y:g}x{z:g} mm ({x * y * z / 1000:.2g} mL)")
    if scan.n_sets > 1:
        parts.append(f"{scan.n_sets} edit sets")
    return "  ".join(parts)


def panel_value(st: ScanState, row: dict[str, Any]) -> Any:
    """A metrics-panel row's value (plugin_api.PanelRow): the summary field when the summary has it, else
    the row's metric of the latest transient of its kind."""
    s = st.summary
    if row.get("summary") and s and s.get(row["summary"]) is not None:
        return s[row["summary"]]
    r = st.latest(row["kind"])
    return display.value_of(r, row["metric"]) if r else None
