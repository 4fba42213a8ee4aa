"""The ZeroMQ ingest source (docs/protocol.md): every producer message validated (protocol.decode), the delivery
rules applied (positions taken in order, duplicates dropped, gaps refused saying which position is needed), each
transient handed to the open scan, and every producer answered once per burst with how far the daemon has
received and made durable. Bad input is rejected, counted by reason, logged and answered, never fatal; an
internal error (a bug) is logged with its traceback, reported on the feed and answered, and the transient
stays in the spool.

The source knows the scans only through the daemon's scan desk (``desk``: ``open``, ``closed``,
``start_scan``, ``end_scan``, ``report``): a second source (the scanner bridge) uses the same.
"""

from __future__ import annotations

import logging

import zmq

from . import protocol
from .health import Health
from .model import ScanInfo
from .open_scan import OpenScan

log = logging.getLogger("mrsqc.daemon")


class _Reject(protocol.ProtocolError):
    """A message refused because of its place in the stream; ``expected``: the position the daemon needs."""

    def __init__(self, reason: str, detail: str, expected: int | None = None):
        super().__init__(reason, detail)
        self.expected = expected


class ZmqIngest:
    def __init__(self, desk, socket: zmq.Socket, key: bytes | None, health: Health, daemon_id: str):
        self.desk, self.socket, self.key, self.health, self.daemon_id = desk, socket, key, health, daemon_id
        self.stream = protocol.StreamState()
        self._acks: dict[bytes, tuple[str, int]] = {}  # producer identity -> (stream, last seq) this burst

    def handle(self, identity: bytes, frames: list) -> None:
        """Validate and act on one ingest message from the producer ``identity``; never raises. Bad input is
        rejected (counted, logged, answered with its reason); an internal error is logged with its traceback,
        reported on the feed and answered, and the transient stays in the spool."""
        msg = None
        try:
            msg = protocol.decode(frames, self.key)
            self.stream.check_seq(msg)
            self._dispatch(identity, msg)
            self.health.received[msg.kind] += 1
        except protocol.ProtocolError as exc:
            self.health.rejected[exc.reason] += 1
            # a gap is what a resumed stream shows until the producer has rewound: expected, not alarming
            log.log(logging.INFO if exc.reason == "gap" else logging.WARNING, "rejected message: %s", exc)
            self._reply_reject(identity, msg, exc.reason, str(exc), getattr(exc, "expected", None))
        except Exception as exc:  # a bug, not bad input: keep serving, say so loudly
            self.health.rejected["internal_error"] += 1
            log.exception("internal error handling a %s message", msg.kind if msg else "?")
            self.desk.report(f"internal error: {type(exc).__name__}: {exc}")
            self._reply_reject(identity, msg, "internal_error", f"{type(exc).__name__}: {exc}")

    def acknowledge(self) -> None:
        """Answer every producer heard in this burst (after the open scan's sync: what is acknowledged as
        durable is on disk)."""
        acks, self._acks = self._acks, {}
        for identity, (stream, seq) in acks.items():
            self._send_reply(identity, self._ack(stream, seq))

    # ------------------------------------------------------------------ messages
    def _dispatch(self, identity: bytes, msg: protocol.Message) -> None:
        h = msg.header
        desk = self.desk
        stream = h.get("stream", "")
        self._acks[identity] = (stream, h["seq"])
        scan = desk.open if desk.open is not None and stream and desk.open.stream == stream else None
        if msg.kind == "heartbeat":
            self._acks[identity] = ("", h["seq"])
        elif msg.kind == "scan_start":
            if scan is not None:  # the producer asks where we are (after a restart or a lost message)
                scan.touch()
            elif stream not in desk.closed:
                desk.start_scan(ScanInfo.from_dict(h["scan"]), stream)
        elif stream in desk.closed and scan is None:
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
            desk.end_scan(h.get("status", "complete"), tuple(h.get("notes", ())))

    def _transient(self, scan: OpenScan, msg: protocol.Message) -> None:
        pos = msg.header["pos"]
        if pos < scan.positions:
            self.health.received["duplicate"] += 1
            scan.touch()
            return
        if pos > scan.positions:
            raise _Reject("gap", f"transient position {pos}; expected {scan.positions}", scan.positions)
        try:
            transient = protocol.to_transient(msg, scan.scan)
        except protocol.ProtocolError as exc:
            scan.skip(pos, exc.reason)  # the position is used up: the stream goes on after it
            raise
        scan.take(pos, transient)

    def _ack(self, stream: str, seq: int) -> list[bytes]:
        scan, error = self.desk.open, self.desk.error_state
        if scan is not None and stream and scan.stream == stream:
            return protocol.ack(scan.scan.scan_id, seq, scan.positions, scan.durable, self.daemon_id,
                                error=error, key=self.key, stream=stream)
        done = self.desk.closed.get(stream)
        if stream and done is not None:
            return protocol.ack(done["scan_id"], seq, done["positions"], done["durable"], self.daemon_id,
                                closed=True, error=error, verdict=done.get("verdict"), key=self.key,
                                stream=stream)
        return protocol.ack("", seq, 0, 0, self.daemon_id, error=error, key=self.key)

    def _reply_reject(self, identity: bytes, msg: protocol.Message | None, reason: str, detail: str,
                      expected: int | None = None) -> None:
        h = msg.header if msg is not None else {}
        seq = h.get("seq", 0) if isinstance(h.get("seq"), int) else 0
        self._send_reply(identity, protocol.reject(str(h.get("scan_id", ""))[:64], seq, reason, detail,
                                                   self.daemon_id, expected, key=self.key,
                                                   stream=str(h.get("stream", ""))[:64]))

    def _send_reply(self, identity: bytes, frames: list[bytes]) -> None:
        try:
            self.socket.send_multipart([identity] + frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the producer has gone (or its queue is full): it asks again when it is back
