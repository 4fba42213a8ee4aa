"""Terminal UI benchmark (issue 4): does a max-speed replay leave the view behind the feed?

The daemon runs in its own process (`mrsqc daemon`, as deployed). This process runs the producer (a thread,
as fast as the daemon takes transients), a plain feed subscriber (a thread: the reference "the result is
on the feed" time), and the UI itself, headless (Textual `run_test`, 120 x 40, the real FeedWatcher). All
three share one clock. View lag of a result = the time of the first redraw that includes it - the time the
plain subscriber received it. Transients: 32 coils x 2048 points, 128 simulated ones cycled to 3,000.
Appends its section to bench/RESULTS.md (`make bench` runs it after the daemon benchmark).
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.daemon_bench import start_daemon  # noqa: E402
from qc_daemon.client import FeedClient, Producer  # noqa: E402
from qc_daemon.sources.simulate import SimulationParams, simulate_scan  # noqa: E402
from tui.app import QCApp  # noqa: E402
from tui.feed_watcher import FeedWatcher  # noqa: E402

N_TRANSIENTS = 3000


def produce(eps: dict, ctx: zmq.Context, sim, n: int) -> None:
    base = sim.transients
    tr = 2.0
    with Producer(eps["ingest"], context=ctx, window=64) as p:
        p.start_scan(replace(sim.scan, planned_averages=n))
        for i in range(n):
            t = base[i % len(base)]
            p.send(replace(t, index=i, average=i, time_s=i * tr))
        p.end_scan()


def subscribe(eps: dict, ctx: zmq.Context, arrivals: dict[int, float], done: threading.Event,
              ready: threading.Event) -> None:
    viewer = FeedClient(eps["feed"], eps["snapshot"], ctx)
    viewer.sync(10)
    ready.set()
    while not done.is_set():
        for m in viewer.poll(20):
            if m.get("type") in ("result", "progress", "summary"):
                arrivals[m["feed_seq"]] = time.perf_counter()
            if m.get("type") == "summary":
                done.set()
    viewer.close()


async def run_ui(eps: dict, ctx: zmq.Context, sim) -> tuple[QCApp, dict[int, float], float]:
    app = QCApp(lambda a: FeedWatcher(a, eps["feed"], eps["snapshot"]), bell=False)
    app.redraw_log = []
    arrivals: dict[int, float] = {}
    done, ready = threading.Event(), threading.Event()
    sub = threading.Thread(target=subscribe, args=(eps, ctx, arrivals, done, ready), daemon=True)
    sub.start()
    ready.wait(10)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.state.connection != "connected":
            await pilot.pause(0.05)
        t0 = time.perf_counter()
        producer = threading.Thread(target=produce, args=(eps, ctx, sim, N_TRANSIENTS), daemon=True)
        producer.start()
        while not (app.state.current is not None and app.state.current.finished and done.is_set()):
            await pilot.pause(0.05)
            if time.perf_counter() - t0 > 300:
                raise TimeoutError("the scan did not finish in 300 s")
        await pilot.pause(0.3)
        wall = time.perf_counter() - t0
    producer.join(10)
    sub.join(10)
    return app, arrivals, wall


def main() -> None:
    sim = simulate_scan(SimulationParams(n_coils=32, n_points=2048, averages=128, seed=3, events=[]))
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as data:
        proc, eps = start_daemon(data)
        try:
            app, arrivals, wall = asyncio.run(run_ui(eps, ctx, sim))
        finally:
            proc.terminate()
            proc.wait(20)
            ctx.destroy(linger=0)
    log = app.redraw_log
    times = [t for t, _, _ in log]
    seqs = [s for _, s, _ in log]
    lags = []
    for seq, t_arr in arrivals.items():
        k = bisect.bisect_left(seqs, seq)  # shown feed_seq only grows: first redraw that includes it
        if k < len(log):
            lags.append(times[k] - t_arr)
    lags_ms = np.array(lags) * 1e3
    cost = np.array([ms for _, _, ms in log])
    first, last = min(arrivals.values()), max(arrivals.values())
    streaming = [t for t in times if first <= t <= last]
    rate = len(streaming) / max(last - first, 1e-9)
    shown_all = len(lags) == len(arrivals) and app.state.current.final["n_transients"] == N_TRANSIENTS
    lines = [
        "",
        "## Terminal UI (issue 4): view lag during a max-speed replay",
        "",
        f"`python bench/tui_bench.py` ({time.strftime('%Y-%m-%d')}): daemon process + producer thread at max speed, "
        f"{N_TRANSIENTS:,} transients of 32 coils x 2048 points; the UI headless at 120 x 40 with the real "
        "FeedWatcher; a plain subscriber gives the time each message reached the feed (one clock for all).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| feed messages (results, progress, summary) | {len(arrivals):,} in {last - first:.1f} s "
        f"({len(arrivals) / max(last - first, 1e-9):.0f}/s) |",
        f"| every result shown, final summary = {N_TRANSIENTS:,} transients | {'yes' if shown_all else 'NO'} |",
        f"| view lag behind the feed, p50 / p99 / max | {np.percentile(lags_ms, 50):.0f} / "
        f"{np.percentile(lags_ms, 99):.0f} / {lags_ms.max():.0f} ms (target: max < 1000 ms) |",
        f"| redraws per second while streaming | {rate:.1f} (cap: 10) |",
        f"| cost of one redraw (state -> widgets), p50 / p99 | {np.percentile(cost, 50):.1f} / "
        f"{np.percentile(cost, 99):.1f} ms |",
        "",
        "Lag is measured to the end of the redraw call that includes the message (widgets updated; Textual "
        "paints them on its next frame). The redraw timer runs every 0.1 s and skips when nothing changed, so "
        "a burst of hundreds of results is one redraw.",
    ]
    text = "\n".join(lines) + "\n"
    results = ROOT / "bench" / "RESULTS.md"
    prev = results.read_text() if results.exists() else "# mrsqc benchmark results\n"
    marker = "\n## Terminal UI (issue 4)"
    if marker in prev:
        prev = prev[: prev.index(marker)].rstrip("\n") + "\n"
    results.write_text(prev.rstrip("\n") + "\n" + text)
    print(text)
    print(f"wall {wall:.1f} s")


if __name__ == "__main__":
    main()
