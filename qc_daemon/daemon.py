"""The live QC daemon: sockets and the event loop; all numerics live in the engine (ScanQC).

    producer --PUSH--> [ingest PULL] --> ScanQC --> [feed PUB]  topic = scan id (b"_daemon" for status)
                                          |    \\--> journal (per scan, fsync'd)
                                          \\------> [snapshot ROUTER]  late joiners get the scan so far

Feed messages are JSON objects with a ``type`` (scan_start, result, progress, summary: see session.py;
status, heartbeat) and a ``feed_seq``: the snapshot carries the last feed_seq it includes (and of the
progress messages only the latest), so a viewer that subscribed first and then asked for the snapshot
drops live messages with feed_seq <= that value (zguide "Clone" pattern): no gap and no duplicate.
Bad input is rejected, counted by reason and logged, never fatal.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from . import kernels, protocol
from .config import Config, load_config
from .engine import ScanQC
from .journal import Journal, default_data_dir, recover
from .model import ScanInfo, TransientQC
from .security import CurveConfig
from .session import LiveScan

log = logging.getLogger("mrsqc.daemon")

DAEMON_TOPIC = b"_daemon"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # ZMQ_MAXMSGSIZE on ingest: a bad peer cannot exhaust memory
INGEST_QUEUE = 32  # ZMQ_RCVHWM on ingest (messages)


def _percentiles(values) -> dict[str, float] | None:
    """p50/p99/max (ms) of the last handled messages (receive -> published and journaled)."""
    if not values:
        return None
    v = sorted(values)
    return {"p50": v[len(v) // 2], "p99": v[min(len(v) - 1, int(0.99 * len(v)))], "max": v[-1], "n": len(v)}


def is_local(endpoint: str) -> bool:
    """True for tcp endpoints on the loopback interface (and for ipc/inproc)."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    return host in LOCAL_HOSTS


@dataclass
class Endpoints:
    ingest: str = "tcp://127.0.0.1:5555"
    feed: str = "tcp://127.0.0.1:5556"
    snapshot: str = "tcp://127.0.0.1:5557"


@dataclass
class _OpenScan:
    scan: ScanInfo
    live: LiveScan
    journal: Journal | None
    results: list[TransientQC] = field(default_factory=list)
    last_message_at: float = 0.0


class Daemon:
    """Bind with :meth:`bind`, run :meth:`serve` until ``stop`` is set (another thread or a signal handler)."""

    def __init__(self, endpoints: Endpoints | None = None, data_dir: Path | None = None,
                 config: Config | None = None, key: bytes | None = None, heartbeat_s: float = 1.0,
                 fsync: bool = True, allow_remote: bool = False, context: zmq.Context | None = None,
                 producer_timeout_s: float = 60.0, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 curve: CurveConfig | None = None):
        self.endpoints = endpoints or Endpoints()
        for name, ep in vars(self.endpoints).items():
            if not allow_remote and not is_local(ep):
                raise ValueError(f"{name} endpoint {ep} is not on 127.0.0.1: pass --allow-remote to bind it")
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.config = config or load_config()
        self.key = key
        self.heartbeat_s = heartbeat_s
        self.producer_timeout_s = producer_timeout_s
        self.max_message_bytes = max_message_bytes
        self.curve = curve
        self.fsync = fsync
        self.ctx = context or zmq.Context.instance()
        self.stream = protocol.StreamState()
        self.rejected: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.feed_seq = 0
        self.snapshot: list[dict] = []  # feed messages of the current (or last) scan, but progress
        self.snapshot_progress: dict | None = None  # the latest progress message only: it replaces the previous
        self.open: _OpenScan | None = None
        self.error_state: str | None = None
        self.bound: Endpoints | None = None
        self.handle_ms: deque[float] = deque(maxlen=1000)  # receive -> results published, per transient
        self.daemon_id = uuid.uuid4().hex  # changes on restart: a viewer re-syncs when it sees a new one

    # ------------------------------------------------------------------ set-up
    def bind(self) -> Endpoints:
        """Create and bind the sockets; returns the actual endpoints (ports resolved for ``:*``)."""
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        # a short ingest queue: a producer faster than the QC is held back (its PUSH blocks) instead of
        # piling up seconds of backlog and gigabytes of buffered transients in the daemon
        self.pull.setsockopt(zmq.RCVHWM, INGEST_QUEUE)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.serve(self.ctx, (self.pull, self.pub, self.router))
        bound = []
        for sock, ep in ((self.pull, self.endpoints.ingest), (self.pub, self.endpoints.feed),
                         (self.router, self.endpoints.snapshot)):
            sock.bind(ep)
            bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        self.bound = Endpoints(*bound)
        return self.bound

    def warm_up(self) -> float:
        """Compile/load every kernel and close journals a crash left open; returns seconds."""
        t0 = time.perf_counter()
        kernels.warm_up()
        ScanQC.warm_up(self.config)
        for folder in recover(self.data_dir):
            self._status("warn", f"closed interrupted scan {folder.name} found at start-up")
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's generations: shorter pauses while serving
        return time.perf_counter() - t0

    def close(self) -> None:
        if self.open is not None:
            self._end_scan("interrupted")
        for s in (self.pull, self.pub, self.router):
            s.close(0)
        if self.curve is not None:
            self.curve.stop()

    # ------------------------------------------------------------------ loop
    def serve(self, stop: threading.Event) -> None:
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        next_beat = time.monotonic()
        while not stop.is_set():
            timeout_ms = max(0, int((next_beat - time.monotonic()) * 1000))
            events = dict(poller.poll(min(timeout_ms, 200)))
            if self.pull in events:
                for _ in range(64):  # drain a burst before looking at snapshots/heartbeats again
                    try:
                        frames = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    t0 = time.perf_counter()
                    self.handle(frames)
                    self.handle_ms.append((time.perf_counter() - t0) * 1e3)
            if self.router in events:
                self._serve_snapshot()
            if time.monotonic() >= next_beat:
                self._heartbeat()
                self._check_producer()
                next_beat = time.monotonic() + self.heartbeat_s

    def handle(self, frames: list[bytes]) -> None:
        """Validate and act on one ingest message; never raises for bad input."""
        try:
            msg = protocol.decode(frames, self.key)
            self.stream.check_seq(msg)
            if msg.kind == "scan_start":
                self._start_scan(ScanInfo.from_dict(msg.header["scan"]))
            elif msg.kind == "transient":
                transient = self.stream.to_transient(msg)
                self._transient(transient)
            elif msg.kind == "scan_end":
                if self.open is None or msg.header["scan_id"] != self.open.scan.scan_id:
                    raise protocol.ProtocolError("no_scan", f"scan_end for {msg.header['scan_id']!r}")
                self._end_scan(msg.header.get("status", "complete"))
            self.counters[msg.kind] += 1
        except protocol.ProtocolError as exc:
            self.rejected[exc.reason] += 1
            log.warning("rejected message: %s", exc)
        except ValueError as exc:  # engine-level validation (e.g. shape)
            self.rejected["invalid"] += 1
            log.warning("rejected message: %s", exc)

    # ------------------------------------------------------------------ scans
    def _start_scan(self, scan: ScanInfo) -> None:
        if self.open is not None:
            self._end_scan("incomplete")
        self.stream.scan = scan
        journal = self._journal(scan)
        self.open = _OpenScan(scan, LiveScan(scan, self.config), journal, last_message_at=time.monotonic())
        self.snapshot, self.snapshot_progress = [], None
        self._publish_all(scan.scan_id, self.open.live.start())
        log.info("scan %s started: %s, %d coils x %d points", scan.scan_id, scan.sequence, scan.n_coils,
                 scan.n_points)

    def _transient(self, transient) -> None:
        scan = self.open
        if scan is None:
            raise protocol.ProtocolError("no_scan")
        scan.last_message_at = time.monotonic()
        results, messages = scan.live.process(transient)
        self._publish_all(scan.scan.scan_id, messages)
        self._journal_results(scan, results)
        self._publish_all(scan.scan.scan_id, scan.live.progress_if_due())  # after the results: never delays them

    def _journal_results(self, scan: _OpenScan, results: list[TransientQC]) -> None:
        scan.results.extend(results)
        if scan.journal is None:
            return
        try:
            for qc in results:
                scan.journal.result(qc)
        except OSError as exc:
            self._journal_failed(scan, exc)

    def _end_scan(self, status: str) -> None:
        scan, self.open = self.open, None
        if scan is None:
            return
        self.stream.scan = None
        tail, summary, messages = scan.live.finish(status)
        self._publish_all(scan.scan.scan_id, messages)
        self._journal_results(scan, tail)
        if scan.journal is not None:
            try:
                scan.journal.close(scan.results, summary)
            except OSError as exc:
                self._journal_failed(scan, exc)
        log.info("scan %s %s: %d transients, verdict %s", scan.scan.scan_id, status, summary.n_transients,
                 summary.verdict)

    def _check_producer(self) -> None:
        """Close the open scan as incomplete when its producer has been silent for producer_timeout_s."""
        if self.open is None or self.producer_timeout_s <= 0:
            return
        silent = time.monotonic() - self.open.last_message_at
        if silent > self.producer_timeout_s:
            scan_id = self.open.scan.scan_id
            self._status("warn", f"producer silent for {silent:.0f} s: scan {scan_id} closed as incomplete")
            log.warning("producer silent for %.0f s: closing scan %s as incomplete", silent, scan_id)
            self._end_scan("incomplete")

    def _journal(self, scan: ScanInfo) -> Journal | None:
        try:
            return Journal(self.data_dir, scan, fsync=self.fsync)
        except OSError as exc:
            self.error_state = f"journal not writable: {exc}"
            self._status("error", self.error_state)
            log.error("%s (QC continues without a journal)", self.error_state)
            return None

    def _journal_failed(self, scan: _OpenScan, exc: OSError) -> None:
        scan.journal = None
        self.error_state = f"journal write failed: {exc}"
        self._status("error", self.error_state)
        log.error("%s (QC continues without a journal)", self.error_state)

    # ------------------------------------------------------------------ feed
    def _publish_all(self, scan_id: str, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            self._publish(scan_id, m)

    def _publish(self, scan_id: str, message: dict[str, Any]) -> None:
        self.feed_seq += 1
        message = dict(message, feed_seq=self.feed_seq, scan_id=scan_id)
        if message["type"] == "progress":
            self.snapshot_progress = message
        else:
            self.snapshot.append(message)
        self.pub.send_multipart([scan_id.encode(), json.dumps(message, allow_nan=False).encode()])

    def _status(self, state: str, detail: str) -> None:
        self.pub.send_multipart([DAEMON_TOPIC, json.dumps({"type": "status", "state": state, "detail": detail,
                                                           "feed_seq": self.feed_seq}).encode()])

    def _heartbeat(self) -> None:
        beat = {"type": "heartbeat", "time": time.time(), "feed_seq": self.feed_seq, "daemon_id": self.daemon_id,
                "scan_id": self.open.scan.scan_id if self.open else None, "error": self.error_state,
                "received": dict(self.counters), "rejected": dict(self.rejected), "seq_gaps": self.stream.gaps,
                "handle_ms": _percentiles(self.handle_ms)}
        self.pub.send_multipart([DAEMON_TOPIC, json.dumps(beat).encode()])

    def _serve_snapshot(self) -> None:
        try:
            frames = self.router.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        identity = frames[0]
        if len(frames) < 2 or frames[-1] != b"snapshot":
            self.rejected["bad_snapshot_request"] += 1
            return
        messages = self.snapshot if self.snapshot_progress is None else self.snapshot + [self.snapshot_progress]
        reply = {"feed_seq": self.feed_seq, "daemon_id": self.daemon_id, "messages": messages}
        self.router.send_multipart([identity, json.dumps(reply, allow_nan=False).encode()])
