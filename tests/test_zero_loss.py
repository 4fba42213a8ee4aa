"""Zero loss on the live path (issue 11): large replays at max speed, SIGKILL at random moments, a full spool or
disk, interrupted scans that keep their findings, and the spool itself. Loopback only, time-outs everywhere."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from qc_daemon.check import run_check
from qc_daemon.client import FeedClient, Producer
from qc_daemon.journal import close_from_journal
from qc_daemon.simulate_files import write_simulation
from qc_daemon.sources.open import open_recording
from qc_daemon.sources.twix_write import write_twix
from qc_daemon.spool import SPOOL_NAME, Spool, SpoolStore, read_spool
from tests.conftest import FIXTURES
from tests.daemon_support import DaemonProcess, collect, running_daemon, stream, wait_until
from tests.tui_support import bad_scan

FIXTURE = FIXTURES / "demo_drift_motion.dat"
# make test: 5 replays of a 32-coil, 2x oversampled, 128-average scan (130 transients, 1 MB each);
# make soak: the figure, 20 replays of 34 coils
REPLAYS = int(os.environ.get("MRSQC_REPLAYS", "5"))


def offline(path) -> list[dict]:
    return [r.to_dict() for r in run_check(path).results]


def results_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "transients.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def big_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("big")
    return write_simulation(out, name="big32", averages=128, n_coils=32, n_points=2048, seed=3)[0]


def _replays(path, n, data_dir):
    with running_daemon(data_dir) as (d, eps, ctx):
        outcomes = []
        for _ in range(n):
            res = subprocess.run([sys.executable, "-m", "qc_daemon.cli", "replay", str(path), "--to", eps.ingest,
                                  "--speed", "max"], capture_output=True, text=True, timeout=300)
            outcomes.append((res.returncode, res.stdout + res.stderr))
        wait_until(lambda: d.open is None, 30, "the last scan closed")
    return outcomes


def test_large_multicoil_replays_at_max_speed_all_complete(big_scan, tmp_path):
    """The replay process used to crash at exit (zero-copy frames freed before libzmq sent them): 3 of 6
    replays of this size died with SIGSEGV/SIGABRT and their scans lost their last transients."""
    n_transients = len(open_recording(big_scan).transients)
    outcomes = _replays(big_scan, REPLAYS, tmp_path / "data")
    assert [rc for rc, _ in outcomes] == [0] * REPLAYS, [o for o in outcomes if o[0]]
    assert all(f"{n_transients} of {n_transients} transients received" in out for _, out in outcomes)
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "data").glob("*/summary.json")]
    assert len(summaries) == REPLAYS
    assert all(s["status"] == "complete" and s["n_transients"] == n_transients for s in summaries)


@pytest.mark.slow
def test_soak_twenty_replays_of_a_34_coil_scan(tmp_path):
    path = write_simulation(tmp_path / "sim", name="big34", averages=128, n_coils=34, n_points=2048, seed=4)[0]
    n_transients = len(open_recording(path).transients)
    outcomes = _replays(path, 20, tmp_path / "data")
    assert [rc for rc, _ in outcomes] == [0] * 20, [o for o in outcomes if o[0]]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "data").glob("*/summary.json")]
    assert len(summaries) == 20 and all(s["n_transients"] == n_transients for s in summaries)


def test_sigkill_at_ten_random_moments_loses_and_duplicates_nothing(tmp_path):
    """Two scans streamed by one Producer while the daemon is SIGKILLed 10 times (during ingest, at any phase of a
    burst, between the scans) and restarted at once on the same data: both scans end complete, every result
    identical to `mrsqc check` of the file, each transient journaled exactly once."""
    second = write_twix(tmp_path / "second.dat", bad_scan().scan, bad_scan().transients)
    files = [FIXTURE, second]
    recs = [open_recording(p) for p in files]
    rng = random.Random(11)
    # kill points: 4 in scan 1, one between the scans, 5 in scan 2 (as positions received, plus 0-40 ms)
    inside = [sorted(rng.sample(range(2, len(r.transients) - 1), k)) for r, k in zip(recs, (4, 5))]
    daemon = DaemonProcess(tmp_path / "data").start()
    producer = Producer(daemon.eps.ingest, window=4, timeout_s=60)
    deliveries, errors = [], []
    scan1_done, scan2_go = threading.Event(), threading.Event()

    def produce():
        try:
            for k, rec in enumerate(recs):
                if k == 1:
                    scan1_done.set()
                    scan2_go.wait(60)
                producer.start_scan(rec.scan)
                for t in rec.transients:
                    producer.send(t)
                    time.sleep(0.01)
                deliveries.append(producer.end_scan())
        except Exception as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    kills = 0
    try:
        for k, targets in enumerate(inside):
            for target in targets:
                def reached(target=target, k=k):
                    d = producer.delivery
                    return bool(errors) or (d is not None and d.received >= target and len(deliveries) == k)

                wait_until(reached, 90, f"scan {k + 1} at position {target}")
                time.sleep(rng.uniform(0.0, 0.04))
                daemon.kill()
                kills += 1
                daemon.start()
            if k == 0:
                wait_until(lambda: scan1_done.is_set() or errors, 90, "scan 1 delivered")
                daemon.kill()
                kills += 1
                daemon.start()
                scan2_go.set()
        thread.join(120)
        assert not errors, errors
        assert kills == 10 and len(deliveries) == 2
        assert all(dv.complete for dv in deliveries), [dv.describe() for dv in deliveries]
        assert sum(dv.daemon_restarts for dv in deliveries) >= 5
    finally:
        producer.close()
        assert daemon.stop() == 0
    folders = {rec.scan.scan_id: tmp_path / "data" / rec.scan.scan_id for rec in recs}
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.is_dir()) == sorted(folders)
    for path, rec in zip(files, recs):
        folder = folders[rec.scan.scan_id]
        assert json.loads((folder / "summary.json").read_text())["status"] == "complete"
        assert results_of(folder) == offline(path)
        indices = [json.loads(line)["result"]["index"] for line in (folder / "journal.jsonl").read_text().splitlines()
                   if json.loads(line)["record"] == "result"]
        assert indices == [t.index for t in rec.transients]  # once each, in order


def test_spool_budget_exceeded_mid_scan_is_loud_qc_goes_on_and_nothing_acknowledged_is_lost(tmp_path):
    """A spool budget of ~20 transients: the daemon says so on the feed and in every heartbeat, checks the whole
    scan, and acknowledges as durable only what its spool holds. Then it is killed and restarted: the restarted
    daemon resumes from the spool and the producer, which kept what was not durable, re-sends the rest."""
    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    per_transient = transients[0].data.nbytes
    daemon = DaemonProcess(tmp_path / "data", None, "--spool-budget-gb", f"{20.5 * per_transient / 1e9:.9f}").start()
    try:
        viewer = FeedClient(daemon.eps.feed, daemon.eps.snapshot)
        viewer.sync(10)
        with Producer(daemon.eps.ingest, window=4, timeout_s=60) as p:
            p.start_scan(rec.scan)
            for t in transients[:40]:
                p.send(t)
            wait_until(lambda: p.poll(50).received == 40, 30, "40 received")
            msgs = viewer.poll(500)
            durable = p.delivery.durable
            assert 10 <= durable < 25 and p.delivery.received == 40
            assert "spool budget" in (p.delivery.daemon_error or "")
            assert any(m.get("type") == "status" and m["state"] == "error" and "spool budget" in m["detail"]
                       for m in msgs + collect(viewer, until="heartbeat", timeout_s=5))
            spooled = read_spool(tmp_path / "data" / rec.scan.scan_id / SPOOL_NAME)
            assert [pos for pos, _ in spooled.transients] == list(range(durable))
            assert all(np.array_equal(t.data, transients[pos].data) for pos, t in spooled.transients)
            daemon.kill()  # what was not durable is gone from the daemon, not from the producer
            daemon.start()
            for t in transients[40:]:
                p.send(t)
            delivery = p.end_scan()
        viewer.close()
    finally:
        daemon.stop()
    assert delivery.complete and delivery.resent >= 40 - durable - 4
    assert results_of(tmp_path / "data" / rec.scan.scan_id) == offline(FIXTURE)


def test_disk_full_mid_scan_keeps_qc_running_and_the_spool_intact(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Spool.append_transient

    def failing(self, pos, t):
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, pos, t)

    monkeypatch.setattr(Spool, "append_transient", failing)
    rec = open_recording(FIXTURE)
    with running_daemon(tmp_path / "data") as (d, eps, ctx):
        viewer = FeedClient(eps.feed, eps.snapshot, ctx)
        viewer.sync(5)
        delivery = stream(eps, ctx, rec.scan, rec.transients)
        msgs = collect(viewer)
        viewer.close()
    assert sum(1 for m in msgs if m.get("type") == "result") == 50 and delivery.complete
    assert delivery.durable == 12 and "No space left" in delivery.daemon_error
    status = [m for m in msgs if m.get("type") == "status"]
    assert status and "No space left" in status[0]["detail"] and "not spooled" in status[0]["detail"]
    assert len(read_spool(tmp_path / "data" / rec.scan.scan_id / SPOOL_NAME).transients) == 12


def test_a_silent_producer_leaves_an_incomplete_scan_with_every_finding(tmp_path):
    """A BAD scan (30 Hz/min drift, corrupted averages) whose producer goes away: closed as incomplete after
    --producer-timeout, verdict fail with its findings, and the interruption counted in averages."""
    sim = bad_scan()
    with running_daemon(tmp_path / "data", producer_timeout_s=0.5) as (d, eps, ctx):
        viewer = FeedClient(eps.feed, eps.snapshot, ctx)
        viewer.sync(5)
        with Producer(eps.ingest, context=ctx) as p:
            p.start_scan(sim.scan)
            for t in sim.transients[:30]:
                p.send(t)
            summary = next(m for m in collect(viewer) if m.get("type") == "summary")["summary"]
        viewer.close()
    n_avg = summary["n_metabolite"]
    assert summary["status"] == "incomplete" and summary["verdict"] == "fail"
    assert any("drift" in r for r in summary["reasons"])
    assert f"scan incomplete: {n_avg} of 32 planned averages checked" in summary["reasons"]
    assert n_avg == 28  # 30 transients, 2 of them water references


def test_a_scan_without_a_spool_is_closed_from_its_journal_keeping_its_findings(tmp_path):
    """The journal-only path (the spool was unwritable): the last live verdict's findings are kept, the
    verdict is the worst one reached, the interruption is one more reason."""
    from qc_daemon.journal import Journal, verdict_record
    from qc_daemon.session import LiveScan

    sim = bad_scan()
    folder = tmp_path / "scan"
    folder.mkdir()
    journal = Journal(folder, sim.scan, fsync=False)
    live = LiveScan(sim.scan)
    for t in sim.transients[:30]:
        for r in live.process(t)[0]:
            journal.result(r)
    live_summary = live.progress()["summary"]
    assert live_summary["verdict"] == "fail"
    journal.write(verdict_record(live_summary))
    journal.sync()
    summary = close_from_journal(folder)
    assert summary.verdict == "fail" and summary.status == "interrupted"
    assert set(live_summary["reasons"]) <= set(summary.reasons)
    assert summary.reasons[-1] == "scan interrupted: 28 of 32 planned averages checked"
    assert json.loads((folder / "summary.json").read_text())["verdict"] == "fail"


def test_torn_spool_tails_are_cut_and_the_scan_resumes_from_what_is_intact(tmp_path):
    rec = open_recording(FIXTURE)
    transients = list(rec.transients)[:6]
    spool = Spool.create(tmp_path, rec.scan, "stream-1", fsync=False)
    ends = []
    for pos, t in enumerate(transients):
        spool.append_transient(pos, t)
        ends.append(spool.bytes)
    spool.append_skip(6, "bad_shape")
    spool.sync()
    whole = (tmp_path / SPOOL_NAME).read_bytes()
    rng = random.Random(3)
    for cut in sorted(rng.sample(range(ends[0], len(whole)), 25)) + [len(whole) - 1]:
        (tmp_path / SPOOL_NAME).write_bytes(whole[:cut])
        sp = read_spool(tmp_path / SPOOL_NAME)
        n = sum(1 for e in ends if e <= cut)
        assert [p for p, _ in sp.transients] == list(range(n)) and sp.torn_bytes == cut - sp.good_bytes
        assert all(np.array_equal(t.data, transients[p].data) for p, t in sp.transients)
        resumed = Spool(tmp_path / SPOOL_NAME, fsync=False, resume=sp)  # appends after the intact prefix
        resumed.append_transient(n, transients[n % 6])
        resumed.sync()
        again = read_spool(tmp_path / SPOOL_NAME)
        assert again.n_positions == n + 1 and again.torn_bytes == 0 and again.stream == "stream-1"
    (tmp_path / SPOOL_NAME).write_bytes(whole)
    assert read_spool(tmp_path / SPOOL_NAME).skipped == {6: "bad_shape"}


def test_check_of_a_daemon_spool_gives_the_results_of_the_original_file(daemon, tmp_path):
    from qc_daemon.cli import main

    d, eps, ctx = daemon
    rec = open_recording(FIXTURE)
    stream(eps, ctx, rec.scan, rec.transients)
    folder = d.data_dir / rec.scan.scan_id
    assert main(["check", str(folder), "--out", str(tmp_path / "out"), "-q"]) == 0  # the folder, or the spool
    assert results_of(tmp_path / "out") == offline(FIXTURE) == results_of(folder)


def test_spool_store_keeps_the_budget_and_retention_without_touching_the_open_scan(tmp_path):
    rec = open_recording(FIXTURE)
    t = rec.transients[0]
    folders = []
    for k in range(4):
        f = tmp_path / f"scan{k}"
        f.mkdir()
        sp = Spool.create(f, dataclasses.replace(rec.scan, scan_id=f"s{k}"), fsync=False)
        for pos in range(5):
            sp.append_transient(pos, t)
        sp.end("complete")
        if k < 3:
            (f / "summary.json").write_text("{}")  # finished; scan3 is the open one
        os.utime(f / SPOOL_NAME, (1000.0 + k, 1000.0 + k))
        folders.append(f)
    size = (folders[0] / SPOOL_NAME).stat().st_size
    store = SpoolStore(tmp_path, budget_bytes=int(2.5 * size))
    assert store.used == 4 * size and not store.fits(1)
    deleted = store.tidy(keep=folders[3] / SPOOL_NAME)
    assert deleted == [folders[0] / SPOOL_NAME, folders[1] / SPOOL_NAME] and store.used == 2 * size  # oldest first
    old = SpoolStore(tmp_path, retention_s=60.0)  # mtimes are from 1970: past any retention
    assert old.tidy(keep=folders[3] / SPOOL_NAME) == [folders[2] / SPOOL_NAME]
    assert (folders[3] / SPOOL_NAME).exists() and (folders[2] / "summary.json").exists()  # results stay


def _early_burst_scan():
    """3 corrupted averages right after the reference (25 % flagged live at average 12: FAIL), then clean ones
    (10 % at average 30: WARN)."""
    from qc_daemon.sources.simulate import Event, SimulationParams, simulate_scan

    return simulate_scan(SimulationParams(n_coils=4, n_points=1024, averages=32, naa_snr=6.0, drift_hz_per_min=0.0,
                                          seed=9, events=[Event(i, "freq_jump", 10.0) for i in (9, 10, 11)]))


@pytest.mark.parametrize("status", ["interrupted", "complete"])
def test_a_scan_that_stops_keeps_the_worst_verdict_it_reached_live(tmp_path, status):
    from qc_daemon.config import load_config
    from qc_daemon.open_scan import OpenScan
    from qc_daemon.sinks import Messages

    sim = _early_burst_scan()
    published = []
    scan = OpenScan.begin(tmp_path, sim.scan, "s", load_config(), False, None, Messages(published.extend))
    scan.live.progress_interval_s = 0.0  # a live summary after every transient, as at scan pace
    for pos, t in enumerate(sim.transients[:32]):
        scan.take(pos, t)
        scan.settle()  # as the daemon does after each burst
    live = [m["summary"]["verdict"] for m in published if m["type"] == "progress"]
    assert "fail" in live and live[-1] == "warn"
    summary = scan.finish(status)
    if status == "complete":  # a scan seen to its end is judged on all of it
        assert summary.verdict == "warn"
    else:
        assert summary.verdict == "fail" and summary.reasons[0].startswith("FAIL live before the scan stopped: ")
        assert "motion-corrupted" in summary.reasons[0] and published[-1]["summary"]["verdict"] == "fail"
        assert json.loads((scan.folder / "summary.json").read_text())["verdict"] == "fail"


def test_a_burst_is_published_first_and_spooled_after_in_stream_order(tmp_path):
    """take() publishes at once and leaves spool and journal to settle(); a skipped position in the middle of
    the burst keeps its place, and sync() settles whatever is left before it fsyncs."""
    from qc_daemon.config import load_config
    from qc_daemon.open_scan import OpenScan
    from qc_daemon.sinks import Messages

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)[:12]
    published = []
    scan = OpenScan.begin(tmp_path, rec.scan, "s", load_config(), False, None, Messages(published.extend))
    for pos, t in enumerate(transients[:5]):
        scan.take(pos, t)
    scan.skip(5, "bad_shape")
    assert read_spool(scan.folder / SPOOL_NAME).n_positions == 0  # nothing written yet: results only
    results_before = sum(m["type"] == "result" for m in published)
    scan.settle()
    for pos, t in enumerate(transients[6:], start=6):
        scan.take(pos, t)
    assert scan.sync() == 12  # settled (no progress) and fsync'd
    sp = read_spool(scan.folder / SPOOL_NAME)
    assert [p for p, _ in sp.transients] == [0, 1, 2, 3, 4] + list(range(6, 12)) and sp.skipped == {5: "bad_shape"}
    assert all(np.array_equal(t.data, transients[p].data) for p, t in sp.transients)
    journaled = [json.loads(x) for x in (scan.folder / "journal.jsonl").read_text().splitlines()]
    assert sum(r.get("record") == "result" for r in journaled) == sum(m["type"] == "result" for m in published)
    assert results_before > 0  # results of the first burst were out before any of its bookkeeping


def test_a_bug_in_a_checks_summary_loses_nothing(tmp_path, monkeypatch):
    """A check whose finish raises: the live summary is skipped (said once), every result is still published
    and journaled, and the scan ends with a summary rebuilt from its results that says what went wrong."""
    from plugins.linewidth import LinewidthCheck
    from qc_daemon.config import load_config
    from qc_daemon.open_scan import OpenScan
    from qc_daemon.sinks import Messages

    def broken(self, ctx):
        raise KeyError("a bug")

    monkeypatch.setattr(LinewidthCheck, "finish", broken)
    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    published = []
    scan = OpenScan.begin(tmp_path, rec.scan, "s", load_config(), False, None, Messages(published.extend))
    scan.live.progress_interval_s = 0.0
    for pos, t in enumerate(transients):
        scan.take(pos, t)
        scan.settle()
    errors = scan.take_errors()
    assert len(errors) == 1 and errors[0].startswith("internal error in the live summary: KeyError")
    summary = scan.finish("complete")
    assert scan.take_errors()[0].startswith("internal error at scan end: KeyError")
    assert summary.verdict in ("warn", "fail") and any("internal error at scan end" in r for r in summary.reasons)
    assert summary.n_transients == len(transients) and summary.provenance["checks"][1] == "linewidth"
    assert summary.drift_total_hz is not None  # the other checks' values, rebuilt from the results
    on_disk = json.loads((scan.folder / "summary.json").read_text())
    assert on_disk["verdict"] == summary.verdict and len(results_of(scan.folder)) == len(transients)
    assert sum(m["type"] == "result" for m in published) == len(transients) and published[-1]["type"] == "summary"
    assert json.loads((scan.folder / "stream.json").read_text())["status"] == "complete"
