"""Small client API: a Producer for scanner-side bridges, a FeedClient for viewers.

Producer, in a bridge::

    from qc_daemon.client import Producer
    with Producer("tcp://127.0.0.1:5555") as p:
        p.start_scan(scan_info)          # qc_daemon.model.ScanInfo
        for t in transients:             # qc_daemon.model.Transient, coils x samples complex64
            p.send(t)
        p.end_scan()

FeedClient, in a viewer: subscribes first, then asks for the snapshot, then continues from the live feed
without gaps or duplicates (every scan message carries a ``feed_seq``).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator

import zmq

from . import protocol
from .model import ScanInfo, Transient
from .security import ClientCurve


class Producer:
    """Sends scan_start / transient / scan_end / heartbeat messages over PUSH. ``hwm`` bounds how many
    messages wait for the daemon, so a fast producer is held back instead of buffering the whole scan."""

    def __init__(self, endpoint: str, key: bytes | None = None, producer_id: str | None = None,
                 context: zmq.Context | None = None, hwm: int = 16, linger_ms: int = 5000,
                 curve: ClientCurve | None = None, send_timeout_s: float | None = None):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUSH)
        if send_timeout_s is not None:  # default: wait for the daemon (PUSH reconnects by itself)
            self.sock.setsockopt(zmq.SNDTIMEO, int(send_timeout_s * 1000))
        if curve is not None:
            curve.apply(self.sock)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.connect(endpoint)
        self.key = key
        # unique per Producer: a second producer in the same process (or a restarted bridge) starts its own
        # seq at 0, which the daemon would otherwise reject as out of order
        self.id = producer_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count()
        self.scan: ScanInfo | None = None

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.sock.send_multipart(frames, copy=False)
        except zmq.Again:
            raise TimeoutError("the daemon did not accept the message in time (not running, or refusing "
                               "this client?)") from None

    def start_scan(self, scan: ScanInfo) -> None:
        self.scan = scan
        self._send(protocol.scan_start(scan, next(self._seq), self.id, self.key))

    def send(self, transient: Transient) -> None:
        assert self.scan is not None, "start_scan first"
        self._send(protocol.transient(self.scan.scan_id, transient, next(self._seq), self.id, self.key))

    def end_scan(self, status: str = "complete") -> None:
        assert self.scan is not None, "start_scan first"
        self._send(protocol.scan_end(self.scan.scan_id, next(self._seq), status, self.id, self.key))

    def heartbeat(self) -> None:
        self._send(protocol.heartbeat(next(self._seq), self.id, self.key))

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
                reply = json.loads(self.dealer.recv())
                self.last_seq = reply["feed_seq"]
                self.daemon_id = reply.get("daemon_id")
                return reply["messages"]
        raise TimeoutError(f"no snapshot reply within {timeout_s} s (is the daemon running?)")

    def _send_request(self, timeout_s: float) -> None:
        self.dealer.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
        self.dealer.send(b"snapshot")

    def _drain(self) -> list[dict]:
        out = []
        while True:
            try:
                _, body = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            out.append(json.loads(body))

    def poll(self, timeout_ms: int = 100) -> list[dict]:
        """New messages in feed order: scan messages with feed_seq beyond what was already seen (the snapshot
        included), plus daemon heartbeats/status."""
        msgs, self._pending = self._pending, []
        if self.sub.poll(timeout_ms):
            msgs.extend(self._drain())
        out = []
        for m in msgs:
            if m.get("type") in ("heartbeat", "status"):
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
                if m.get("type") in ("heartbeat", "status"):
                    continue
                yield m
                if m["type"] == until_type:
                    return
        raise TimeoutError(f"no {until_type} within {timeout_s} s")

    def close(self) -> None:
        self.sub.close(0)
        self.dealer.close(0)
