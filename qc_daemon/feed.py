"""The results feed (docs/protocol.md "Feed messages"): its message types, the one place scan messages are
stamped, encode / decode with validation, the snapshot reply, and a viewer's connection states.

Every producer of feed messages (the daemon, ``mrsqc tui FILE`` in-process, tests) builds them with the
functions here and numbers them with a :class:`Stamper`; every reader (qc_daemon.client.FeedClient, the text
view, the live view) decodes them here. A message is a JSON object with a ``type``:

- scan messages (topic = the scan id), stamped with ``scan_id`` and ``feed_seq`` (1, 2, ... per daemon):
  ``scan_start`` {scan, limits, checks[, resumed_from_spool]}, ``result`` {result}, ``progress`` {summary,
  spectrum}, ``summary`` {summary, spectrum};
- daemon messages (topic ``_daemon``): ``heartbeat`` {time, feed_seq, daemon_id, scan_id, error, received,
  rejected, seq_gaps, handle_ms, spool}, ``status`` {state, detail, feed_seq}.
A type this version does not know is passed on by :func:`decode` (a newer daemon may send more) and ignored
by viewers.
"""

from __future__ import annotations

import json
from typing import Any

from .model import ScanInfo, ScanSummary, SpectrumView, TransientQC

SCAN_START, RESULT, PROGRESS, SUMMARY = "scan_start", "result", "progress", "summary"
HEARTBEAT, STATUS = "heartbeat", "status"
SCAN_TYPES = (SCAN_START, RESULT, PROGRESS, SUMMARY)
DAEMON_TYPES = (HEARTBEAT, STATUS)
DAEMON_TOPIC = b"_daemon"
SNAPSHOT_REQUEST = b"snapshot"
MAX_FEED_BYTES = 16 * 1024 * 1024  # one feed message (a summary with a long scan's details is ~1 MB)

# a viewer's link to its source (the live view shows them)
CONNECTING = "connecting"
CONNECTED = "connected"
NO_DAEMON = "no daemon"
OFFLINE = "offline"  # reviewing a file in-process

#: the spec: the keys each type must carry and their JSON types (beyond ``type``; scan messages also scan_id,
#: feed_seq)
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    SCAN_START: {"scan": dict, "limits": dict, "checks": list},
    RESULT: {"result": dict},
    PROGRESS: {"summary": dict, "spectrum": (dict, type(None))},
    SUMMARY: {"summary": dict, "spectrum": (dict, type(None))},
    HEARTBEAT: {"daemon_id": str, "feed_seq": int},
    STATUS: {"state": str, "detail": str},
}
_STAMP = {"scan_id": str, "feed_seq": int}


class FeedError(ValueError):
    """A feed message or snapshot reply that is not what docs/protocol.md specifies."""


# ---------------------------------------------------------------------------------------------- building
def scan_start(scan: ScanInfo, limits: dict[str, float], checks: list[dict[str, Any]],
               resumed_from_spool: int | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"type": SCAN_START, "scan": scan.to_dict(), "limits": dict(limits), "checks": checks}
    if resumed_from_spool is not None:
        m["resumed_from_spool"] = int(resumed_from_spool)
    return m


def result(qc: TransientQC) -> dict[str, Any]:
    return {"type": RESULT, "result": qc.to_dict()}


def progress(summary: ScanSummary, spectrum: SpectrumView | None) -> dict[str, Any]:
    return {"type": PROGRESS, "summary": summary.to_dict(), "spectrum": spectrum.to_dict() if spectrum else None}


def final_summary(summary: ScanSummary, spectrum: SpectrumView | None) -> dict[str, Any]:
    return {"type": SUMMARY, "summary": summary.to_dict(), "spectrum": spectrum.to_dict() if spectrum else None}


def status(state: str, detail: str, feed_seq: int) -> dict[str, Any]:
    return {"type": STATUS, "state": state, "detail": detail, "feed_seq": feed_seq}


def heartbeat(**fields: Any) -> dict[str, Any]:
    """A heartbeat with the daemon's figures (docs/protocol.md lists them)."""
    return {"type": HEARTBEAT, **fields}


class Stamper:
    """Numbers scan messages: each gets the next ``feed_seq`` and its ``scan_id`` (the one place the feed is
    stamped: the daemon holds one for its life, an in-process review one per file)."""

    def __init__(self, first_seq: int = 1):
        self.feed_seq = first_seq - 1  # the last number given

    def stamp(self, scan_id: str, message: dict[str, Any]) -> dict[str, Any]:
        self.feed_seq += 1
        return dict(message, feed_seq=self.feed_seq, scan_id=scan_id)

    def stamp_all(self, scan_id: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.stamp(scan_id, m) for m in messages]


# ---------------------------------------------------------------------------------------------- the wire
def topic(message: dict[str, Any]) -> bytes:
    return DAEMON_TOPIC if message.get("type") in DAEMON_TYPES else str(message["scan_id"]).encode()


def encode(message: dict[str, Any]) -> list[bytes]:
    """[topic, JSON] of a valid message (FeedError otherwise: a producer bug, never sent)."""
    validate(message)
    return [topic(message), json.dumps(message, allow_nan=False).encode()]


def decode(frames: list[bytes]) -> dict[str, Any]:
    """The message of [topic, JSON] frames, validated (FeedError with the reason otherwise)."""
    if len(frames) != 2:
        raise FeedError(f"a feed message has 2 frames (topic, JSON), not {len(frames)}")
    if len(frames[1]) > MAX_FEED_BYTES:
        raise FeedError(f"feed message of {len(frames[1])} bytes is over {MAX_FEED_BYTES}")
    message = _json(frames[1])
    validate(message)
    want = topic(message) if message["type"] in SCAN_TYPES + DAEMON_TYPES else frames[0]
    if frames[0] != want:
        raise FeedError(f"{message['type']} message on topic {frames[0][:40]!r}, expected {want[:40]!r}")
    return message


def validate(message: Any) -> None:
    """Raise FeedError unless ``message`` is a JSON object of a known shape (an unknown ``type`` passes)."""
    if not isinstance(message, dict):
        raise FeedError("a feed message is a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise FeedError("a feed message needs a text 'type'")
    if kind not in REQUIRED:
        return
    need = dict(REQUIRED[kind], **(_STAMP if kind in SCAN_TYPES else {}))
    for key, types in need.items():
        value = message.get(key)
        if not isinstance(value, types) or isinstance(value, bool) and types is int:
            raise FeedError(f"{kind} message: {key!r} must be {_names(types)}, not {type(value).__name__}")
    if "feed_seq" in need and message["feed_seq"] < 0:
        raise FeedError(f"{kind} message: feed_seq {message['feed_seq']} < 0")
    if kind == RESULT:
        r = message["result"]
        for key, types in (("index", int), ("kind", str), ("time_s", (int, float)), ("flags", list),
                           ("accepted", bool), ("metrics", dict)):
            if not isinstance(r.get(key), types):
                raise FeedError(f"result message: result.{key} must be {_names(types)}")
    if kind in (PROGRESS, SUMMARY):
        s = message["summary"]
        for key, types in (("verdict", str), ("reasons", list), ("status", str), ("flagged_indices", list)):
            if not isinstance(s.get(key), types):
                raise FeedError(f"{kind} message: summary.{key} must be {_names(types)}")
    if kind == SCAN_START and not isinstance(message["scan"].get("scan_id"), str):
        raise FeedError("scan_start message: scan.scan_id must be text")


def snapshot_reply(feed_seq: int, daemon_id: str, messages: list[dict[str, Any]]) -> bytes:
    """The snapshot endpoint's answer (docs/protocol.md "Late joiners")."""
    return json.dumps({"feed_seq": feed_seq, "daemon_id": daemon_id, "messages": messages},
                      allow_nan=False).encode()


def decode_snapshot(body: bytes) -> tuple[int, str | None, list[dict[str, Any]]]:
    """(feed_seq, daemon_id, messages) of a snapshot reply, every message validated."""
    reply = _json(body)
    if not isinstance(reply, dict) or not isinstance(reply.get("feed_seq"), int) or \
            not isinstance(reply.get("messages"), list):
        raise FeedError("a snapshot reply is {feed_seq: int, daemon_id, messages: [...]}")
    for m in reply["messages"]:
        validate(m)
    daemon_id = reply.get("daemon_id")
    return reply["feed_seq"], daemon_id if isinstance(daemon_id, str) else None, reply["messages"]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FeedError(f"not JSON ({type(exc).__name__})") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({dict: "an object", list: "a list", str: "text", int: "a whole number", float: "a number",
                        bool: "true/false", type(None): "null"}.get(t, t.__name__) for t in types)
