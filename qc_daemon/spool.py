"""The raw spool: every transient the daemon accepted, as received, append-only, fsync'd before it is acknowledged.

One file per scan, ``DATA_DIR/<scan folder>/spool.mrsqc``::

    magic  b"MRSQCSP1"
    record <I header length> <I payload length> <I CRC-32 of header + payload> header (JSON) payload

Records (``header["record"]``): ``scan`` (the ScanInfo; always first), ``transient`` (``pos``: the producer's
0-based transient ordinal in this scan; ``index``, ``average``, ``set``, ``kind``, ``time_s``, ``shape``;
payload raw little-endian complex64, coils x samples, exactly the bytes received), ``skip`` (``pos`` and
``reason``: a transient the daemon rejected for its content, so that position is used up), ``end``
(``status``: the scan closed). A torn last record (a crash mid-write) fails its length or CRC check and is
cut off on reading; everything before it is intact, because records are only ever appended.

A restarted daemon re-runs the engine over a scan's spool (the engine is deterministic, so the results are
the ones it had) and continues the scan. The spool of a finished scan is its raw record: ``mrsqc check`` reads
it (:func:`read_recording`). :class:`SpoolStore` keeps the spools within a disk budget and a retention time.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model import ScanInfo, Transient

log = logging.getLogger(__name__)

MAGIC = b"MRSQCSP1"
SPOOL_NAME = "spool.mrsqc"
_HEAD = struct.Struct("<III")
MAX_RECORD_HEADER = 1 << 20


class SpoolError(OSError):
    """The spool cannot take more (budget exceeded, disk full, write error); ``str()`` says which."""


@dataclass
class SpooledScan:
    """What one spool file holds: the scan, its transients by position, skipped positions, and the end."""

    path: Path
    scan: ScanInfo
    stream: str = ""  # the producer's stream id (protocol.scan_start): a resumed producer is recognised by it
    transients: list[tuple[int, Transient]] = field(default_factory=list)  # (pos, transient), pos order
    skipped: dict[int, str] = field(default_factory=dict)  # pos -> reason
    end_status: str | None = None
    good_bytes: int = 0  # length of the intact prefix (a torn tail beyond it is cut off when resuming)
    torn_bytes: int = 0

    @property
    def n_positions(self) -> int:
        """Transient positions used so far: the next transient the scan expects has this pos."""
        return len(self.transients) + len(self.skipped)


def _record(header: dict, payload: bytes | memoryview = b"") -> list[bytes | memoryview]:
    """The record's pieces, written with one writev (the payload is never copied)."""
    h = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    crc = zlib.crc32(payload, zlib.crc32(h))
    return [_HEAD.pack(len(h), len(payload), crc), h, payload]


def _records(buf: memoryview) -> Iterator[tuple[int, dict, memoryview]]:
    """(end offset, header, payload) of each intact record after the magic; stops at the first torn one."""
    off = len(MAGIC)
    while off + _HEAD.size <= len(buf):
        hlen, plen, crc = _HEAD.unpack_from(buf, off)
        start = off + _HEAD.size
        end = start + hlen + plen
        if hlen > MAX_RECORD_HEADER or end > len(buf):
            return
        h, payload = buf[start:start + hlen], buf[start + hlen:end]
        if zlib.crc32(payload, zlib.crc32(h)) != crc:
            return
        try:
            header = json.loads(bytes(h))
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(header, dict):
            return
        yield end, header, payload
        off = end


def is_spool(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_spool(path: str | Path) -> SpooledScan:
    """Parse a spool file; raises ValueError when it is not one (or its scan record is unreadable)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError(f"{path.name} is not an mrsqc spool")
    buf = memoryview(data)
    out: SpooledScan | None = None
    good = len(MAGIC)
    for end, h, payload in _records(buf):
        kind = h.get("record")
        if out is None:
            if kind != "scan":
                raise ValueError(f"{path.name}: the first record is not the scan")
            out = SpooledScan(path, ScanInfo.from_dict(h["scan"]), str(h.get("stream", "")))
        elif kind == "transient":
            data_arr = np.frombuffer(payload, dtype="<c8").reshape(h["shape"])
            out.transients.append((h["pos"], Transient(index=h["index"], average=h["average"], set=h["set"],
                                                       kind=h["kind"], time_s=h["time_s"], data=data_arr)))
        elif kind == "skip":
            out.skipped[h["pos"]] = h.get("reason", "")
        elif kind == "end":
            out.end_status = h.get("status", "complete")
        good = end
    if out is None:
        raise ValueError(f"{path.name}: no scan record")
    out.good_bytes, out.torn_bytes = good, len(data) - good
    return out


class Spool:
    """The spool of one scan, open for appending. ``append_*`` write (buffered by the OS); :meth:`sync` makes
    everything written so far durable (fsync) and returns the number of durable positions."""

    def __init__(self, path: Path, fsync: bool = True, resume: SpooledScan | None = None):
        self.path = path
        self.fsync = fsync
        if resume is None:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            self.bytes = 0
            self._write([MAGIC])
            self.positions = 0
        else:  # continue after the intact prefix; a torn tail is cut off
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.ftruncate(self._fd, resume.good_bytes)
            self.positions = resume.n_positions
            self.bytes = resume.good_bytes
        self.durable = self.positions if resume is not None else 0
        self._dirty = False

    @classmethod
    def create(cls, folder: Path, scan: ScanInfo, stream: str = "", fsync: bool = True) -> Spool:
        spool = cls(folder / SPOOL_NAME, fsync)
        spool._append(_record({"record": "scan", "scan": scan.to_dict(), "stream": stream}))
        return spool

    def _write(self, pieces: list) -> None:
        total = sum(len(p) for p in pieces)
        done = os.writev(self._fd, pieces)
        while done < total:  # a short write (rare: signals, full disk): write the rest
            rest = b"".join(bytes(p) for p in pieces)[done:]
            n = os.write(self._fd, rest)
            if n <= 0:
                raise OSError(errno.ENOSPC, "short write to the spool")
            done += n
        self.bytes += total

    def _append(self, pieces: list) -> None:
        self._write(pieces)
        self._dirty = True

    def record_size(self, transient: Transient) -> int:
        return _HEAD.size + 256 + transient.data.nbytes  # header JSON is well under 256 bytes

    def append_transient(self, pos: int, t: Transient) -> None:
        data = np.ascontiguousarray(t.data, dtype="<c8")
        self._append(_record({"record": "transient", "pos": int(pos), "index": int(t.index),
                              "average": int(t.average), "set": int(t.set), "kind": t.kind,
                              "time_s": float(t.time_s), "shape": list(data.shape)},
                             memoryview(data).cast("B")))
        self.positions = pos + 1

    def append_skip(self, pos: int, reason: str) -> None:
        self._append(_record({"record": "skip", "pos": pos, "reason": reason}))
        self.positions = pos + 1

    def sync(self) -> int:
        if self._dirty:
            if self.fsync:
                os.fsync(self._fd)
            self._dirty = False
        self.durable = self.positions
        return self.durable

    def end(self, status: str) -> None:
        self._append(_record({"record": "end", "status": status}))
        self.sync()
        self.abandon()

    def abandon(self) -> None:
        """Stop writing (after an error, or at the end): close (a record torn by an error is cut off when the
        spool is read)."""
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1


def read_recording(path: Path):
    """A spool as a Recording (``mrsqc check`` of a spool): its transients in position order."""
    from .sources.recording import Recording

    sp = read_spool(path)
    notes = [f"mrsqc spool: {len(sp.transients)} transients"
             + (f", {len(sp.skipped)} rejected by the daemon" if sp.skipped else "")
             + (f", scan {sp.end_status}" if sp.end_status else ", scan not closed")]
    if sp.torn_bytes:
        notes.append(f"torn last record ({sp.torn_bytes} bytes) ignored")
    return Recording(sp.scan, [t for _, t in sp.transients], notes)


class SpoolStore:
    """Disk budget and retention over every scan folder's spool in ``data_dir``.

    ``budget_bytes``: all spools together (the open scan's included); 0 = no limit. ``retention_s``: spools of
    finished scans older than this are deleted (0 = kept until the budget needs the room). When the budget is
    short, the oldest finished spools go first; an open scan's spool is never deleted. ``used`` is counted
    once from the folder, then kept up to date by :meth:`charge` (no directory walk per transient)."""

    def __init__(self, data_dir: Path, budget_bytes: int = 0, retention_s: float = 0.0):
        self.data_dir = Path(data_dir)
        self.budget_bytes = int(budget_bytes)
        self.retention_s = float(retention_s)
        self.used = self._count()

    def spools(self) -> list[Path]:
        if not self.data_dir.is_dir():
            return []
        return sorted(self.data_dir.glob(f"*/{SPOOL_NAME}"), key=_mtime)

    def _count(self) -> int:
        return sum(_size(p) for p in self.spools())

    def charge(self, n_bytes: int) -> None:
        self.used += n_bytes

    def fits(self, n_bytes: int) -> bool:
        return self.budget_bytes <= 0 or self.used + n_bytes <= self.budget_bytes

    def tidy(self, keep: Path | None = None, need_bytes: int = 0) -> list[Path]:
        """Delete finished spools past retention, then the oldest finished ones while the budget lacks
        ``need_bytes``; ``keep`` (the open scan's spool) is never deleted. Returns the deleted paths."""
        deleted = []
        now = time.time()
        spools = [p for p in self.spools() if p != keep and _finished(p)]
        if self.retention_s > 0:
            old = [p for p in spools if now - _mtime(p) > self.retention_s]
            for p in old:
                _remove(p, "past its retention")
            deleted += old
            spools = [p for p in spools if p not in old]
        self.used = self._count()
        while self.budget_bytes > 0 and spools and self.used + need_bytes > self.budget_bytes:
            p = spools.pop(0)
            _remove(p, "to keep the spools within their disk budget")
            deleted.append(p)
            self.used = self._count()
        return deleted


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _finished(spool: Path) -> bool:
    return (spool.parent / "summary.json").exists()


def _remove(p: Path, why: str) -> None:
    try:
        p.unlink()
        log.info("deleted spool %s %s", p.parent.name, why)
    except OSError as exc:
        log.warning("could not delete spool %s: %s", p, exc)
