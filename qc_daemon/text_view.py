"""Plain-text views, for when there is no terminal to draw on (a pipe, a log file, a service): one line per
transient result, a block per summary. ``mrsqc tui`` falls back to these when stdin or stdout is not a
terminal (or with ``--text``); ``mrsqc demo --text`` uses them too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import display, feed
from .model import verdict_word


class TextView:
    """Feed messages as lines: a header and one line per result, with the columns the checks that run
    declare (display.columns, from the scan's scan_start); a block per summary."""

    def __init__(self, out: Callable[[str], None]):
        self.out = out
        self.checks: list[dict] = []

    def header(self) -> str:
        cols = display.columns(self.checks)
        return " ".join([f"{'#':>4} {'kind':<10} {'t/s':>6}"] + [f"{display.column_header(c):>{c['width']}}"
                                                                 for c in cols]) + "  flags"

    def result_line(self, r: dict) -> str:
        flags = ",".join(r["flags"]) or ("" if r["accepted"] else "rejected")
        cells = [display.column_cell(r, c) for c in display.columns(self.checks)]
        return " ".join([f"{r['index']:4d} {r['kind']:<10} {r['time_s']:6.1f}"] + cells) + f"  {flags}"

    def summary_lines(self, summary: dict) -> list[str]:
        reasons = "; ".join(summary["reasons"])
        values = display.summary_values(self.checks, summary)
        return [f"VERDICT: {verdict_word(summary['verdict'])}" + (f"  ({reasons})" if reasons else "")
                + f"  [scan {summary['status']}]",
                f"flagged transients: {summary['flagged_indices']}" + (f"   {values}" if values else "")]

    def show(self, m: dict) -> None:
        kind, out = m.get("type"), self.out
        if kind == feed.SCAN_START:
            s = m["scan"]
            self.checks = list(m.get("checks") or [])
            out(f"scan {s['scan_id']} started: {s.get('sequence') or '?'}, {s['n_coils']} coils x "
                f"{s['n_points']} points, {s['planned_averages']} averages planned")
            out(self.header())
        elif kind == feed.RESULT:
            out(self.result_line(m["result"]))
        elif kind == feed.SUMMARY:
            for line in self.summary_lines(m["summary"]):
                out(line)
        elif kind == feed.STATUS:
            out(f"daemon {m.get('state')}: {m.get('detail')}")


def review_file(path: str | Path, water=None, config=None, speed: float | None = None,
                out: Callable[[str], None] = print) -> dict:
    """Run a recording through the engine as the live view does and print it; returns the summary."""
    from .check import merge_water
    from .session import LiveScan
    from .sources.open import open_recording
    from .sources.recording import paced

    rec = open_recording(path)
    if water is not None:
        rec = merge_water(rec, open_recording(water, role="water"), water)
    live = LiveScan(rec.scan, config)
    view = TextView(out)
    for m in live.start():
        view.show(m)
    for t in paced(rec.transients, speed):
        for m in live.process(t)[1]:
            view.show(m)
    _, summary, messages = live.finish("complete")
    for m in messages:
        view.show(m)
    return summary.to_dict()


def follow_feed(feed: str, snapshot: str, curve=None, heartbeat_timeout_s: float = 3.5,
                out: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Follow a daemon's feed and print it until ``stop`` is set (or Ctrl-C); says when no daemon answers and
    retries every second (waiting, never spinning)."""
    from .client import FeedClient

    stop = stop or threading.Event()
    view = TextView(out)
    down = False
    while not stop.is_set():
        client = FeedClient(feed, snapshot, curve=curve)
        try:
            try:
                snap = client.sync(heartbeat_timeout_s)
            except TimeoutError:
                if not down:
                    out(f"no daemon answering at {feed} / {snapshot}; retrying every 1 s")
                    down = True
                stop.wait(1.0)
                continue
            down = False
            out(f"connected to the daemon at {feed}")
            for m in snap:
                view.show(m)
            last = time.monotonic()
            while not stop.is_set():
                msgs = client.poll(200)
                if msgs:
                    last = time.monotonic()
                for m in msgs:
                    view.show(m)
                if time.monotonic() - last > heartbeat_timeout_s or any(
                        m.get("type") == feed.HEARTBEAT and m.get("daemon_id") not in (None, client.daemon_id)
                        for m in msgs):
                    out("the daemon went quiet or restarted: syncing again")
                    break
        finally:
            client.close()
