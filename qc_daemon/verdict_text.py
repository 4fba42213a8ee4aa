"""The lines mrsqc sends back to the scanner's console (MRD TEXT messages), decided from the scan's summaries.

FIRE's log viewer colours a line by its first three characters: ``DBG`` white (normal), ``WRN`` yellow,
``ERR`` red. A verdict maps to them as pass -> DBG, warn -> WRN, fail -> ERR. Lines:

- at the first transient: ``DBG mrsqc: QC running (32 coils x 2048 points, TE 30 ms, 128 averages planned)``
  (and ``2 edit sets`` for an edited scan);
- when the live verdict changes (from the first metabolite transient on: water references alone judge
  nothing, as the live view's WAIT says): ``WRN mrsqc: 4 motion-corrupted averages (8%)`` (the verdict's reasons),
  ``DBG mrsqc: PASS after 24 averages`` for a pass; at most one line per ``interval_s`` (a change within it
  is sent when the interval has passed, if the verdict then still differs from the last line sent);
- at the end, always: ``WRN mrsqc: scan complete, WARN: frequency drift 0.051 ppm (6.2 Hz); ...``, and a
  line for any transient the bridge could not pass on, or when the daemon did not answer.

No line carries a patient field: only the summary's verdict, reasons and counts. Pure: no sockets, a clock
given for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .model import FAIL, OK, WARN, ScanInfo, verdict_word

PREFIX = {OK: "DBG", WARN: "WRN", FAIL: "ERR"}
MAX_REASONS = 3  # a console line, not a report


def _reasons(summary: dict[str, Any]) -> str:
    reasons = list(summary.get("reasons") or [])
    text = "; ".join(reasons[:MAX_REASONS])
    if len(reasons) > MAX_REASONS:
        text += f"; and {len(reasons) - MAX_REASONS} more"
    return text


class VerdictTexts:
    """Feed it the scan's live summaries (:meth:`progress`) and ask for what is due (:meth:`due`)."""

    def __init__(self, interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.clock = clock
        self._last_sent_at: float | None = None
        self._sent_verdict: str | None = None
        self._pending: dict[str, Any] | None = None

    @staticmethod
    def started(scan: ScanInfo) -> str:
        """The first line: what mrsqc understood of the scan (a site checks it against the protocol)."""
        parts = [f"{scan.n_coils} coils x {scan.n_points} points"]
        if scan.te_ms:
            parts.append(f"TE {scan.te_ms:g} ms")
        parts.append(f"{scan.planned_averages} averages planned")
        if scan.n_sets > 1:
            parts.append(f"{scan.n_sets} edit sets")
        return f"DBG mrsqc: QC running ({', '.join(parts)})"

    def progress(self, summary: dict[str, Any]) -> list[str]:
        """A live summary arrived; returns the line due now, if any."""
        self._pending = summary
        return self.due()

    def due(self) -> list[str]:
        """The line for the latest live summary when its verdict differs from the last line's and the interval
        since the last line has passed."""
        s = self._pending
        if s is None or s.get("verdict") == self._sent_verdict or not s.get("n_metabolite"):
            return []  # nothing is judged before the first metabolite transient (as the live view's WAIT)
        now = self.clock()
        if self._last_sent_at is not None and now - self._last_sent_at < self.interval_s:
            return []
        self._pending, self._sent_verdict, self._last_sent_at = None, s.get("verdict"), now
        return [self.live_line(s)]

    @staticmethod
    def live_line(summary: dict[str, Any]) -> str:
        verdict = summary.get("verdict", OK)
        if verdict == OK:
            return f"DBG mrsqc: PASS after {summary.get('n_metabolite', 0)} averages"
        return f"{PREFIX.get(verdict, 'WRN')} mrsqc: {_reasons(summary) or verdict_word(verdict)}"

    @staticmethod
    def final_lines(summary: dict[str, Any] | None, verdict: str | None, lost: int, sent: int,
                    problem: str | None = None) -> list[str]:
        """The end-of-scan lines: the final verdict (from the summary, else the bare verdict), then any loss
        or failure of the bridge or the daemon."""
        lines = []
        if summary is not None:
            v = summary.get("verdict", OK)
            reasons = _reasons(summary)
            status = summary.get("status", "complete")
            lines.append(f"{PREFIX.get(v, 'WRN')} mrsqc: scan {status}, {verdict_word(v)}"
                         + (f": {reasons}" if reasons else f" ({summary.get('n_metabolite', 0)} averages)"))
        elif verdict is not None:
            lines.append(f"{PREFIX.get(verdict, 'WRN')} mrsqc: scan closed, {verdict_word(verdict)}")
        if lost:
            lines.append(f"ERR mrsqc: {lost} of {sent} transients were not checked (the QC could not keep up; "
                         "they are in the scanner's raw data)")
        if problem:
            lines.append(f"ERR mrsqc: {problem}")
        return lines
