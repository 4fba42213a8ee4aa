"""Daemon benchmarks (issues 3 and 11): end-to-end latency with acknowledgements and the spool on, throughput,
spool bytes per scan, restart-and-resume time, memory over 10,000 transients.

The daemon runs in its own process (`mrsqc daemon`, spool and journal fsync'd, as deployed); this process is
producer and viewer, so send and receive times share one clock. Transients are 32 coils x 2048 points (512 kB
each). Latency = time a result appears on the feed - time its transient was handed to the Producer; ack
latency = time until the daemon acknowledged it as durable (fsync'd in its spool). The first 8 metabolite
transients are held by design (they seed the reference) and are excluded from the percentiles.
Appends its section to bench/RESULTS.md (run after bench/run_all.py; `make bench` does both).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qc_daemon.client import FeedClient, Producer  # noqa: E402
from qc_daemon.sources.simulate import SimulationParams, simulate_scan  # noqa: E402

HELD = 8
EXTRA: list[str] = []  # extra daemon flags (experiments)


def start_daemon(data_dir: str, eps: dict | None = None) -> tuple[subprocess.Popen, dict]:
    where = [eps[k] for k in ("ingest", "feed", "snapshot")] if eps else ["tcp://127.0.0.1:*"] * 3
    proc = subprocess.Popen([sys.executable, "-m", "qc_daemon.cli", "daemon", "--ingest", where[0],
                             "--feed", where[1], "--snapshot", where[2],
                             "--data-dir", data_dir] + EXTRA, stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(transients, scan, eps, ctx, interval_s: float | None, on_result=None,
        acks: dict | None = None) -> tuple[dict, float]:
    """Send every transient (paced by interval_s, or as fast as taken); returns (index -> latency s, wall s).
    ``acks``: filled with position -> seconds until the daemon acknowledged it as durable."""
    viewer = FeedClient(eps["feed"], eps["snapshot"], ctx)
    viewer.sync(10)
    sent: dict[int, float] = {}
    lat: dict[int, float] = {}
    by_pos: list[float] = []

    def take(msgs):
        for m in msgs:
            if m.get("type") == "result":
                lat[m["result"]["index"]] = time.perf_counter() - sent[m["result"]["index"]]
                if on_result:
                    on_result(m["result"]["index"])

    def note_acks(p):
        if acks is None or p.delivery is None:
            return
        now = time.perf_counter()
        for pos in range(len(acks), min(p.delivery.durable, len(by_pos))):
            acks[pos] = now - by_pos[pos]

    t0 = time.perf_counter()
    with Producer(eps["ingest"], context=ctx, window=64) as p:
        p.start_scan(scan)
        for t in transients:
            sent[t.index] = time.perf_counter()
            by_pos.append(sent[t.index])
            p.send(t)
            take(viewer.poll(0))
            note_acks(p)
            if interval_s:  # sleep until the feed or the daemon's answers have something (no busy loop)
                deadline = sent[t.index] + interval_s
                poller = zmq.Poller()
                poller.register(viewer.sub, zmq.POLLIN)
                poller.register(p.sock, zmq.POLLIN)
                while (left := deadline - time.perf_counter()) > 0:
                    ready = dict(poller.poll(max(1, int(left * 1000))))
                    if p.sock in ready:
                        p.poll(0)
                        note_acks(p)
                    if viewer.sub in ready:
                        take(viewer.poll(0))
        p.end_scan()
        note_acks(p)
        for m in viewer.messages("summary", timeout_s=300):
            take([m])
    wall = time.perf_counter() - t0
    viewer.close()
    return lat, wall


def run_closed(transients, scan, eps, ctx) -> tuple[dict, float]:
    """Max speed with one transient in flight: each is sent as soon as the previous result arrived (the held
    first transients are sent without waiting). Latency without queueing; throughput = 1 / service time."""
    viewer = FeedClient(eps["feed"], eps["snapshot"], ctx)
    viewer.sync(10)
    sent: dict[int, float] = {}
    lat: dict[int, float] = {}
    t0 = time.perf_counter()
    with Producer(eps["ingest"], context=ctx) as p:
        p.start_scan(scan)
        for n, t in enumerate(transients):
            sent[t.index] = time.perf_counter()
            p.send(t)
            if n < HELD + 2:
                continue
            while t.index not in lat:
                for m in viewer.poll(100):
                    if m.get("type") == "result":
                        lat[m["result"]["index"]] = time.perf_counter() - sent[m["result"]["index"]]
        p.end_scan()
        for _ in viewer.messages("summary", timeout_s=60):
            pass
    wall = time.perf_counter() - t0
    viewer.close()
    return lat, wall


def restart_and_resume(proc, sim, pool, refs, data, eps, ctx):
    """SIGKILL the daemon half way through a max-speed 2,000-transient scan, restart it at once on the same
    endpoints and data, and let the same Producer finish. Returns (seconds from the restart until the new
    daemon serves: warm-up plus the engine re-run over the spool, figures incl. the new process)."""
    n = 2000
    scan = replace(sim.scan, scan_id="bench-resume", planned_averages=n)
    batch = refs + [replace(pool[i % len(pool)], index=i + len(refs), average=i, time_s=2.0 * i) for i in range(n)]
    up_s, killed_after = 0.0, 0
    with Producer(eps["ingest"], context=ctx, window=64, timeout_s=120) as p:
        p.start_scan(scan)
        for k, t in enumerate(batch):
            p.send(t)
            if k == n // 2:
                killed_after = p.poll(0).received
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                t0 = time.perf_counter()
                proc, _ = start_daemon(data, eps)  # returns once the new daemon prints its endpoints: serving
                up_s = time.perf_counter() - t0
        delivery = p.end_scan()
    spooled = 0
    for line in (Path(data) / scan.scan_id / "journal.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("record") == "resumed":
            spooled = rec["positions"]
    return up_s, {"proc": proc, "killed_after": killed_after, "spooled": spooled, "resent": delivery.resent,
                  "complete": delivery.complete and delivery.received == len(batch)}


def host_qc_ms(sim) -> float:
    """This run's host speed: median hot per-transient QC in this process (ms), the engine alone."""
    from qc_daemon.engine import ScanQC

    qc = ScanQC(sim.scan)
    times = []
    for t in sim.transients:
        t0 = time.perf_counter()
        qc.process(t)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[12:]) * 1e3)


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))


def main() -> None:
    sim = simulate_scan(SimulationParams(n_coils=32, n_points=2048, averages=64, seed=3, events=[]))
    pool = [t for t in sim.transients if t.kind == "metabolite"]
    refs = [t for t in sim.transients if t.kind != "metabolite"]
    ctx = zmq.Context()
    lines = ["", "## Daemon (issues 3 and 11): latency with acknowledgements and the spool, throughput, spool, "
             "restart, memory", "",
             "`bench/daemon_bench.py`: `mrsqc daemon` in its own process, spool and journal fsync'd once per burst "
             "before the acknowledgement (as deployed); this process produces (Producer, window 64) and views "
             "(one clock). Transients: 32 coils x 2048 points complex64 (512 kB). Latency = result on the feed - "
             "transient handed to the Producer; ack = until the daemon acknowledged it as durable. The first 8 "
             "transients are held by design (they seed the reference) and excluded from the percentiles.", ""]
    with tempfile.TemporaryDirectory() as data:
        proc, eps = start_daemon(data)
        try:
            # scan pace: one transient per second for 100 s (a scanner sends one every ~1-2 s)
            scan_pace = refs + [replace(pool[i % len(pool)], index=i + len(refs), average=i, time_s=float(i))
                                for i in range(100)]
            acks: dict[int, float] = {}
            lat, _ = run(scan_pace, sim.scan, eps, ctx, interval_s=1.0, acks=acks)
            paced = [v for k, v in lat.items() if k >= len(refs) + HELD]
            paced_acks = list(acks.values())
            spool = Path(data) / sim.scan.scan_id / "spool.mrsqc"
            spool_bytes = spool.stat().st_size
            # max speed: 2,000 transients as fast as the daemon takes them
            n_max = 2000
            fast = refs + [replace(pool[i % len(pool)], index=i + len(refs), average=i, time_s=2.0 * i)
                           for i in range(n_max)]
            acks_max: dict[int, float] = {}
            lat_max, wall = run(fast, replace(sim.scan, scan_id="bench-max", planned_averages=n_max), eps, ctx,
                                interval_s=None, acks=acks_max)
            maxed = [v for k, v in lat_max.items() if k >= len(refs) + HELD]
            closed = refs + [replace(pool[i % len(pool)], index=i + len(refs), average=i, time_s=2.0 * i)
                             for i in range(1000)]
            lat_c, wall_c = run_closed(closed, replace(sim.scan, scan_id="bench-closed", planned_averages=1000),
                                       eps, ctx)
            closed_v = [v for k, v in lat_c.items() if k >= len(refs) + HELD]
            lines += ["| condition | results | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|---|",
                      f"| scan pace (1 transient/s) | {len(lat)} | {pct(paced, 50):.2f} | {pct(paced, 99):.2f} | "
                      f"{max(paced) * 1e3:.2f} |",
                      f"| scan pace: until acknowledged as durable | {len(paced_acks)} | {pct(paced_acks, 50):.2f} | "
                      f"{pct(paced_acks, 99):.2f} | {max(paced_acks) * 1e3:.2f} |",
                      f"| max speed, one in flight (next sent when the result arrives) | {len(lat_c)} | "
                      f"{pct(closed_v, 50):.2f} | {pct(closed_v, 99):.2f} | {max(closed_v) * 1e3:.2f} |",
                      f"| max speed, back-to-back (queueing: up to 64 + 32 messages wait) | {len(lat_max)} | "
                      f"{pct(maxed, 50):.2f} | {pct(maxed, 99):.2f} | {max(maxed) * 1e3:.2f} |",
                      f"| max speed, back-to-back: until acknowledged as durable | {len(acks_max)} | "
                      f"{pct(list(acks_max.values()), 50):.2f} | {pct(list(acks_max.values()), 99):.2f} | "
                      f"{max(acks_max.values()) * 1e3:.2f} |", "",
                      f"Target p99 < 5 ms at scan pace: {pct(paced, 99):.2f} ms, "
                      f"**{'met' if pct(paced, 99) < 5 else 'NOT met'}** in this run. This run's host: the "
                      f"engine alone takes {host_qc_ms(sim):.2f} ms per transient in-process (hot; the Speed "
                      "section above has its figure from its own run). A result is published before any spool, journal "
                      "or acknowledgement work (they follow once the ingest has been idle 2 ms), and the coil "
                      "combination does not use BLAS: on this 2-core host OpenBLAS's thread pool and the bookkeeping "
                      "right after publishing had put the p99 at 8.7-11.8 ms (probe of the stages, 0.5 s pace: engine "
                      "p99 9.0 -> 2.1 ms single-threaded, published->viewer p99 3.2 -> 0.5 ms).", "",
                      f"Spool: {spool_bytes / len(scan_pace) / 1e3:.1f} kB per transient of 32 x 2048 (the raw "
                      f"complex64 data plus a {spool_bytes / len(scan_pace) - 32 * 2048 * 8:.0f}-byte record header),"
                      f" so a 128-average scan with 2 water references spools "
                      f"{130 * spool_bytes / len(scan_pace) / 1e6:.0f} MB (2x oversampled: twice that); the "
                      "default budget of 20 GB holds about 150 such scans.", "",
                      f"Sustained throughput: **{len(lat_max) / wall:.0f} transients/s** back-to-back "
                      f"({len(lat_max)} results in {wall:.1f} s), {len(lat_c) / wall_c:.0f}/s one in flight; a "
                      "scanner sends ~0.5-1 per second. Back-to-back latency is time spent queued behind earlier "
                      "transients (the bounded queue holds the producer back), not processing time.", ""]
            # restart and resume: SIGKILL after 1,000 transients of a 2,000-transient scan, restart at once
            resume_s, resumed_ok = restart_and_resume(proc, sim, pool, refs, data, eps, ctx)
            proc = resumed_ok.pop("proc")
            lines += [f"Restart and resume: the daemon SIGKILLed after {resumed_ok['killed_after']:,} transients "
                      f"of a 2,000-transient scan and restarted at once: up again (warm-up plus the engine re-run "
                      f"over its {resumed_ok['spooled']:,}-transient spool) in **{resume_s:.1f} s**; the producer "
                      f"re-sent {resumed_ok['resent']} transients and the scan ended "
                      f"{'complete with every transient' if resumed_ok['complete'] else 'INCOMPLETE'}.", ""]
            # memory over 10,000 transients (5 scans of 2,000), daemon RSS sampled after each scan
            samples = [("after start-up and the runs above", rss_mb(proc.pid))]
            for k in range(5):
                scan = replace(sim.scan, scan_id=f"bench-soak-{k}", planned_averages=2000)
                batch = [replace(pool[i % len(pool)], index=i, average=i, time_s=2.0 * i) for i in range(2000)]
                run(batch, scan, eps, ctx, interval_s=None)
                samples.append((f"after {2000 * (k + 1):,} more transients", rss_mb(proc.pid)))
            lines += ["Daemon memory (VmRSS) over 10,000 further transients (5 scans x 2,000):", "",
                      "| point | RSS (MB) |", "|---|---|"] + [f"| {n} | {v:.0f} |" for n, v in samples]
            growth = samples[-1][1] - samples[1][1]
            lines += ["", f"Growth from the first to the last 2,000-transient scan: {growth:+.0f} MB."]
            with tempfile.TemporaryDirectory() as tmp:
                report = Path(tmp) / "soak.json"
                soak = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-m", "slow",
                                       str(ROOT / "tests" / "test_reliability.py")], capture_output=True, text=True,
                                      env={**os.environ, "MRSQC_SOAK_REPORT": str(report)})
                fig = json.loads(report.read_text()) if report.exists() else None
            verdict = "passed" if soak.returncode == 0 else "FAILED"
            t_replays = time.perf_counter()
            replays = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-m", "slow",
                                      str(ROOT / "tests" / "test_zero_loss.py")], capture_output=True, text=True)
            t_replays = time.perf_counter() - t_replays
            lines += ["", "Soak (`make soak`, tests/test_reliability.py::test_soak_with_a_viewer): consecutive scans "
                      "of 2,000 transients (4 coils x 512 points) at max speed with a viewer attached, in one "
                      "process (daemon thread, producer, viewer); asserts nothing dropped at ingest, every result "
                      "on the feed identical to the offline engine, RSS growth after the first scan <= 16 MB."]
            if fig:
                r = fig["rss_mb"]
                lines += ["", f"**{verdict}**: {fig['transients']:,} transients in {fig['scans']} scans, "
                          f"{fig['results']:,} results identical, {fig['seconds']:.1f} s "
                          f"({fig['transients'] / fig['seconds']:.0f} transients/s). RSS after each scan (MB): "
                          + ", ".join(f"{v:.1f}" for v in r) + f" (growth after scan 1: {r[-1] - r[0]:+.2f} MB)."]
            else:
                lines += ["", f"**{verdict}** (no figures written)."]
            lines += ["", "Replays (`make soak`, tests/test_zero_loss.py::test_soak_twenty_replays_of_a_34_coil_scan): "
                      "20 `mrsqc replay --speed max` processes in a row, each a 34-coil, 2x oversampled scan of "
                      "128 averages + 2 water references (1.1 MB per transient, 146 MB per file), into one daemon: "
                      f"**{'passed' if replays.returncode == 0 else 'FAILED'}** ({t_replays:.0f} s): 20 exits 0, "
                      "20 scans complete with all 130 transients (before the fix, 3 of 6 such replays crashed)."]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
            ctx.destroy(linger=0)
    text = "\n".join(lines) + "\n"
    results = ROOT / "bench" / "RESULTS.md"
    prev = results.read_text() if results.exists() else "# mrsqc benchmark results\n"
    marker = "\n## Daemon (issue"
    if marker in prev:  # replace this section only; the sections after it (the UI bench's) stay
        start = prev.index(marker)
        nxt = prev.find("\n## ", start + len(marker))
        rest = prev[nxt:] if nxt >= 0 else ""
        results.write_text(prev[:start].rstrip("\n") + "\n" + text + rest)
    else:
        results.write_text(prev.rstrip("\n") + "\n" + text)
    print(text)


if __name__ == "__main__":
    main()
