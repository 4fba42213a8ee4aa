"""Plain-text views, for when there is no terminal to draw on (a pipe, a log file, a service): one line per
transient result, a block per summary. ``mrsqc tui`` falls back to these when stdin or stdout is not a
terminal (or with ``--text``); ``mrsqc demo --text`` uses them too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from .model import verdict_word

HEADER = f"{'#':>4} {'kind':<10} {'t/s':>6} {'freq/Hz':>8} {'trend/Hz':>8} {'phase/deg':>9} {'SNR':>5} " \
         f"{'SNRrun':>6} {'tCr/Hz':>6}  flags"


def result_line(r: dict) -> str:
    """One line per TransientQC dict (units in the header)."""
    def f(v, w, d):
        return f"{v:{w}.{d}f}" if isinstance(v, (int, float)) else " " * (w - 3) + "n/a"
    m = r.get("metrics", {})
    flags = ",".join(r["flags"]) or ("" if r["accepted"] else "rejected")
    return (f"{r['index']:4d} {r['kind']:<10} {r['time_s']:6.1f} {f(r['freq_hz'], 8, 2)} "
            f"{f(m.get('freq_trend_hz'), 8, 2)} {f(r['phase_deg'], 9, 1)} {f(r['snr'], 5, 1)} "
            f"{f(r['snr_running'], 6, 1)} {f(r['fwhm_hz'] if r['kind'] == 'metabolite' else None, 6, 1)}  {flags}")


def summary_lines(summary: dict) -> list[str]:
    reasons = "; ".join(summary["reasons"])
    return [f"VERDICT: {verdict_word(summary['verdict'])}" + (f"  ({reasons})" if reasons else "")
            + f"  [scan {summary['status']}]",
            f"flagged transients: {summary['flagged_indices']}   drift {summary['drift_hz_per_min']} Hz/min   "
            f"water FWHM {summary['fwhm_water_hz']} Hz   final SNR {summary['snr_final']}"]


def print_message(m: dict, out: Callable[[str], None]) -> None:
    kind = m.get("type")
    if kind == "scan_start":
        s = m["scan"]
        out(f"scan {s['scan_id']} started: {s.get('sequence') or '?'}, {s['n_coils']} coils x {s['n_points']} "
            f"points, {s['planned_averages']} averages planned")
        out(HEADER)
    elif kind == "result":
        out(result_line(m["result"]))
    elif kind == "summary":
        for line in summary_lines(m["summary"]):
            out(line)
    elif kind == "status":
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
    for m in live.start():
        print_message(m, out)
    for t in paced(rec.transients, speed):
        for m in live.process(t)[1]:
            print_message(m, out)
    _, summary, messages = live.finish("complete")
    for m in messages:
        print_message(m, out)
    return summary.to_dict()


def follow_feed(feed: str, snapshot: str, curve=None, heartbeat_timeout_s: float = 3.5,
                out: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Follow a daemon's feed and print it until ``stop`` is set (or Ctrl-C); says when no daemon answers and
    retries every second (waiting, never spinning)."""
    from .client import FeedClient

    stop = stop or threading.Event()
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
                print_message(m, out)
            last = time.monotonic()
            while not stop.is_set():
                msgs = client.poll(200)
                if msgs:
                    last = time.monotonic()
                for m in msgs:
                    print_message(m, out)
                if time.monotonic() - last > heartbeat_timeout_s or any(
                        m.get("type") == "heartbeat" and m.get("daemon_id") not in (None, client.daemon_id)
                        for m in msgs):
                    out("the daemon went quiet or restarted: syncing again")
                    break
        finally:
            client.close()
