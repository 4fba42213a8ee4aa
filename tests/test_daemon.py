"""End-to-end over loopback: random ports, linger 0, time-outs everywhere."""

import json
import threading
import time

import numpy as np
import pytest
import zmq

from qc_daemon import protocol
from qc_daemon.check import run_check
from qc_daemon.client import FeedClient, Producer
from qc_daemon.daemon import Daemon, Endpoints
from qc_daemon.replay import replay
from tests.conftest import FIXTURES
from tests.daemon_support import collect

FIXTURE = FIXTURES / "demo_drift_motion.dat"


def offline():
    return [r.to_dict() for r in run_check(FIXTURE).results]


def test_replayed_scan_gives_results_identical_to_check(daemon):
    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    delivery = replay(FIXTURE, eps.ingest, speed=None)
    msgs = list(viewer.messages("summary", timeout_s=60))
    viewer.close()
    results = [m["result"] for m in msgs if m["type"] == "result"]
    assert delivery.complete and (delivery.sent, delivery.received, delivery.durable) == (50, 50, 50)
    assert delivery.verdict == next(m["summary"]["verdict"] for m in msgs if m["type"] == "summary")
    assert len(results) == 50
    assert results == offline()
    summary = next(m["summary"] for m in msgs if m["type"] == "summary")
    checked = run_check(FIXTURE).summary
    assert summary["flagged_indices"] == checked.flagged_indices
    # the reader's notes travel with the ScanInfo: the live summary says what check says
    assert summary["notes"] == checked.notes and "2x oversampling (removed after coil combination)" in checked.notes
    # the journal holds the same, and the end-of-scan files match `mrsqc check --out` in form
    folder = d.data_dir / summary["scan_id"]
    rows = [json.loads(line) for line in (folder / "transients.jsonl").read_text().splitlines()]
    assert rows == results and json.loads((folder / "summary.json").read_text())["verdict"] == summary["verdict"]
    # ... and the analysts' NIfTI-MRS too, value for value
    from qc_daemon.cli import main
    from qc_daemon.sources.nifti_mrs import read_nifti_mrs
    from tests.daemon_support import wait_until

    wait_until(lambda: (folder / "accepted_aligned.tsv").is_file(), what="the scan's NIfTI-MRS outputs")
    assert main(["check", str(FIXTURE), "--out", str(d.data_dir.parent / "offline"), "-q"]) == 0
    for name in ("combined.nii.gz", "combined_wref.nii.gz", "accepted_aligned.nii.gz"):
        live = [t.data for t in read_nifti_mrs(folder / name, role="water").transients]
        off = [t.data for t in read_nifti_mrs(d.data_dir.parent / "offline" / name, role="water").transients]
        assert len(live) == len(off) > 0 and all((a == b).all() for a, b in zip(live, off)), name
    for name in ("combined.tsv", "accepted_aligned.tsv"):
        assert (folder / name).read_text() == (d.data_dir.parent / "offline" / name).read_text()


def test_viewer_joining_mid_scan_gets_the_whole_scan_without_gaps_or_duplicates(daemon):
    d, eps, ctx = daemon
    from qc_daemon.sources.open import open_recording

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    with Producer(eps.ingest, context=ctx) as p:
        p.start_scan(rec.scan)
        for t in transients[:25]:
            p.send(t)
        # wait until the daemon has processed them, then a viewer joins
        first = FeedClient(eps.feed, eps.snapshot, ctx)
        first.sync(5)
        late = FeedClient(eps.feed, eps.snapshot, ctx)
        snap = late.sync(5)
        for t in transients[25:]:
            p.send(t)
        p.end_scan()
        live = list(late.messages("summary", timeout_s=60))
    late.close()
    first.close()
    seqs = [m["feed_seq"] for m in snap + live if m["type"] != "progress"]
    progress = [m["feed_seq"] for m in snap if m["type"] == "progress"]
    assert len(progress) <= 1  # the snapshot keeps only the latest progress message
    every = sorted(seqs + progress + [m["feed_seq"] for m in live if m["type"] == "progress"])
    assert len(every) == len(set(every)) and every[-1] == d.feed_seq  # no duplicate, up to the end
    assert seqs == sorted(seqs)  # in order
    # contiguous except for superseded progress messages: nothing else is missing
    missing = set(range(1, d.feed_seq + 1)) - set(every)
    assert all(s < (progress[0] if progress else 0) for s in missing)
    results = [m["result"] for m in snap + live if m["type"] == "result"]
    assert results == offline()


def test_bad_messages_are_rejected_counted_answered_and_not_fatal(daemon):
    d, eps, ctx = daemon
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(eps.ingest)
    raw.send_multipart([b"nope"])
    raw.send_multipart([protocol.VERSION, b"{not json"])
    raw.send_multipart([protocol.VERSION, b'{"kind":"transient","scan_id":"x","seq":1}', b"\0" * 8])
    raw.send_multipart([b"mrsqc/1", b'{"kind":"heartbeat","scan_id":"","seq":2}'])  # the old protocol
    replies = []
    deadline = time.monotonic() + 10
    while len(replies) < 4 and time.monotonic() < deadline:
        if raw.poll(100):
            replies.append(protocol.decode_reply(raw.recv_multipart()).header)
    raw.close()
    assert [r["reason"] for r in replies] == ["frame_count", "bad_json", "bad_field", "version"]
    replay(FIXTURE, eps.ingest, speed=None)  # still serving
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    snap = viewer.sync(5)
    viewer.close()
    assert any(m["type"] == "summary" for m in snap)
    assert d.rejected["frame_count"] == 1 and d.rejected["bad_json"] == 1 and d.rejected["bad_field"] == 1


def test_demo_runs_to_the_summary_and_leaves_no_thread_behind():
    from qc_daemon.demo import run_demo

    lines: list[str] = []
    summary = run_demo(speed=1000.0, out=lines.append)
    assert summary["flagged_indices"] == [15, 16, 39, 43] and len(lines) > 50
    assert not [t for t in threading.enumerate() if t.name in ("mrsqc-daemon", "mrsqc-replay") and t.is_alive()]


def test_consecutive_scans_from_new_producers_in_one_process(daemon):
    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    for _ in range(2):
        replay(FIXTURE, eps.ingest, speed=None)
        summaries = [m for m in viewer.messages("summary", timeout_s=60) if m["type"] == "summary"]
        assert summaries[-1]["summary"]["n_transients"] == 50
    viewer.close()
    assert not d.rejected


def test_new_scan_start_closes_the_open_scan_as_incomplete(daemon):
    d, eps, ctx = daemon
    from dataclasses import replace as dc_replace

    from qc_daemon.sources.open import open_recording

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    with Producer(eps.ingest, context=ctx) as p:
        p.start_scan(rec.scan)
        for t in transients[:20]:
            p.send(t)
        p.start_scan(dc_replace(rec.scan, scan_id="second"))
        first = [m for m in viewer.messages("summary", timeout_s=60) if m["type"] == "summary"][0]
        for t in transients:
            p.send(t)
        p.end_scan()
        second = [m for m in viewer.messages("summary", timeout_s=60) if m["type"] == "summary"][0]
    viewer.close()
    assert first["summary"]["status"] == "incomplete" and first["summary"]["n_transients"] == 20
    assert second["scan_id"] == "second" and second["summary"]["n_transients"] == 50


def test_remote_binding_needs_the_explicit_flag(tmp_path):
    remote = Endpoints("tcp://0.0.0.0:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    with pytest.raises(ValueError, match="--allow-remote"):
        Daemon(remote, data_dir=tmp_path)
    Daemon(remote, data_dir=tmp_path, allow_remote=True)  # allowed when asked for


def test_heartbeat_and_the_replay_command(daemon):
    import subprocess
    import sys

    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    res = subprocess.run([sys.executable, "-m", "qc_daemon.cli", "replay", str(FIXTURE), "--to", eps.ingest,
                          "--speed", "max"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "replayed 50 transients" in res.stdout
    beats, summary = [], None
    deadline = time.monotonic() + 30
    while (summary is None or not beats) and time.monotonic() < deadline:
        for m in viewer.poll(100):
            if m["type"] == "heartbeat" and summary is not None:  # a beat after the whole scan was handled
                beats.append(m)
            elif m["type"] == "summary":
                summary = m
    viewer.close()
    assert summary is not None and beats and beats[-1]["received"]["transient"] == 50




def test_a_bug_in_a_check_is_an_internal_error_reported_and_nothing_is_lost(daemon, monkeypatch):
    """Not bad input: the producer is told internal_error (not a rejection of its data), the feed and the
    heartbeat say so, the transient is in the spool, and the scan goes on to its summary."""
    from plugins.snr import SnrCheck
    from qc_daemon.spool import SPOOL_NAME, read_spool

    measure = SnrCheck.measure

    def buggy(self, ctx):
        if ctx.transient.index == 20:
            raise ZeroDivisionError("a bug")
        return measure(self, ctx)

    monkeypatch.setattr(SnrCheck, "measure", buggy)
    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    delivery = replay(FIXTURE, eps.ingest, speed=None)
    messages = collect(viewer, "summary")
    viewer.close()
    assert delivery.closed and [r["reason"] for r in delivery.rejected] == ["internal_error"]
    assert "ZeroDivisionError: a bug" in delivery.rejected[0]["detail"]
    assert d.rejected["internal_error"] == 1 and "internal error" in (d.error_state or "")
    results = [m["result"]["index"] for m in messages if m["type"] == "result"]
    assert 20 not in results and len(results) == 49  # every other transient checked
    spooled = read_spool(next(d.data_dir.glob(f"*/{SPOOL_NAME}")))
    assert [p for p, _ in spooled.transients] == list(range(50))  # the one that hit the bug is kept raw
    assert any(m["type"] == "status" and m["state"] == "error" and "internal error: ZeroDivisionError" in m["detail"]
               for m in messages)  # said on the feed, as it happened


def test_a_port_released_a_moment_late_is_waited_for_and_one_held_fails_cleanly(tmp_path):
    """ZeroMQ frees a closed socket's port asynchronously: a daemon restarted in the same process may find it
    held for a moment (seen in CI as 'Address already in use' on a restart). The bind waits; a port that stays
    held fails after the wait with every socket closed again."""
    ctx = zmq.Context()
    try:
        holder = ctx.socket(zmq.PULL)
        holder.setsockopt(zmq.LINGER, 0)
        holder.bind("tcp://127.0.0.1:*")
        held = holder.getsockopt_string(zmq.LAST_ENDPOINT)
        eps = Endpoints(held, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
        timer = threading.Timer(0.3, holder.close, args=(0,))
        timer.start()
        d = Daemon(eps, data_dir=tmp_path / "a", fsync=False, context=ctx)
        t0 = time.monotonic()
        assert d.bind(retry_s=5.0).ingest == held
        assert 0.25 < time.monotonic() - t0 < 5.0
        d.close()

        blocker = ctx.socket(zmq.PULL)
        blocker.setsockopt(zmq.LINGER, 0)
        blocker.bind(held.replace(held.rsplit(":", 1)[1], "*"))
        taken = blocker.getsockopt_string(zmq.LAST_ENDPOINT)
        d2 = Daemon(Endpoints("tcp://127.0.0.1:*", taken, "tcp://127.0.0.1:*"), data_dir=tmp_path / "b",
                    fsync=False, context=ctx)
        t0 = time.monotonic()
        with pytest.raises(zmq.ZMQError) as err:
            d2.bind(retry_s=0.3)
        assert err.value.errno == zmq.EADDRINUSE and 0.3 <= time.monotonic() - t0 < 3.0
        assert d2.ingest.closed and d2.pub.closed and d2.router.closed
        blocker.close(0)
    finally:
        ctx.destroy(linger=0)


def test_slow_scan_outputs_do_not_hold_back_the_heartbeat_and_their_failure_is_reported(daemon, monkeypatch):
    """The NIfTI-MRS and report.html are written off the daemon's loop: with a report that takes 2 s (a
    loaded host), heartbeats go on every ~0.2 s and the next scan is checked meanwhile; the report arrives
    after the summary. A writer that fails is said on the feed; a stopping daemon waits for the queue."""
    import qc_daemon.check as check_mod
    from tests.daemon_support import wait_until

    write_report = check_mod.write_report
    calls = []

    def slow(folder, *a, **kw):
        calls.append(folder)
        time.sleep(2.0)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return write_report(folder, *a, **kw)

    monkeypatch.setattr(check_mod, "write_report", slow)
    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    replay(FIXTURE, eps.ingest, speed=None)
    beats, t_summary = [], None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (t_summary is None or time.monotonic() < t_summary + 1.5):
        for m in viewer.poll(50):
            if m["type"] == "summary":
                t_summary = time.monotonic()
            elif m["type"] == "heartbeat" and t_summary is not None:
                beats.append(time.monotonic())
    assert t_summary is not None and d.outputs.pending == 1  # the report is still being written
    gaps = np.diff([t_summary] + beats)
    assert len(beats) >= 5 and gaps.max() < 0.6, gaps  # the loop went on
    # a second scan meanwhile: checked while the first one's report is written, then its report fails
    delivery = replay(FIXTURE, eps.ingest, speed=None)
    assert delivery.complete
    msgs = list(viewer.messages("summary", timeout_s=30))
    assert len([m for m in msgs if m["type"] == "result"]) == 50
    wait_until(lambda: len(calls) == 2 and d.outputs.pending == 0, timeout_s=30, what="both output jobs")
    first, second = calls
    assert (first / "report.html").is_file() and not (second / "report.html").exists()
    assert (second / "accepted_aligned.nii.gz").is_file() and (second / "summary.json").is_file()
    errors = []
    wait_until(lambda: errors.extend(m for m in viewer.poll(50) if m["type"] == "status"
                                     and "report.html not written: disk full" in m.get("detail", "")) or errors,
               timeout_s=10, what="the writer's error on the feed")
    viewer.close()
