r"""The live QC daemon: it wires sources to the per-scan session and the session to its sinks, and loops.

    sources                          session (one per scan)                   sinks (sinks.py)
    ZeroMQ ingest (ingest.py)  --->  OpenScan: LiveScan -> engine  ------->  FeedSink: [feed PUB] + snapshot
      validated transients,            (open_scan.py)            \------->  SpoolSink: spool.mrsqc (fsync)
      delivery rules, acks    <--- durable positions              \------>  JournalSink: journal.jsonl (fsync)
                                                                    \----->  OutputsSink: transients.jsonl,
                                                                               summary.json; NIfTI-MRS and
                                                                               report.html off the loop
                                                                               (output_writer.py)

The daemon owns the sockets and the loop (a burst of ingest messages, then one settle + fsync of the open scan
and one acknowledgement per producer), the scan desk sources call (start_scan / end_scan: one open scan, the
closed streams remembered), the producer time-out, start-up recovery (a scan left open is resumed from its
spool), its error state and the heartbeat (health.py). Each sink owns its failure policy; the results are
held once, by the engine. Feed messages, the snapshot for late joiners (zguide "Clone") and their validation:
qc_daemon/feed.py and docs/protocol.md.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import zmq

from . import feed, kernels
from .config import Config, load_config
from .engine import ScanQC
from .health import Health
from .ingest import ZmqIngest
from .journal import close_from_journal, default_data_dir, open_journals
from .model import ScanInfo
from .open_scan import OpenScan, read_stream_file, read_stream_files
from .output_writer import OutputWriter
from .security import CurveConfig
from .sinks import FeedSink
from .spool import SPOOL_NAME, SpoolStore, read_spool

log = logging.getLogger("mrsqc.daemon")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # ZMQ_MAXMSGSIZE on ingest: a bad peer cannot exhaust memory
INGEST_QUEUE = 32  # ZMQ_RCVHWM on ingest (messages)
BURST = 64  # transients handled before their bookkeeping, fsync and acknowledgement are done at the latest
SETTLE_MS = 2  # idle time after published results before the bookkeeping starts (serve())


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



BIND_RETRY_S = 2.0  # s: how long a port still held by a just-closed socket is waited for


def _bind_retrying(sock: zmq.Socket, endpoint: str, retry_s: float) -> None:
    """``sock.bind(endpoint)``, retried while the address is in use, for at most ``retry_s`` seconds."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            sock.bind(endpoint)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)

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
        self.store = SpoolStore(self.data_dir, spool_budget_bytes, spool_retention_s)
        self.health = Health()
        self.rejected, self.counters = self.health.rejected, self.health.received
        self.stamper = feed.Stamper()  # the feed's numbering: one for the daemon's life (a new daemon_id restarts it)
        self.scan_feed: FeedSink | None = None  # the current (or last) scan on the feed: its snapshot
        self.open: OpenScan | None = None
        self.closed: OrderedDict[str, dict] = OrderedDict()  # stream id -> outcome (stream.json)
        self.error_state: str | None = None
        self.bound: Endpoints | None = None
        self.daemon_id = uuid.uuid4().hex  # changes on restart: a viewer re-syncs when it sees a new one
        self.outputs = OutputWriter()  # each scan's NIfTI-MRS and report.html, off the loop

    # ------------------------------------------------------------------ set-up
    def bind(self, retry_s: float = BIND_RETRY_S) -> Endpoints:
        """Create and bind the sockets; returns the actual endpoints (ports resolved for ``:*``).

        An address still in use is retried for ``retry_s`` seconds: ZeroMQ releases a closed socket's port
        asynchronously, so a daemon restarted in the same process (or right after its predecessor) may find
        its port held for a moment. On failure every socket created here is closed again."""
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
        try:
            for sock, ep in ((self.ingest, self.endpoints.ingest), (self.pub, self.endpoints.feed),
                             (self.router, self.endpoints.snapshot)):
                _bind_retrying(sock, ep, retry_s)
                bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        except Exception:
            for sock in (self.ingest, self.pub, self.router):
                sock.close(0)
            if self.curve is not None:
                self.curve.stop()
            raise
        self.bound = Endpoints(*bound)
        self.source = ZmqIngest(self, self.ingest, self.key, self.health, self.daemon_id)
        return self.bound

    def warm_up(self) -> float:
        """Compile/load every kernel, then resume the scan a stopped daemon left open (from its spool) and
        close any other it left open; returns seconds."""
        t0 = time.perf_counter()
        kernels.warm_up()
        ScanQC.warm_up(self.config)
        from .html_report import warm_up as warm_up_reports

        warm_up_reports()
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
        self.outputs.close()
        for text in self.outputs.take_errors():
            log.error("%s", text)
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
                    self.health.handled((time.perf_counter() - t0) * 1e3)
                    handled += 1
                self.commit()
            if self.router in events:
                self._serve_snapshot()
            if time.monotonic() >= next_beat:
                for text in self.outputs.take_errors():
                    self._error_state(text)
                self._heartbeat()
                self._check_producer()
                next_beat = time.monotonic() + self.heartbeat_s

    def handle(self, identity: bytes, frames: list) -> None:
        """One ingest message (ingest.ZmqIngest: validation, delivery rules, answers); never raises."""
        try:
            self.source.handle(identity, frames)
        finally:
            self._take_scan_errors()

    def commit(self) -> None:
        """Once per burst: the open scan's bookkeeping (spool and journal records, live progress), fsync of
        its spool and journal, then the acknowledgement of every producer heard."""
        if self.open is not None:
            try:
                self.open.settle()
            except Exception as exc:  # a bug: the loop, the fsync and the acknowledgements go on
                log.exception("bookkeeping of scan %s failed", self.open.scan.scan_id)
                self._error_state(f"internal error: {type(exc).__name__}: {exc}")
            self.open.sync()
            self._take_scan_errors()
        self.source.acknowledge()

    # ------------------------------------------------------------------ the scan desk (what sources call)
    def start_scan(self, scan: ScanInfo, stream: str) -> None:
        """Open a scan for a producer stream (the open one, if any, ends as incomplete)."""
        if self.open is not None:
            self.end_scan("incomplete")
        self.store.tidy()
        self.open = OpenScan.begin(self.data_dir, scan, stream, self.config, self.fsync, self.store,
                                   self._feed_sink(scan.scan_id), self.outputs)
        log.info("scan %s started: %s, %d coils x %d points", scan.scan_id, scan.sequence, scan.n_coils,
                 scan.n_points)

    def end_scan(self, status: str, notes: tuple[str, ...] = ()) -> None:
        """Close the open scan with ``status`` (complete | incomplete | interrupted); ``notes``: the
        producer's, for the summary."""
        scan, self.open = self.open, None
        if scan is None:
            return
        summary = scan.finish(status, notes)
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
            self.end_scan(status)

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
                scan = OpenScan.resume(spooled, self.config, self.fsync, self.store,
                                       self._feed_sink(spooled.scan.scan_id), self.outputs)
            except Exception:  # a spool the engine cannot re-run: keep the daemon up, close from the journal
                log.exception("cannot resume %s from its spool", folder.name)
                if (folder / "journal.jsonl").exists():
                    close_from_journal(folder)
                continue
            self.open = scan
            if k == len(resumable) - 1 and decided is None and spooled.end_status is None:
                self._status("warn", f"resumed scan {folder.name} from its spool: {scan.positions} transients; "
                                     "waiting for its producer")
                log.warning("resumed scan %s from its spool (%d transients)", folder.name, scan.positions)
            else:
                status = (decided or {}).get("status") or spooled.end_status or "interrupted"
                self.end_scan(status)
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

    def report(self, text: str) -> None:
        """An error QC goes on after (a sink that cannot write, an internal error): the daemon's error state,
        on the feed and in the log."""
        self._error_state(text)

    def _take_scan_errors(self) -> None:
        if self.open is not None:
            for text in self.open.take_errors():
                self._error_state(text)

    def _error_state(self, text: str) -> None:
        self.error_state = text
        self._status("error", text)
        log.error("%s (QC continues)", text)

    # ------------------------------------------------------------------ feed
    def _feed_sink(self, scan_id: str) -> FeedSink:
        """A new scan's place on the feed (its messages go out on its topic); it answers the snapshot."""
        self.scan_feed = FeedSink(self.stamper, scan_id, self.pub.send_multipart)
        return self.scan_feed

    @property
    def feed_seq(self) -> int:
        """The last feed_seq published."""
        return self.stamper.feed_seq

    def _status(self, state: str, detail: str) -> None:
        self.pub.send_multipart(feed.encode(feed.status(state, detail, self.feed_seq)))

    def _heartbeat(self) -> None:
        beat = self.health.heartbeat(self.feed_seq, self.daemon_id, self.open, self.error_state,
                                     self.source.stream.gaps, self.store)
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
        messages = self.scan_feed.snapshot() if self.scan_feed is not None else []
        self.router.send_multipart([identity, feed.snapshot_reply(self.feed_seq, self.daemon_id, messages)])
