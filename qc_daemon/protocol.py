"""The mrsqc wire protocol (spec: docs/protocol.md): encode, decode, validate, sign.

A message is a ZeroMQ multipart message:
    [b"mrsqc/2", header (UTF-8 JSON object), payload (transients only), signature (when a key is used)]
Producers (DEALER) send scan_start / transient / scan_end / heartbeat; the daemon (ROUTER) answers each
burst with ``ack`` (how many transients of the scan it has, and how many of those are durable in its spool)
and every refused message with ``reject`` (reason, and the position it expects when that is the problem).
The signature is HMAC-SHA256 over every preceding frame, each prefixed with its 8-byte little-endian length
(so frame boundaries are signed too). The payload is raw little-endian complex64, C order, shape = header
"shape" = [coils, samples]. Nothing is ever unpickled; every field is type- and range-checked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import KINDS, MAX_NOTE_CHARS, MAX_SCAN_NOTES, ScanInfo, Transient

VERSION = b"mrsqc/2"
MESSAGE_KINDS = ("scan_start", "transient", "scan_end", "heartbeat")
REPLY_KINDS = ("ack", "reject")
SCAN_END_STATUS = ("complete", "incomplete", "interrupted")
MAX_HEADER_BYTES = 64 * 1024
MAX_SCAN_ID = 64


class ProtocolError(ValueError):
    """A message that must be rejected; ``reason`` is a short stable code for counting."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class Message:
    kind: str
    header: dict[str, Any]
    payload: bytes | memoryview | None = None


def _sign(frames: list[bytes], key: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for f in frames:
        mac.update(struct.pack("<Q", len(f)))
        mac.update(f)
    return mac.digest()


def encode(kind: str, header: dict[str, Any], payload: bytes | memoryview | None = None,
           key: bytes | None = None) -> list[bytes]:
    """Frames for one message (``header`` must already hold scan_id, seq and the kind's fields)."""
    h = dict(header, kind=kind)
    frames = [VERSION, json.dumps(h, separators=(",", ":"), allow_nan=False).encode()]
    if payload is not None:
        frames.append(payload)
    if key:
        frames.append(_sign(frames, key))
    return frames


def scan_start(scan: ScanInfo, seq: int, producer: str = "", key: bytes | None = None,
               stream: str = "") -> list[bytes]:
    """``stream``: the producer's id of this sending of the scan (a new one per Producer.start_scan; the same
    one when the producer re-sends scan_start to learn where the daemon's record ends)."""
    return encode("scan_start", {"scan_id": scan.scan_id, "seq": seq, "producer": producer, "stream": stream,
                                 "scan": scan.to_dict()}, key=key)


def transient(scan_id: str, t: Transient, seq: int, producer: str = "", key: bytes | None = None,
              pos: int = 0, stream: str = "") -> list[bytes]:
    """``pos``: this transient's 0-based ordinal among the transients the producer sends in this scan (the
    daemon's duplicate and gap detection, and where a resumed stream restarts)."""
    data = np.ascontiguousarray(t.data, dtype="<c8")
    header = {"scan_id": scan_id, "seq": seq, "producer": producer, "stream": stream, "pos": int(pos),
              "index": int(t.index),
              "average": int(t.average), "set": int(t.set), "transient_kind": t.kind, "time_s": float(t.time_s),
              "shape": list(data.shape), "dtype": "<c8"}
    return encode("transient", header, memoryview(data).cast("B"), key=key)  # a view: no copy of the data


def scan_end(scan_id: str, seq: int, status: str = "complete", producer: str = "",
             key: bytes | None = None, n_transients: int = 0, stream: str = "",
             notes: tuple[str, ...] = ()) -> list[bytes]:
    """``n_transients``: how many transients the producer sent in this scan (the daemon closes the scan only
    when it has them all, else it answers with the position it is missing). ``notes``: what the producer
    learnt during the scan (the bridge: water references recognised, transients it could not pass on); they
    join the summary's notes after the reader's."""
    header = {"scan_id": scan_id, "seq": seq, "producer": producer, "stream": stream, "status": status,
              "n_transients": int(n_transients)}
    if notes:
        header["notes"] = list(notes)
    return encode("scan_end", header, key=key)


def heartbeat(seq: int, producer: str = "", key: bytes | None = None) -> list[bytes]:
    return encode("heartbeat", {"scan_id": "", "seq": seq, "producer": producer}, key=key)


def ack(scan_id: str, seq: int, received: int, durable: int, daemon_id: str, closed: bool = False,
        error: str | None = None, verdict: str | None = None, key: bytes | None = None,
        stream: str = "") -> list[bytes]:
    """Daemon -> producer: of scan ``scan_id`` the daemon has transient positions 0..received-1 (checked), and
    0..durable-1 are fsync'd in its spool (safe across a daemon crash). ``seq``: the producer's last message
    this answers. ``closed``: the scan_end was taken (``verdict`` then holds the final verdict). ``error``: the
    daemon's error state (e.g. the spool is full: durable stops growing), or null."""
    return encode("ack", {"scan_id": scan_id, "stream": stream, "seq": seq, "received": int(received),
                          "durable": int(durable),
                          "daemon_id": daemon_id, "closed": bool(closed), "error": error, "verdict": verdict},
                  key=key)


def reject(scan_id: str, seq: int, reason: str, detail: str, daemon_id: str, expected: int | None = None,
           key: bytes | None = None, stream: str = "") -> list[bytes]:
    """Daemon -> producer: the message ``seq`` was refused for ``reason`` (the codes in docs/protocol.md).
    ``expected``: for ``gap`` and ``no_scan``, the transient position the daemon needs next (0 = start again
    with scan_start)."""
    return encode("reject", {"scan_id": scan_id, "stream": stream, "seq": seq, "reason": reason,
                             "detail": detail[:200],
                             "daemon_id": daemon_id, "expected": expected}, key=key)


def decode_reply(frames: list[bytes], key: bytes | None = None) -> Message:
    """Parse and validate a daemon reply (ack / reject) on the producer side."""
    if not isinstance(frames, (list, tuple)) or len(frames) not in (2, 3):
        raise ProtocolError("frame_count", "a reply has 2 frames (3 signed)")
    frames = [bytes(f.buffer if hasattr(f, "buffer") else f) for f in frames]
    if frames[0] != VERSION:
        raise ProtocolError("version", repr(frames[0][:16]))
    if key:
        if len(frames) != 3 or not hmac.compare_digest(frames[2], _sign(frames[:2], key)):
            raise ProtocolError("bad_signature")
    elif len(frames) != 2:
        raise ProtocolError("frame_count", "unexpected signature frame")
    try:
        header = json.loads(frames[1].decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", str(exc)[:80]) from None
    if not isinstance(header, dict) or header.get("kind") not in REPLY_KINDS:
        raise ProtocolError("unknown_kind", repr(header.get("kind") if isinstance(header, dict) else None)[:40])
    _str(header, "scan_id", MAX_SCAN_ID)
    _str(header, "stream", MAX_SCAN_ID)
    _int(header, "seq", 0, 2 ** 62)
    _str(header, "daemon_id", 64)
    if header["kind"] == "ack":
        _int(header, "received", 0, 10 ** 9)
        _int(header, "durable", 0, 10 ** 9)
    else:
        _str(header, "reason", 64)
        if header.get("expected") is not None:
            _int(header, "expected", 0, 10 ** 9)
    return Message(header["kind"], header)


def _int(h: dict, name: str, lo: int, hi: int) -> int:
    v = h.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ProtocolError("bad_field", f"{name} must be an integer in {lo}..{hi}")
    return v


def _str(h: dict, name: str, max_len: int) -> str:
    v = h.get(name)
    if not isinstance(v, str) or len(v) > max_len:
        raise ProtocolError("bad_field", f"{name} must be a string of at most {max_len} characters")
    return v


def decode(frames: list[bytes], key: bytes | None = None) -> Message:
    """Parse and validate the *form* of one message (not its place in a stream; see :class:`StreamState`)."""
    if not isinstance(frames, (list, tuple)) or len(frames) < 2:
        raise ProtocolError("frame_count", f"{len(frames) if isinstance(frames, (list, tuple)) else '?'} frames")
    # zmq Frames (zero-copy receive) expose their buffer; the payload is only ever viewed, never copied
    frames = [f.buffer if hasattr(f, "buffer") else f for f in frames]
    frames[:2] = [bytes(f) for f in frames[:2]]
    if frames[0] != VERSION:
        raise ProtocolError("version", repr(frames[0][:16]))
    if key:
        body, sig = frames[:-1], frames[-1]
        if len(body) < 2 or not hmac.compare_digest(sig, _sign(body, key)):
            raise ProtocolError("bad_signature")
        frames = body
    if len(frames) > 3:
        raise ProtocolError("frame_count", f"{len(frames)} frames")
    if len(frames[1]) > MAX_HEADER_BYTES:
        raise ProtocolError("header_too_large", f"{len(frames[1])} bytes")
    try:
        header = json.loads(frames[1].decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", str(exc)[:80]) from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_json", "header is not an object")
    kind = header.get("kind")
    if kind not in MESSAGE_KINDS:
        raise ProtocolError("unknown_kind", repr(kind)[:40])
    _str(header, "scan_id", MAX_SCAN_ID)
    _int(header, "seq", 0, 2 ** 62)
    if "producer" in header:
        _str(header, "producer", 128)
    if kind != "heartbeat":
        if not _str(header, "stream", MAX_SCAN_ID):
            raise ProtocolError("bad_field", "stream must be a non-empty string")
    payload = frames[2] if len(frames) == 3 else None
    if kind == "transient":
        if payload is None:
            raise ProtocolError("frame_count", "transient without payload")
        _validate_transient_header(header, len(payload))
    elif payload is not None:
        raise ProtocolError("frame_count", f"{kind} with a payload")
    if kind == "scan_start":
        if not isinstance(header.get("scan"), dict):
            raise ProtocolError("bad_field", "scan_start without a scan object")
        try:
            info = ScanInfo.from_dict(header["scan"])
            info.validate()
        except (TypeError, ValueError) as exc:
            raise ProtocolError("bad_scan", str(exc)[:120]) from None
        if info.scan_id != header["scan_id"]:
            raise ProtocolError("bad_scan", "scan.scan_id differs from the header's scan_id")
    if kind == "scan_end":
        if header.get("status", "complete") not in SCAN_END_STATUS:
            raise ProtocolError("bad_field", f"status must be one of {SCAN_END_STATUS}")
        _int(header, "n_transients", 0, 10 ** 9)
        notes = header.get("notes", [])
        if not isinstance(notes, list) or len(notes) > MAX_SCAN_NOTES or \
                not all(isinstance(n, str) and len(n) <= MAX_NOTE_CHARS for n in notes):
            raise ProtocolError("bad_field", f"notes must be at most {MAX_SCAN_NOTES} texts of at most "
                                             f"{MAX_NOTE_CHARS} characters")
    return Message(kind, header, payload)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _validate_transient_header(h: dict, payload_len: int) -> None:
    _int(h, "pos", 0, 10 ** 9)
    _int(h, "index", 0, 10 ** 9)
    _int(h, "average", 0, 10 ** 9)
    _int(h, "set", 0, 63)
    if h.get("transient_kind") not in KINDS:
        raise ProtocolError("bad_field", f"transient_kind must be one of {KINDS}")
    t = h.get("time_s")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise ProtocolError("bad_field", "time_s must be a finite number >= 0")
    if h.get("dtype") != "<c8":
        raise ProtocolError("bad_dtype", repr(h.get("dtype"))[:20])
    shape = h.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1 << 20 for v in shape)):
        raise ProtocolError("bad_shape", repr(shape)[:40])
    if shape[0] * shape[1] * 8 != payload_len:
        raise ProtocolError("bad_size", f"payload {payload_len} bytes for shape {shape}")


class StreamState:
    """Per-daemon stream rules: sequence numbers per producer (strictly increasing; skipped numbers counted
    as gaps). Transient content rules are :func:`to_transient`."""

    def __init__(self) -> None:
        self.last_seq: dict[str, int] = {}
        self.gaps = 0

    def check_seq(self, msg: Message) -> None:
        producer, seq = msg.header.get("producer", ""), msg.header["seq"]
        last = self.last_seq.get(producer)
        if last is not None and seq <= last:
            raise ProtocolError("seq_order", f"seq {seq} after {last} from {producer!r}")
        if last is not None and seq > last + 1:
            self.gaps += seq - last - 1
        self.last_seq[producer] = seq


def to_transient(msg: Message, scan: ScanInfo) -> Transient:
    """The Transient of a decoded transient message of ``scan``: shape as declared at scan_start, finite
    data; raises :class:`ProtocolError` (``bad_shape``, ``not_finite``) otherwise."""
    h = msg.header
    expect = [scan.n_coils, scan.samples_per_transient]
    if h["shape"] != expect:
        raise ProtocolError("bad_shape", f"{h['shape']} != {expect} from scan_start")
    data = np.frombuffer(msg.payload, dtype="<c8").reshape(h["shape"])
    if not np.isfinite(data.view(np.float32)).all():
        raise ProtocolError("not_finite", f"transient {h['index']} holds NaN or Inf")
    return Transient(index=h["index"], average=h["average"], set=h["set"], kind=h["transient_kind"],
                     time_s=float(h["time_s"]), data=data)


def load_key(path: str | None) -> bytes | None:
    """The shared HMAC key from a file (whitespace stripped); None when no path is given."""
    if not path:
        return None
    with open(path, "rb") as f:
        key = f.read().strip()
    if len(key) < 16:
        raise ValueError(f"HMAC key in {path} is shorter than 16 bytes")
    return key
