r"""The live QC daemon: sockets and the event loop; per-scan record keeping is OpenScan, numerics the engine.

    producer --DEALER--> [ingest ROUTER] --> OpenScan: spool -> engine -> [feed PUB] topic = scan id
        ^                                        |                  \--> journal      (b"_daemon": status)
        \------ ack / reject (per burst) <--------/  fsync spool + journal, then acknowledge
                                                 \----------------------> [snapshot ROUTER] late joiners

Delivery (docs/protocol.md): each transient carries its position in the producer's stream; the daemon takes
positions in order, drops duplicates, refuses gaps (saying which position it needs), spools what it takes,
fsyncs once per burst and then acknowledges how far it has received and made durable. After a stop the daemon
resumes the open scan from its spool (the engine re-run over it) and the producer re-sends from there.

Feed messages are JSON objects with a ``type`` (scan_start, result, progress, summary: see session.py;
status, heartbeat) and a ``feed_seq``: the snapshot carries the last feed_seq it includes (and of the
progress messages only the latest), so a viewer that subscribed first and then asked for the snapshot
drops live messages with feed_seq <= that value (zguide "Clone" pattern): no gap and no duplicate.
Bad input is rejected, counted by reason, logged and answered, never fatal.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from . import feed, kernels, protocol
from .config import Config, load_config
from .engine import ScanQC
from .journal import close_from_journal, default_data_dir, open_journals
from .model import ScanInfo
from .open_scan import OpenScan, read_stream_file, read_stream_files
from .security import CurveConfig
from .spool import SPOOL_NAME, SpoolStore, read_spool

log = logging.getLogger("mrsqc.daemon")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # ZMQ_MAXMSGSIZE on ingest: a bad peer cannot exhaust memory
INGEST_QUEUE = 32  # ZMQ_RCVHWM on ingest (messages)
BURST = 64  # transients handled before their bookkeeping, fsync and acknowledgement are done at the latest
SETTLE_MS = 2  # idle time after published results before the bookkeeping starts (serve())


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


DEFAULT_SPOOL_BUDGET_BYTES = 20 * 10 ** 9  # all spools together; ~140 finished 140 MB scans
DEFAULT_SPOOL_RETENTION_S = 7 * 86400.0  # spools of finished scans are deleted after a week
MAX_CLOSED_STREAMS = 64  # closed streams remembered, so a producer asking again learns its scan is closed


class _Reject(protocol.ProtocolError):
    """A message refused because of its place in the stream; ``expected``: the position the daemon needs."""

    def __init__(self, reason: str, detail: str, expected: int | None = None):
        super().__init__(reason, detail)
        self.expected = expected


class Daemon:
    """Bind with :meth:`bind`, run :meth:`serve` until ``stop`` is set (another thread or a signal handler)."""

    def __init__(self, endpoints: Endpoints | None = None, data_dir: Path | None = None,
                 config: Config | None = None, key: bytes | None = None, heartbeat_s: float = 1.0,
                 fsync: bool = True, allow_remote: bool = False, context: zmq.Context | None = None,
                 producer_timeout_s: float = 60.0, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 curve: CurveConfig | None = None, spool_budget_bytes: int = DEFAULT_SPOOL_BUDGET_BYTES,
                 spool_retention_s: float = DEFAULT_SPOOL_RETENTION_S):
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
        self.store = SpoolStore(self.data_dir, spool_budget_bytes, spool_retention_s)
        self.rejected: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.stamper = feed.Stamper()  # the feed's numbering: one for the daemon's life (a new daemon_id restarts it)
        self.snapshot: list[dict] = []  # feed messages of the current (or last) scan, but progress
        self.snapshot_progress: dict | None = None  # the latest progress message only: it replaces the previous
        self.open: OpenScan | None = None
        self.closed: OrderedDict[str, dict] = OrderedDict()  # stream id -> outcome (stream.json)
        self.error_state: str | None = None
        self.bound: Endpoints | None = None
        self.handle_ms: deque[float] = deque(maxlen=1000)  # receive -> results published, per transient
        self.daemon_id = uuid.uuid4().hex  # changes on restart: a viewer re-syncs when it sees a new one
        self._acks: dict[bytes, tuple[str, int]] = {}  # producer identity -> (stream, last seq) this burst

    # ------------------------------------------------------------------ set-up
    def bind(self) -> Endpoints:
        """Create and bind the sockets; returns the actual endpoints (ports resolved for ``:*``)."""
        self.ingest = self.ctx.socket(zmq.ROUTER)
        self.ingest.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        # a short queue per producer: a producer faster than the QC is held back (by its window of
        # unacknowledged transients, and by TCP behind it) instead of piling up seconds of backlog here
        self.ingest.setsockopt(zmq.RCVHWM, INGEST_QUEUE)
        self.ingest.setsockopt(zmq.LINGER, 0)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.serve(self.ctx, (self.ingest, self.pub, self.router))
        bound = []
        for sock, ep in ((self.ingest, self.endpoints.ingest), (self.pub, self.endpoints.feed),
                         (self.router, self.endpoints.snapshot)):
            sock.bind(ep)
            bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        self.bound = Endpoints(*bound)
        return self.bound

    def warm_up(self) -> float:
        """Compile/load every kernel, then resume the scan a stopped daemon left open (from its spool) and
        close any other it left open; returns seconds."""
        t0 = time.perf_counter()
        kernels.warm_up()
        ScanQC.warm_up(self.config)
        self._recover()
        gc.collect()
        gc.freeze()  # start-up objects leave the collector's generations: shorter pauses while serving
        return time.perf_counter() - t0

    def close(self) -> None:
        """Stop: an open scan stays open on disk (spool and journal synced), so that a restarted daemon
        resumes it when its producer comes back (and closes it as interrupted when it does not)."""
        if self.open is not None:
            self.open.sync()
            log.info("scan %s left open for resumption (%d transients spooled)", self.open.scan.scan_id,
                     self.open.durable)
        for s in (self.ingest, self.pub, self.router):
            s.close(0)
        if self.curve is not None:
            self.curve.stop()

    # ------------------------------------------------------------------ loop
    def serve(self, stop: threading.Event) -> None:
        poller = zmq.Poller()
        poller.register(self.ingest, zmq.POLLIN)
        poller.register(self.router, zmq.POLLIN)
        next_beat = time.monotonic()
        while not stop.is_set():
            timeout_ms = max(0, int((next_beat - time.monotonic()) * 1000))
            events = dict(poller.poll(min(timeout_ms, 200)))
            if self.ingest in events:
                handled = 0
                while handled < BURST:  # drain a burst, then make it durable and acknowledge it at once
                    try:
                        frames = self.ingest.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        # the results are published: give them SETTLE_MS to leave (on a 2-core host the
                        # bookkeeping that follows delayed them by up to 3 ms), taking a transient that
                        # arrives meanwhile first
                        if handled and self.ingest.poll(SETTLE_MS, zmq.POLLIN):
                            continue
                        break
                    t0 = time.perf_counter()
                    self.handle(frames[0].bytes, frames[1:])
                    self.handle_ms.append((time.perf_counter() - t0) * 1e3)
                    handled += 1
                self.commit()
            if self.router in events:
                self._serve_snapshot()
            if time.monotonic() >= next_beat:
                self._heartbeat()
                self._check_producer()
                next_beat = time.monotonic() + self.heartbeat_s

    def handle(self, identity: bytes, frames: list) -> None:
        """Validate and act on one ingest message from the producer ``identity``; never raises. Bad input is
        rejected (counted, logged, answered with its reason); an internal error is logged with its traceback,
        reported on the feed and answered, and the transient stays in the spool."""
        msg = None
        try:
            msg = protocol.decode(frames, self.key)
            self.stream.check_seq(msg)
            self._dispatch(identity, msg)
            self.counters[msg.kind] += 1
        except protocol.ProtocolError as exc:
            self.rejected[exc.reason] += 1
            # a gap is what a resumed stream shows until the producer has rewound: expected, not alarming
            log.log(logging.INFO if exc.reason == "gap" else logging.WARNING, "rejected message: %s", exc)
            self._reply_reject(identity, msg, exc.reason, str(exc), getattr(exc, "expected", None))
        except Exception as exc:  # a bug, not bad input: keep serving, say so loudly
            self.rejected["internal_error"] += 1
            log.exception("internal error handling a %s message", msg.kind if msg else "?")
            self._error_state(f"internal error: {type(exc).__name__}: {exc}")
            self._reply_reject(identity, msg, "internal_error", f"{type(exc).__name__}: {exc}")
        finally:
            if self.open is not None:
                for text in self.open.take_errors():
                    self._error_state(text)

    def commit(self) -> None:
        """Once per burst: the open scan's bookkeeping (spool and journal records, live progress), fsync of
        its spool and journal, then the acknowledgement of every producer heard."""
        if self.open is not None:
            self.open.settle(self._publisher(self.open))
            self.open.sync()
            for text in self.open.take_errors():
                self._error_state(text)
        acks, self._acks = self._acks, {}
        for identity, (stream, seq) in acks.items():
            self._send_reply(identity, self._ack(stream, seq))

    # ------------------------------------------------------------------ messages
    def _dispatch(self, identity: bytes, msg: protocol.Message) -> None:
        h = msg.header
        stream = h.get("stream", "")
        self._acks[identity] = (stream, h["seq"])
        scan = self.open if self.open is not None and stream and self.open.stream == stream else None
        if msg.kind == "heartbeat":
            self._acks[identity] = ("", h["seq"])
        elif msg.kind == "scan_start":
            if scan is not None:  # the producer asks where we are (after a restart or a lost message)
                scan.touch()
            elif stream not in self.closed:
                self._start_scan(ScanInfo.from_dict(h["scan"]), stream)
        elif stream in self.closed and scan is None:
            return  # a late message of a closed stream: its ack says closed
        elif scan is None:
            self._acks.pop(identity, None)
            raise _Reject("no_scan", f"{msg.kind} for a scan this daemon has not open (stream {stream[:8]!r})", 0)
        elif msg.kind == "transient":
            self._transient(scan, msg)
        elif msg.kind == "scan_end":
            if h["n_transients"] > scan.positions:
                raise _Reject("gap", f"scan_end after {h['n_transients']} transients; this daemon has "
                                     f"{scan.positions}", scan.positions)
            self._end_scan(h.get("status", "complete"))

    def _transient(self, scan: OpenScan, msg: protocol.Message) -> None:
        pos = msg.header["pos"]
        if pos < scan.positions:
            self.counters["duplicate"] += 1
            scan.touch()
            return
        if pos > scan.positions:
            raise _Reject("gap", f"transient position {pos}; expected {scan.positions}", scan.positions)
        try:
            transient = protocol.to_transient(msg, scan.scan)
        except protocol.ProtocolError as exc:
            scan.skip(pos, exc.reason)  # the position is used up: the stream goes on after it
            raise
        scan.take(pos, transient, self._publisher(scan))

    def _ack(self, stream: str, seq: int) -> list[bytes]:
        scan = self.open
        if scan is not None and stream and scan.stream == stream:
            return protocol.ack(scan.scan.scan_id, seq, scan.positions, scan.durable, self.daemon_id,
                                error=self.error_state, key=self.key, stream=stream)
        done = self.closed.get(stream)
        if stream and done is not None:
            return protocol.ack(done["scan_id"], seq, done["positions"], done["durable"], self.daemon_id,
                                closed=True, error=self.error_state, verdict=done.get("verdict"), key=self.key,
                                stream=stream)
        return protocol.ack("", seq, 0, 0, self.daemon_id, error=self.error_state, key=self.key)

    def _reply_reject(self, identity: bytes, msg: protocol.Message | None, reason: str, detail: str,
                      expected: int | None = None) -> None:
        h = msg.header if msg is not None else {}
        seq = h.get("seq", 0) if isinstance(h.get("seq"), int) else 0
        self._send_reply(identity, protocol.reject(str(h.get("scan_id", ""))[:64], seq, reason, detail,
                                                   self.daemon_id, expected, key=self.key,
                                                   stream=str(h.get("stream", ""))[:64]))

    def _send_reply(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            self.ingest.send_multipart([identity] + frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the producer has gone (or its queue is full): it asks again when it is back

    # ------------------------------------------------------------------ scans
    def _start_scan(self, scan: ScanInfo, stream: str) -> None:
        if self.open is not None:
            self._end_scan("incomplete")
        self.store.tidy()
        self.snapshot, self.snapshot_progress = [], None
        self.open, messages = OpenScan.begin(self.data_dir, scan, stream, self.config, self.fsync, self.store)
        self._publish_all(scan.scan_id, messages)
        log.info("scan %s started: %s, %d coils x %d points", scan.scan_id, scan.sequence, scan.n_coils,
                 scan.n_points)

    def _end_scan(self, status: str) -> None:
        scan, self.open = self.open, None
        if scan is None:
            return
        summary = scan.finish(status, self._publisher(scan))
        for text in scan.take_errors():
            self._error_state(text)
        self._remember(scan.stream, {"stream": scan.stream, "scan_id": scan.scan.scan_id,
                                     "positions": scan.positions, "durable": scan.durable, "status": status,
                                     "verdict": summary.verdict})
        log.info("scan %s %s: %d transients, verdict %s", scan.scan.scan_id, status, summary.n_transients,
                 summary.verdict)

    def _remember(self, stream: str, outcome: dict) -> None:
        if not stream:
            return
        self.closed[stream] = outcome
        while len(self.closed) > MAX_CLOSED_STREAMS:
            self.closed.popitem(last=False)

    def _check_producer(self) -> None:
        """Close the open scan when its producer has been silent for producer_timeout_s: ``incomplete``, or
        ``interrupted`` when the daemon resumed it after a stop and the producer never came back."""
        if self.open is None or self.producer_timeout_s <= 0:
            return
        silent = time.monotonic() - self.open.last_message_at
        if silent > self.producer_timeout_s:
            scan_id = self.open.scan.scan_id
            status = "interrupted" if self.open.resumed and not self.open.producer_back else "incomplete"
            self._status("warn", f"producer silent for {silent:.0f} s: scan {scan_id} closed as {status}")
            log.warning("producer silent for %.0f s: closing scan %s as %s", silent, scan_id, status)
            self._end_scan(status)

    def _recover(self) -> None:
        """Scans a stopped daemon left open. The newest one with a readable spool is resumed (the engine re-run
        over its spool) and waits for its producer; the others, and one whose end was already decided
        (stream.json), are re-run and closed; one without a usable spool is closed from its journal alone."""
        resumable = []
        for folder in self._open_folders():
            spooled = None
            if (folder / SPOOL_NAME).exists():
                try:
                    spooled = read_spool(folder / SPOOL_NAME)
                except (OSError, ValueError) as exc:
                    log.error("spool of %s unreadable: %s", folder.name, exc)
            if spooled is not None:
                resumable.append(spooled)
                continue
            try:
                close_from_journal(folder)
            except OSError as exc:
                log.error("cannot close %s: %s", folder.name, exc)
                continue
            self._status("warn", f"closed interrupted scan {folder.name} found at start-up (no spool)")
        for rec in read_stream_files(self.data_dir):
            self._remember(rec["stream"], rec)
        for k, spooled in enumerate(resumable):
            folder = spooled.path.parent
            decided = read_stream_file(folder)
            try:
                scan, messages = OpenScan.resume(spooled, self.config, self.fsync, self.store)
            except Exception:  # a spool the engine cannot re-run: keep the daemon up, close from the journal
                log.exception("cannot resume %s from its spool", folder.name)
                if (folder / "journal.jsonl").exists():
                    close_from_journal(folder)
                continue
            self.snapshot, self.snapshot_progress = [], None
            self.open = scan
            self._publish_all(scan.scan.scan_id, messages)
            if k == len(resumable) - 1 and decided is None and spooled.end_status is None:
                self._status("warn", f"resumed scan {folder.name} from its spool: {scan.positions} transients; "
                                     "waiting for its producer")
                log.warning("resumed scan %s from its spool (%d transients)", folder.name, scan.positions)
            else:
                status = (decided or {}).get("status") or spooled.end_status or "interrupted"
                self._end_scan(status)
                self._status("warn", f"closed scan {folder.name} ({status}) found open at start-up")
            for text in scan.take_errors():
                self._error_state(text)

    def _open_folders(self) -> list[Path]:
        """Scan folders without a summary: an open journal, or a spool whose journal was never written."""
        folders = set(open_journals(self.data_dir))
        if self.data_dir.is_dir():
            for spool in self.data_dir.glob(f"*/{SPOOL_NAME}"):
                f = spool.parent
                if not (f / "journal.jsonl").exists() and not (f / "summary.json").exists():
                    folders.add(f)
        return sorted(folders, key=lambda f: max((p.stat().st_mtime for p in f.iterdir()), default=0.0))

    def _error_state(self, text: str) -> None:
        self.error_state = text
        self._status("error", text)
        log.error("%s (QC continues)", text)

    # ------------------------------------------------------------------ feed
    def _publisher(self, scan: OpenScan):
        """The publish callback of one open scan: its messages go out on its topic (its scan id)."""
        return lambda messages: self._publish_all(scan.scan.scan_id, messages)

    def _publish_all(self, scan_id: str, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            self._publish(scan_id, m)

    @property
    def feed_seq(self) -> int:
        """The last feed_seq published."""
        return self.stamper.feed_seq

    def _publish(self, scan_id: str, message: dict[str, Any]) -> None:
        message = self.stamper.stamp(scan_id, message)
        if message["type"] == feed.PROGRESS:
            self.snapshot_progress = message
        else:
            self.snapshot.append(message)
        self.pub.send_multipart(feed.encode(message))

    def _status(self, state: str, detail: str) -> None:
        self.pub.send_multipart(feed.encode(feed.status(state, detail, self.feed_seq)))

    def _heartbeat(self) -> None:
        scan = self.open
        beat = feed.heartbeat(
            time=time.time(), feed_seq=self.feed_seq, daemon_id=self.daemon_id,
            scan_id=scan.scan.scan_id if scan else None, error=self.error_state, received=dict(self.counters),
            rejected=dict(self.rejected), seq_gaps=self.stream.gaps, handle_ms=_percentiles(self.handle_ms),
            spool={"used_mb": round(self.store.used / 1e6, 1),
                   "budget_mb": round(self.store.budget_bytes / 1e6, 1) or None,
                   "durable": scan.durable if scan else None, "positions": scan.positions if scan else None})
        self.pub.send_multipart(feed.encode(beat))

    def _serve_snapshot(self) -> None:
        try:
            frames = self.router.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        identity = frames[0]
        if len(frames) < 2 or frames[-1] != feed.SNAPSHOT_REQUEST:
            self.rejected["bad_snapshot_request"] += 1
            return
        messages = self.snapshot if self.snapshot_progress is None else self.snapshot + [self.snapshot_progress]
        self.router.send_multipart([identity, feed.snapshot_reply(self.feed_seq, self.daemon_id, messages)])
