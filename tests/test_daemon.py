"""End-to-end over loopback: random ports, linger 0, time-outs everywhere."""

import dataclasses
import json
import threading
import time

import pytest
import zmq

from qc_daemon import protocol
from qc_daemon.check import run_check
from qc_daemon.client import FeedClient, Producer
from qc_daemon.daemon import Daemon, Endpoints
from qc_daemon.replay import replay
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "demo_drift_motion.dat"
RANDOM = Endpoints("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")


@pytest.fixture
def daemon(tmp_path):
    ctx = zmq.Context()
    d = Daemon(RANDOM, data_dir=tmp_path / "data", heartbeat_s=0.2, fsync=False, context=ctx)
    eps = d.bind()
    d.warm_up()
    stop = threading.Event()
    thread = threading.Thread(target=d.serve, args=(stop,), daemon=True)
    thread.start()
    yield d, eps, ctx
    stop.set()
    thread.join(5)
    d.close()
    ctx.destroy(linger=0)


def offline():
    return [r.to_dict() for r in run_check(FIXTURE).results]


def test_replayed_scan_gives_results_identical_to_check(daemon):
    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    sent = replay(FIXTURE, eps.ingest, speed=None)
    msgs = list(viewer.messages("summary", timeout_s=60))
    viewer.close()
    results = [m["result"] for m in msgs if m["type"] == "result"]
    assert sent == 50 and len(results) == 50
    assert results == offline()
    summary = next(m["summary"] for m in msgs if m["type"] == "summary")
    assert summary["flagged_indices"] == run_check(FIXTURE).summary.flagged_indices
    # the journal holds the same, and the end-of-scan files match `mrsqc check --out` in form
    folder = d.data_dir / summary["scan_id"]
    rows = [json.loads(line) for line in (folder / "transients.jsonl").read_text().splitlines()]
    assert rows == results and json.loads((folder / "summary.json").read_text())["verdict"] == summary["verdict"]


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


def test_bad_messages_are_rejected_counted_and_not_fatal(daemon):
    d, eps, ctx = daemon
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)  # deliver before closing
    push.connect(eps.ingest)
    push.send_multipart([b"nope"])
    push.send_multipart([protocol.VERSION, b"{not json"])
    push.send_multipart([protocol.VERSION, b'{"kind":"transient","scan_id":"x","seq":1}', b"\0" * 8])
    push.close()
    replay(FIXTURE, eps.ingest, speed=None)  # still serving
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    snap = viewer.sync(5)
    viewer.close()
    assert any(m["type"] == "summary" for m in snap)
    assert d.rejected["frame_count"] == 1 and d.rejected["bad_json"] == 1 and d.rejected["bad_field"] == 1


def _start_daemon_process(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "qc_daemon.cli", "daemon", "--ingest", "tcp://127.0.0.1:*",
                             "--feed", "tcp://127.0.0.1:*", "--snapshot", "tcp://127.0.0.1:*",
                             "--data-dir", str(tmp_path / "data"), "--heartbeat", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, json.loads(line)


def test_daemon_killed_mid_scan_keeps_its_journal_and_closes_the_scan_on_restart(tmp_path):
    import signal

    from qc_daemon.sources.open import open_recording

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    proc, eps = _start_daemon_process(tmp_path)
    ctx = zmq.Context()
    try:
        viewer = FeedClient(eps["feed"], eps["snapshot"], ctx)
        viewer.sync(10)
        with Producer(eps["ingest"], context=ctx) as p:
            p.start_scan(rec.scan)
            for t in transients[:30]:
                p.send(t)
            got = []
            deadline = time.monotonic() + 60
            while len(got) < 30 and time.monotonic() < deadline:  # 30 results out (and journaled before)
                got += [m for m in viewer.poll(200) if m.get("type") == "result"]
            assert len(got) == 30 and proc.poll() is None
            folder = next((tmp_path / "data").iterdir())
            journal = folder / "journal.jsonl"
            while len(journal.read_text().splitlines()) < 31 and time.monotonic() < deadline:
                time.sleep(0.05)  # results are published first, journaled (fsync'd) right after
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        viewer.close()
        lines = journal.read_text().splitlines()
        assert len(lines) >= 31 and all(json.loads(x) for x in lines)  # intact to its last record
        proc, eps = _start_daemon_process(tmp_path)  # restart: the open scan is closed as interrupted
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["n_transients"] == len(lines) - 1
        assert len((folder / "transients.jsonl").read_text().splitlines()) == len(lines) - 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0  # clean shutdown on SIGTERM
        ctx.destroy(linger=0)


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


def test_producer_reconnects_by_itself_after_the_daemon_is_killed_and_restarted(tmp_path):
    import signal
    import subprocess
    import sys

    from qc_daemon.sources.open import open_recording

    probe = zmq.Context.instance()
    ports = []
    for _ in range(3):
        s = probe.socket(zmq.REP)
        ports.append(s.bind_to_random_port("tcp://127.0.0.1"))
        s.close(0)
    eps = {k: f"tcp://127.0.0.1:{p}" for k, p in zip(("ingest", "feed", "snapshot"), ports)}

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "qc_daemon.cli", "daemon", "--ingest", eps["ingest"],
                                 "--feed", eps["feed"], "--snapshot", eps["snapshot"], "--data-dir",
                                 str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        assert proc.stdout.readline()
        return proc

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    ctx = zmq.Context()
    proc = start()
    producer = Producer(eps["ingest"], context=ctx)
    try:
        producer.start_scan(rec.scan)
        for t in transients[:10]:
            producer.send(t)
        journal = tmp_path / "data" / rec.scan.scan_id / "journal.jsonl"
        deadline = time.monotonic() + 30
        while not (journal.exists() and len(journal.read_text().splitlines()) >= 11):
            assert time.monotonic() < deadline, "the daemon did not journal the first 10 transients"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = start()  # same endpoints; the producer's socket reconnects by itself
        viewer = FeedClient(eps["feed"], eps["snapshot"], ctx)
        viewer.sync(10)
        producer.start_scan(dataclasses.replace(rec.scan, scan_id="after-restart"))
        for t in transients:
            producer.send(t)
        producer.end_scan()
        summary = [m for m in viewer.messages("summary", timeout_s=60) if m["type"] == "summary"][0]
        viewer.close()
        assert summary["scan_id"] == "after-restart" and summary["summary"]["n_transients"] == 50
        first = json.loads((tmp_path / "data" / rec.scan.scan_id / "summary.json").read_text())
        assert first["status"] == "interrupted"
    finally:
        producer.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        ctx.destroy(linger=0)
