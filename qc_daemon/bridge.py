r"""``mrsqc mrd-server``: the scanner bridge. A scanner (Siemens FIRE's IceFire, or the reference client)
connects over TCP and streams MRD; each transient goes to the QC daemon the moment it arrives, and the verdict
comes back to the scanner's console as TEXT lines (verdict_text.py). docs/scanner.md.

    scanner --MRD/TCP--> reader thread --bounded queue--> forwarder thread --ZeroMQ--> daemon (ingest)
                         (mrd_wire: frames;               (client.Producer: acknowledged,      |
                          sources.mrd: header, counters,   resumable delivery)                  | feed
                          StreamClassifier: kinds)        <-- FeedClient: live summaries <------+
            <--TEXT/CLOSE-- forwarder thread (VerdictTexts: one line per verdict change, rate-limited)

Per connection two threads: the reader never waits for the daemon (the scanner's stream is never stalled: a
transient that does not fit the queue's byte budget is dropped and counted, and the count goes to the console
and the scan's end status); the forwarder owns the ZeroMQ sockets and the writes to the scanner. A framing
error (mrd_wire.WireError), data before the header, a connection that ends without CLOSE or is silent for
``idle_timeout_s``: the open scan is closed as incomplete (with its summary), an ERR line goes back where the
socket still takes it, and the server goes on with the next connection. Patient fields in the MRD header are
never read, logged or passed on.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from . import mrd_wire
from .client import DeliveryError, FeedClient, Producer
from .errors import InputError
from .model import ScanInfo, Transient
from .security import ClientCurve
from .sources.classify import StreamClassifier
from .sources.mrd import MrdHeader, is_data, parse_header, scan_from_header, transient_from_acquisition
from .verdict_text import VerdictTexts

log = logging.getLogger("mrsqc.bridge")

DEFAULT_PORT = 9002  # FIRE's default


@dataclass
class BridgeSettings:
    """``buffer_bytes``: transients held between the scanner and the daemon at most (beyond: dropped, counted);
    ``text_interval_s``: at most one live TEXT line per this many seconds; ``idle_timeout_s``: a connection
    silent this long mid-scan is closed as incomplete; ``daemon_timeout_s``: the daemon may be silent this long
    (a restart) before the bridge stops passing transients on; ``summary_wait_s``: how long to wait for the
    final summary on the feed."""

    ingest: str = "tcp://127.0.0.1:5555"
    feed: str = "tcp://127.0.0.1:5556"
    snapshot: str = "tcp://127.0.0.1:5557"
    key: bytes | None = None
    curve: ClientCurve | None = None  # for a CURVE daemon: this client's secret key and the daemon's public key
    buffer_bytes: int = 1 << 30
    text_interval_s: float = 5.0
    idle_timeout_s: float = 120.0
    daemon_timeout_s: float = 30.0
    summary_wait_s: float = 10.0


@dataclass
class ConnectionReport:
    """What one connection did (logged at its end; returned for tests): acquisitions read, transients passed
    on, dropped (buffer full), skipped (noise/navigator/...), the status the scan ended with, the lines sent."""

    peer: str
    scan_id: str | None = None
    acquisitions: int = 0
    transients: int = 0
    dropped: int = 0
    skipped: int = 0
    refused: int = 0
    status: str | None = None
    problem: str | None = None
    verdict: str | None = None
    lines: list[str] = field(default_factory=list)


class _Gone(Exception):
    """The connection is over (closed, reset, or silent too long) or the server is stopping."""


# ---------------------------------------------------------------------------------------------- reading side
class _Reader:
    """The reader thread's work: socket -> messages -> transients on the queue; never waits for the daemon."""

    def __init__(self, sock: socket.socket, out: queue.Queue, settings: BridgeSettings, report: ConnectionReport,
                 stop: threading.Event):
        self.sock, self.out, self.settings, self.report, self.stop = sock, out, settings, report, stop
        self.header: MrdHeader | None = None
        self.header_hash = b""
        self.scan: ScanInfo | None = None
        self.classifier: StreamClassifier | None = None
        self.t0 = 0
        self.buffered = 0  # bytes of transients on the queue (the forwarder subtracts what it takes)
        self.lock = threading.Lock()
        self._warned_early = False

    def read_exactly(self, n: int) -> bytes | memoryview:
        """``n`` bytes (fewer only when the scanner closed the connection), read into one buffer."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        last = time.monotonic()
        while got < n:
            if self.stop.is_set():
                raise _Gone("the server is stopping")
            try:
                k = self.sock.recv_into(view[got:])
            except TimeoutError:
                if time.monotonic() - last > self.settings.idle_timeout_s:
                    raise _Gone(f"the scanner was silent for {self.settings.idle_timeout_s:g} s") from None
                continue
            except OSError as exc:
                raise _Gone(f"the connection failed ({exc.strerror or type(exc).__name__})") from None
            if not k:
                return bytes(view[:got])
            got += k
            last = time.monotonic()
        return buf

    def run(self) -> None:
        try:
            self._run()
        except mrd_wire.WireError as exc:
            log.error("MRD stream from %s unreadable: %s", self.report.peer, exc)
            self.out.put(("end", "incomplete", f"unreadable MRD stream ({exc.detail}); QC stopped"))
        except _Gone as exc:
            self.out.put(("end", "incomplete", f"{exc}: scan closed as incomplete"))
        except Exception as exc:  # a bug: the scan is closed and the server goes on
            log.exception("MRD reader for %s failed", self.report.peer)
            self.out.put(("end", "incomplete", f"internal error ({type(exc).__name__}); QC stopped"))

    def _run(self) -> None:
        while True:
            msg = mrd_wire.read_message(self.read_exactly)
            if msg is None:
                self.out.put(("end", "incomplete", "the scanner closed the connection without CLOSE: scan "
                                                   "closed as incomplete"))
                return
            if msg.id == mrd_wire.CLOSE:
                self.out.put(("end", "complete", None))
                return
            if msg.id == mrd_wire.HEADER:
                self._header(msg.value)
            elif msg.id == mrd_wire.ACQUISITION:
                self.report.acquisitions += 1
                self._acquisition(msg.value)
            elif msg.id in (mrd_wire.CONFIG_FILE, mrd_wire.CONFIG_TEXT, mrd_wire.TEXT):
                log.info("%s from %s (%d bytes)", msg.kind, self.report.peer, msg.nbytes)  # never its content
            else:
                log.debug("%s from %s skipped (%d bytes)", msg.kind, self.report.peer, msg.nbytes)

    def _header(self, xml: str) -> None:
        try:
            self.header = parse_header(xml, "MRD header")
        except InputError as exc:
            self.header = None
            self.out.put(("text", f"ERR mrsqc: {exc.reason}: QC off for this scan", None))
            log.error("MRD header from %s: %s", self.report.peer, exc)
            return
        self.header_hash = hashlib.sha256(xml.encode()).digest()

    def _acquisition(self, acq) -> None:
        if not is_data(acq):
            self.report.skipped += 1
            return
        if self.header is None:
            self.report.refused += 1
            if not self._warned_early:
                self._warned_early = True
                log.error("acquisition from %s before a valid MRD header: not checked", self.report.peer)
                self.out.put(("text", "ERR mrsqc: data arrived before a valid MRD header: not checked", None))
            return
        if self.scan is None:
            digest = hashlib.sha256(self.header_hash + bytes(acq.getHead())).hexdigest()[:16]
            try:
                self.scan = scan_from_header(self.header, acq, "MRD stream", digest)
            except InputError as exc:
                self.header = None  # nothing of this scan can be checked
                self.out.put(("text", f"ERR mrsqc: {exc.reason}: QC off for this scan", None))
                return
            self.t0 = int(acq.acquisition_time_stamp)
            s = self.scan
            self.classifier = StreamClassifier(s.dwell_s, s.f0_mhz, s.oversampling, s.centre_ppm)
            self.out.put(("start", s, None))
        t = transient_from_acquisition(acq, self.report.transients + self.report.dropped, self.t0, self.header)
        expected = (self.scan.n_coils, self.scan.samples_per_transient)
        if t.data.shape != expected:
            self.report.refused += 1
            log.warning("acquisition %d from %s has %s samples, the scan %s: not checked", t.index,
                        self.report.peer, t.data.shape, expected)
            return
        t.kind = self.classifier.add(t.data)
        with self.lock:
            if self.buffered + t.data.nbytes > self.settings.buffer_bytes:
                self.report.dropped += 1
                return
            self.buffered += t.data.nbytes
        self.report.transients += 1
        self.out.put(("transient", t, None))


# ---------------------------------------------------------------------------------------------- the connection
class MrdConnection:
    """One scanner connection: call :meth:`run` (returns when the connection is over)."""

    def __init__(self, sock: socket.socket, peer: str, settings: BridgeSettings, context: zmq.Context,
                 stop: threading.Event):
        self.sock = sock
        self.settings = settings
        self.ctx = context
        self.stop = stop
        self.report = ConnectionReport(peer)
        self.texts = VerdictTexts(settings.text_interval_s)
        self.q: queue.Queue = queue.Queue()
        self._write_ok = True
        self._summary: dict[str, Any] | None = None
        self._producer: Producer | None = None  # the forwarder's sockets, closed by run() whatever happens
        self._feed_client: FeedClient | None = None

    # -- to the scanner
    def send_line(self, line: str) -> None:
        self.report.lines.append(line)
        log.info("to %s: %s", self.report.peer, line)
        self._write(mrd_wire.encode_text(line))

    def _write(self, data: bytes) -> None:
        if not self._write_ok:
            return
        try:
            self.sock.sendall(data)
        except OSError as exc:  # the scanner stopped reading, or is gone: the QC goes on without the console
            self._write_ok = False
            log.warning("cannot write to %s (%s): no more lines to its console", self.report.peer,
                        exc.strerror or type(exc).__name__)

    # -- the loop
    def run(self) -> ConnectionReport:
        self.sock.settimeout(0.5)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        reader = _Reader(self.sock, self.q, self.settings, self.report, self.stop)
        thread = threading.Thread(target=reader.run, name=f"mrd-reader {self.report.peer}", daemon=True)
        thread.start()
        try:
            self._forward(reader)
        finally:
            self._write(mrd_wire.encode_close())
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            thread.join(5)
            for closable in (self._producer, self._feed_client):  # also when the forwarder failed (a bug)
                if closable is not None:
                    closable.close()
        r = self.report
        log.info("connection %s over: scan %s, %d acquisitions, %d transients passed on, %d dropped, %d skipped, "
                 "%d refused, status %s, verdict %s", r.peer, r.scan_id, r.acquisitions, r.transients, r.dropped,
                 r.skipped, r.refused, r.status, r.verdict)
        return r

    def _forward(self, reader: _Reader) -> None:
        producer = feed = None
        scan: ScanInfo | None = None
        dead: str | None = None  # why the daemon no longer gets transients
        while True:
            try:
                kind, item, detail = self.q.get(timeout=0.05)
            except queue.Empty:
                self._feed(feed, scan)
                continue
            if kind == "text":
                self.send_line(item)
            elif kind == "start":
                scan = item
                self.report.scan_id = scan.scan_id
                feed = self._feed_client = self._subscribe()
                producer = self._producer = Producer(self.settings.ingest, key=self.settings.key, context=self.ctx,
                                                     timeout_s=self.settings.daemon_timeout_s, linger_ms=0,
                                                     curve=self.settings.curve)
                try:
                    producer.start_scan(scan)
                except DeliveryError as exc:
                    dead = str(exc)
                self.send_line(self.texts.started(scan))
            elif kind == "transient":
                t: Transient = item
                with reader.lock:
                    reader.buffered -= t.data.nbytes
                if producer is not None and dead is None:
                    try:
                        producer.send(t)
                    except DeliveryError as exc:
                        dead = str(exc)
                        log.error("scan %s: %s", scan.scan_id if scan else "?", exc)
                        self.send_line("ERR mrsqc: the QC daemon is not answering: QC stopped for this scan")
            elif kind == "end":
                self._end(producer, feed, scan, item, detail, dead, self._end_notes(reader))
                return
            self._feed(feed, scan)

    def _subscribe(self) -> FeedClient | None:
        """A feed subscription that is live (first heartbeat seen) before the scan starts, so no result of the
        scan is missed; None when the feed does not answer (the scan is still checked, only no live lines)."""
        feed = FeedClient(self.settings.feed, self.settings.snapshot, context=self.ctx, curve=self.settings.curve)
        try:
            feed.sync(timeout_s=3.0)
        except TimeoutError as exc:
            log.warning("feed %s: %s: no live lines to the console", self.settings.feed, exc)
        return feed

    def _feed(self, feed: FeedClient | None, scan: ScanInfo | None) -> None:
        if feed is None or scan is None:
            return
        for m in feed.poll(0):
            if m.get("scan_id") != scan.scan_id:
                continue
            if m["type"] == "progress":
                for line in self.texts.progress(m["summary"]):
                    self.send_line(line)
            elif m["type"] == "summary":
                self._summary = m["summary"]
        for line in self.texts.due():
            self.send_line(line)

    def _end_notes(self, reader: _Reader) -> tuple[str, ...]:
        """For the summary (scan_end notes): the kinds found, as a file reader says it, and what the bridge
        could not pass on. The reader thread has put its last item: its classifier no longer changes."""
        r = self.report
        notes = [reader.classifier.note()] if reader.classifier is not None else []
        if r.dropped:
            notes.append(f"MRD bridge: {r.dropped} of {r.transients + r.dropped} transients not passed on (its "
                         "buffer was full); they are in the scanner's raw data")
        if r.refused:
            notes.append(f"MRD bridge: {r.refused} acquisition(s) refused (the server's log says why)")
        return tuple(n for n in notes if n)

    def _end(self, producer: Producer | None, feed: FeedClient | None, scan: ScanInfo | None, status: str,
             detail: str | None, dead: str | None, notes: tuple[str, ...] = ()) -> None:
        r = self.report
        # transients the bridge could not pass on (dropped, refused) make the scan incomplete for QC
        r.status = "incomplete" if r.dropped or r.refused else status
        if scan is None:
            r.problem = detail
            if detail:
                self.send_line(f"ERR mrsqc: {detail}")
            elif not r.refused:
                self.send_line("DBG mrsqc: no spectroscopy data in this connection")
            return
        verdict = None
        if producer is not None and dead is None:
            try:
                verdict = producer.end_scan(r.status, notes).verdict
            except DeliveryError as exc:
                dead = str(exc)
        r.problem = detail or ("the QC daemon is not answering: no verdict for this scan" if dead else None)
        deadline = time.monotonic() + (self.settings.summary_wait_s if dead is None and feed else 0)
        while self._summary is None and time.monotonic() < deadline:
            self._feed(feed, scan)
            time.sleep(0.02)
        r.verdict = (self._summary or {}).get("verdict", verdict)
        for line in VerdictTexts.final_lines(self._summary, verdict, r.dropped, r.transients + r.dropped,
                                             r.problem):
            self.send_line(line)


# ---------------------------------------------------------------------------------------------- the server
class MrdServer:
    """Listens on ``host:port`` (127.0.0.1 by default); one thread per connection. :meth:`serve` until
    ``stop`` is set."""

    def __init__(self, settings: BridgeSettings, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 context: zmq.Context | None = None):
        self.settings = settings
        self.ctx = context or zmq.Context.instance()
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.address = self.listener.getsockname()[:2]
        self.reports: list[ConnectionReport] = []
        self._threads: list[threading.Thread] = []

    def serve(self, stop: threading.Event) -> None:
        log.info("MRD server listening on %s:%d, passing transients to %s", *self.address, self.settings.ingest)
        try:
            while not stop.is_set():
                try:
                    sock, addr = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if stop.is_set():
                        break
                    raise
                peer = f"{addr[0]}:{addr[1]}"
                log.info("connection from %s", peer)
                conn = MrdConnection(sock, peer, self.settings, self.ctx, stop)
                th = threading.Thread(target=self._run, args=(conn,), name=f"mrd {peer}", daemon=True)
                th.start()
                self._threads = [t for t in self._threads if t.is_alive()] + [th]
        finally:
            self.listener.close()
            for th in self._threads:
                th.join(10)

    def _run(self, conn: MrdConnection) -> None:
        try:
            self.reports.append(conn.run())
        except Exception:  # a bug in one connection never ends the server
            log.exception("connection %s failed", conn.report.peer)
            self.reports.append(conn.report)
