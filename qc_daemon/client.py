"""Small client API: a Producer for scanner-side bridges, a FeedClient for viewers.

Producer, in a bridge::

    from qc_daemon.client import Producer
    with Producer("tcp://127.0.0.1:5555") as p:
        p.start_scan(scan_info)          # qc_daemon.model.ScanInfo
        for t in transients:             # qc_daemon.model.Transient, coils x samples complex64
            p.send(t)
        delivery = p.end_scan()          # waits until the daemon closed the scan; DeliveryError if it did not
        assert delivery.complete

Delivery is acknowledged and resumable (docs/protocol.md): the producer keeps every transient until the
daemon says it is durable, and after a daemon restart sends again from where the daemon's spool ends.

FeedClient, in a viewer: subscribes first, then asks for the snapshot, then continues from the live feed
without gaps or duplicates (every scan message carries a ``feed_seq``).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import zmq

from . import feed, protocol
from .model import ScanInfo, Transient
from .security import ClientCurve

log = logging.getLogger("mrsqc.client")


@dataclass
class Delivery:
    """What happened to one scan a Producer sent (``end_scan`` returns it).

    ``sent``: transients handed to :meth:`Producer.send`; ``received``: positions the daemon has (checked, or
    rejected for their content: see ``rejected``); ``durable``: positions fsync'd in the daemon's spool (they
    survive a daemon crash); ``closed``: the daemon took the scan_end; ``verdict``: its final verdict;
    ``resent``: transients sent again after a daemon restart or a lost message; ``resyncs``: times the
    producer asked the daemon where its record of the scan ends; ``daemon_error``: the daemon's last error
    state (e.g. its spool is full), or None."""

    scan_id: str
    sent: int = 0
    received: int = 0
    durable: int = 0
    closed: bool = False
    verdict: str | None = None
    rejected: list[dict] = field(default_factory=list)
    resent: int = 0
    resyncs: int = 0
    daemon_restarts: int = 0
    daemon_error: str | None = None
    dropped_unspooled: int = 0

    @property
    def complete(self) -> bool:
        """The daemon closed the scan holding every transient sent."""
        return self.closed and self.received == self.sent

    def describe(self) -> str:
        parts = [f"{self.received} of {self.sent} transients received by the daemon, {self.durable} durable"]
        if self.rejected:
            reasons = sorted({r["reason"] for r in self.rejected})
            parts.append(f"{len(self.rejected)} rejected ({', '.join(reasons)})")
        if self.resent:
            parts.append(f"{self.resent} re-sent after {self.resyncs} resync(s)")
        if self.daemon_restarts:
            parts.append(f"the daemon restarted {self.daemon_restarts} time(s)")
        if self.verdict:
            parts.append(f"verdict {self.verdict}")
        if self.daemon_error:
            parts.append(f"daemon error: {self.daemon_error}")
        return "; ".join(parts)


class DeliveryError(RuntimeError):
    """The daemon did not take the scan (no answer in time, or it lost what it had acknowledged);
    ``delivery`` says how far it got."""

    def __init__(self, message: str, delivery: Delivery):
        super().__init__(message)
        self.delivery = delivery


#: rejections that mean the daemon will take nothing from this producer (key, version, or the scan itself):
#: Producer raises DeliveryError at once instead of waiting for its time-out
FATAL_REJECTIONS = frozenset({"bad_signature", "version", "frame_count", "bad_json", "header_too_large",
                              "unknown_kind", "bad_scan"})


class Producer:
    """Sends a scan to the daemon and makes sure it arrives: every transient is kept until the daemon says
    it is durable (fsync'd in its spool); when the daemon restarts or a message is lost, the producer asks
    where the daemon's record of the scan ends and sends again from there (the daemon drops duplicates).

    ``window``: transients in flight (sent, not yet acknowledged as received) at most; a producer faster than
    the QC waits here. ``timeout_s``: give up (DeliveryError) when the daemon has not answered for this long
    (a restart takes a few seconds). ``resync_after_s``: ask the daemon for its position when nothing came
    back this long while messages are outstanding. ``max_retained_bytes``: transients kept while the daemon
    cannot make them durable (its spool is full); beyond it the oldest are dropped and counted."""

    def __init__(self, endpoint: str, key: bytes | None = None, producer_id: str | None = None,
                 context: zmq.Context | None = None, window: int = 32, curve: ClientCurve | None = None,
                 timeout_s: float = 30.0, resync_after_s: float = 1.0, max_retained_bytes: int = 2 << 30,
                 linger_ms: int = 1000):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        if curve is not None:
            curve.apply(self.sock)
        self.window = max(1, int(window))
        self.sock.setsockopt(zmq.SNDHWM, 4 * self.window + 8)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.key = key
        self.timeout_s = timeout_s
        self.resync_after_s = resync_after_s
        self.max_retained_bytes = max_retained_bytes
        self.id = producer_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count()
        self._last_seq = -1
        self.scan: ScanInfo | None = None
        self.delivery: Delivery | None = None
        self.daemon_id: str | None = None
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._stream = ""
        self._retained: dict[int, Transient] = {}  # pos -> transient, until durable
        self._retained_bytes = 0
        self._next_pos = 0  # positions handed to send()
        self._cursor = 0  # next position to transmit (< _next_pos after a rewind)
        self._ending: str | None = None  # scan_end status once end_scan was called
        self._end_notes: tuple[str, ...] = ()
        self._end_sent = False
        self._last_reply = time.monotonic()
        self._last_resync = 0.0
        self._resync_wait = self.resync_after_s
        self._fatal: str | None = None
        self._high_water = 0  # highest position transmitted + 1 (below it, a transmission is a re-send)
        self._rewound_at = 0  # seq of the first message sent after the last rewind

    # ------------------------------------------------------------------ sending
    def _transmit(self, frames: list[bytes], deadline: float) -> None:
        # copy=True: libzmq owns a copy of every frame. A zero-copy frame would have to outlive its send in
        # libzmq's I/O thread, and at the end of a replay the process (and its buffers) went away first:
        # segmentation faults and 'Bad address (src/tcp.cpp)' aborts with 1 MB frames (issue 11).
        while True:
            try:
                self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=True)
                return
            except zmq.Again:
                self._check_deadline(deadline)
                self._pump(20)

    def _next(self) -> int:
        self._last_seq = next(self._seq)
        return self._last_seq

    def _send_start(self, deadline: float) -> None:
        assert self.scan is not None
        h = protocol.scan_start(self.scan, self._next(), self.id, self.key, stream=self._stream)
        self._transmit(h, deadline)

    def _send_transient(self, pos: int, deadline: float) -> None:
        assert self.scan is not None
        t = self._retained[pos]
        self._transmit(protocol.transient(self.scan.scan_id, t, self._next(), self.id, self.key, pos=pos,
                                          stream=self._stream), deadline)

    def _send_end(self, deadline: float) -> None:
        assert self.scan is not None and self._ending is not None
        self._transmit(protocol.scan_end(self.scan.scan_id, self._next(), self._ending, self.id, self.key,
                                         n_transients=self._next_pos, stream=self._stream,
                                         notes=self._end_notes), deadline)
        self._end_sent = True

    def _flush(self, deadline: float) -> None:
        """Transmit what the window allows, from the cursor; then the scan_end once everything went out."""
        assert self.delivery is not None
        while self._cursor < self._next_pos and self._cursor - self.delivery.received < self.window:
            if self._cursor not in self._retained:
                self._lost(self._cursor)
            if self._cursor < self._high_water:
                self.delivery.resent += 1
            self._send_transient(self._cursor, deadline)
            self._cursor += 1
            self._high_water = max(self._high_water, self._cursor)
        if self._ending is not None and not self._end_sent and self._cursor == self._next_pos:
            self._send_end(deadline)

    def _lost(self, pos: int) -> None:
        assert self.delivery is not None
        raise DeliveryError(f"the daemon at {self.endpoint} needs transient position {pos} again, which it had "
                            "acknowledged as durable (its spool was lost?)", self.delivery)

    def _check_deadline(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            assert self.delivery is not None
            raise DeliveryError(f"the daemon at {self.endpoint} did not answer for {self.timeout_s:g} s (not "
                                "running, or refusing this client?)", self.delivery)

    def _wait(self, done, what: str) -> None:
        """Pump replies until ``done()``; resync when the daemon is silent; DeliveryError after timeout_s
        without any answer."""
        while not done():
            self._pump(50)
            if self._fatal:
                assert self.delivery is not None
                raise DeliveryError(self._fatal, self.delivery)
            now = time.monotonic()
            silent = now - self._last_reply
            if silent > self.timeout_s:
                assert self.delivery is not None
                raise DeliveryError(f"the daemon at {self.endpoint} did not answer for {self.timeout_s:g} s "
                                    f"while {what} (not running, or refusing this client?)", self.delivery)
            if silent > self._resync_wait and now - self._last_resync > self._resync_wait:
                self._resync()
            self._flush(now + self.timeout_s)

    def _resync(self) -> None:
        """Ask the daemon where its record of the scan ends: scan_start again (the daemon answers a known
        stream with an ack, an unknown one with reject no_scan). Backs off to at most 4 s between asks."""
        assert self.delivery is not None
        self._last_resync = time.monotonic()
        self._resync_wait = min(4.0, self._resync_wait * 2)
        self.delivery.resyncs += 1
        self._send_start(self._last_resync + self.timeout_s)

    # ------------------------------------------------------------------ replies
    def _pump(self, timeout_ms: int) -> None:
        if not self.sock.poll(timeout_ms):
            return
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = protocol.decode_reply(frames, self.key)
            except protocol.ProtocolError:
                continue  # not from our daemon: ignore
            self._reply(msg.kind, msg.header)

    def _reply(self, kind: str, h: dict) -> None:
        d = self.delivery
        if kind == "ack":  # progress; a reject proves the daemon is there, not that it takes anything
            self._last_reply = time.monotonic()
            self._resync_wait = self.resync_after_s
        if self.daemon_id is not None and h["daemon_id"] != self.daemon_id and d is not None:
            d.daemon_restarts += 1
        self.daemon_id = h["daemon_id"]
        if kind == "reject" and h["reason"] in FATAL_REJECTIONS and d is not None:
            # a message the daemon could not even read (a wrong key: it cannot tell which stream it was)
            self._fatal = f"the daemon refused this producer's messages: {h['reason']} ({h.get('detail', '')})"
            return
        if d is None or h.get("stream") != self._stream or not self._stream:
            return  # a heartbeat's answer, or about an earlier scan
        if kind == "reject":
            if h["reason"] == "no_scan":  # the daemon does not know this scan (any more): all again
                if h["seq"] >= self._rewound_at:
                    self._rewind(0, restart=True)
                return
            if h["reason"] != "gap":
                d.rejected.append({"reason": h["reason"], "detail": h.get("detail", ""), "seq": h["seq"]})
            return
        d.received, d.durable = h["received"], h["durable"]
        d.daemon_error = h.get("error")
        while self._retained and next(iter(self._retained)) < d.durable:  # kept in position order
            self._drop(next(iter(self._retained)))
        if h.get("closed"):
            d.closed, d.verdict = True, h.get("verdict")
            return
        if h["seq"] >= self._last_seq and d.received < self._cursor:
            # this ack answers everything sent so far, yet some of it is missing: lost in a restart
            self._rewind(d.received)
        elif h["seq"] >= self._last_seq and self._end_sent and d.received == self._next_pos:
            self._end_sent = False  # the scan_end itself was lost: send it again

    def _rewind(self, pos: int, restart: bool = False) -> None:
        self._rewound_at = self._last_seq + 1
        if restart:
            self._send_start(time.monotonic() + self.timeout_s)
        self._cursor = pos
        self._end_sent = False

    def _drop(self, pos: int) -> None:
        t = self._retained.pop(pos)
        self._retained_bytes -= t.data.nbytes

    # ------------------------------------------------------------------ API
    def start_scan(self, scan: ScanInfo) -> None:
        """Begin a new scan stream (a new stream id, even for a scan_id sent before)."""
        self._reset_scan()
        self.scan = scan
        self._stream = uuid.uuid4().hex
        self.delivery = Delivery(scan.scan_id)
        self._send_start(time.monotonic() + self.timeout_s)

    def send(self, transient: Transient) -> None:
        """Queue one transient and transmit what the window allows; waits while ``window`` transients are
        in flight. Raises DeliveryError when the daemon stops answering for ``timeout_s``."""
        assert self.scan is not None and self.delivery is not None, "start_scan first"
        pos = self._next_pos
        self._retained[pos] = transient
        self._retained_bytes += np.asarray(transient.data).nbytes
        self._next_pos += 1
        self.delivery.sent = self._next_pos
        while self._retained_bytes > self.max_retained_bytes and len(self._retained) > self.window:
            oldest = next(iter(self._retained))
            if oldest >= self.delivery.received:
                break  # never drop what the daemon has not even received
            self._drop(oldest)
            self.delivery.dropped_unspooled += 1
        self._pump(0)
        self._flush(time.monotonic() + self.timeout_s)
        self._wait(lambda: self._cursor == self._next_pos, "sending")

    def end_scan(self, status: str = "complete", notes: tuple[str, ...] = ()) -> Delivery:
        """Send scan_end after every transient and wait until the daemon has closed the scan with all of
        them (``notes``: for the summary, see protocol.scan_end). Returns the Delivery; raises DeliveryError
        when the daemon does not take the scan."""
        assert self.scan is not None and self.delivery is not None, "start_scan first"
        self._ending = status
        self._end_notes = tuple(notes)
        self._flush(time.monotonic() + self.timeout_s)
        d = self.delivery
        self._wait(lambda: d.closed, "ending the scan")
        return d

    def poll(self, timeout_ms: int = 0) -> Delivery | None:
        """Take the daemon's answers that have arrived (waiting up to ``timeout_ms``); returns the Delivery of
        the current scan, whose ``received`` and ``durable`` are then up to date."""
        self._pump(timeout_ms)
        return self.delivery

    def heartbeat(self) -> None:
        self.sock.send_multipart(protocol.heartbeat(self._next(), self.id, self.key), copy=True)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FeedClient:
    """Subscribes to the feed and merges it with a snapshot. Use :meth:`sync` once, then :meth:`poll`."""

    def __init__(self, feed: str, snapshot: str, context: zmq.Context | None = None,
                 curve: ClientCurve | None = None):
        self.ctx = context or zmq.Context.instance()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        if curve is not None:
            curve.apply(self.sub)
        self.sub.connect(feed)
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.apply(self.dealer)
        self.dealer.connect(snapshot)
        self.last_seq = 0
        self.daemon_id: str | None = None  # of the daemon that answered the snapshot (new after a restart)
        self.invalid = 0  # feed messages dropped because they failed validation (feed.decode); logged
        self._pending: list[dict] = []

    def sync(self, timeout_s: float = 5.0) -> list[dict]:
        """Ask for the snapshot (buffering live messages meanwhile); returns the snapshot's messages.

        The request goes out only once the subscription is live, i.e. after the first feed message (a
        heartbeat at the latest) arrived: a SUB socket joins a publisher some time after connecting (ZeroMQ's
        "slow joiner"), and anything published before that would fall between the snapshot and the feed.
        ``timeout_s`` must therefore exceed the daemon's heartbeat period (1 s by default). Raises
        TimeoutError when no daemon answers."""
        deadline = time.monotonic() + timeout_s
        while not self._pending:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no heartbeat on the feed within {timeout_s} s (is the daemon running?)")
            if self.sub.poll(50):
                self._pending.extend(self._drain())
        try:  # a DEALER without a connected peer (daemon down, or refusing us) would block forever
            self._send_request(max(0.05, deadline - time.monotonic()))
        except zmq.Again:
            raise TimeoutError(f"no daemon accepted the snapshot request within {timeout_s} s") from None
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.dealer, zmq.POLLIN)
        while time.monotonic() < deadline:
            events = dict(poller.poll(50))
            if self.sub in events:
                self._pending.extend(self._drain())
            if self.dealer in events:
                try:
                    self.last_seq, self.daemon_id, messages = feed.decode_snapshot(self.dealer.recv())
                except feed.FeedError as exc:
                    raise TimeoutError(f"the snapshot reply is not valid: {exc}") from None
                return messages
        raise TimeoutError(f"no snapshot reply within {timeout_s} s (is the daemon running?)")

    def _send_request(self, timeout_s: float) -> None:
        self.dealer.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
        self.dealer.send(feed.SNAPSHOT_REQUEST)

    def _drain(self) -> list[dict]:
        out = []
        while True:
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            try:
                out.append(feed.decode(frames))
            except feed.FeedError as exc:
                self.invalid += 1
                log.warning("feed message dropped: %s", exc)

    def poll(self, timeout_ms: int = 100) -> list[dict]:
        """New messages in feed order: scan messages with feed_seq beyond what was already seen (the snapshot
        included), plus daemon heartbeats/status."""
        msgs, self._pending = self._pending, []
        if self.sub.poll(timeout_ms):
            msgs.extend(self._drain())
        out = []
        for m in msgs:
            if m["type"] not in feed.SCAN_TYPES:
                out.append(m)
            elif m["feed_seq"] > self.last_seq:
                self.last_seq = m["feed_seq"]
                out.append(m)
        return out

    def messages(self, until_type: str = "summary", timeout_s: float = 30.0) -> Iterator[dict]:
        """Yield scan messages until one of ``until_type`` (inclusive) or the time-out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in self.poll(100):
                if m["type"] not in feed.SCAN_TYPES:
                    continue
                yield m
                if m["type"] == until_type:
                    return
        raise TimeoutError(f"no {until_type} within {timeout_s} s")

    def close(self) -> None:
        self.sub.close(0)
        self.dealer.close(0)
