"""A recorded scan: its ScanInfo, its transients in acquisition order, and reader notes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from ..model import ScanInfo, Transient


def file_head(path, n: int) -> bytes:
    """The first ``n`` bytes of a file (fewer when it is shorter; b"" when it cannot be read): for the
    readers' format sniffing, which must never raise."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


@dataclass
class Recording:
    """``transients`` may be lazy (read on demand, e.g. twix): use len() and iteration."""

    scan: ScanInfo
    transients: Sequence[Transient]
    notes: list[str] = field(default_factory=list)

    @property
    def scan_with_notes(self) -> ScanInfo:
        """The ScanInfo the engine gets, offline and streamed alike: the reader's notes carried with it (after
        any the ScanInfo already has)."""
        return replace(self.scan, notes=self.scan.notes + tuple(n for n in self.notes if n not in self.scan.notes))


def oversampling_note(factor: int) -> str | None:
    """The readers' and the bridge's words for a recording with readout oversampling."""
    return f"{factor}x oversampling (removed after coil combination)" if factor > 1 else None


class Chained(Sequence):
    """Transients of several sequences one after another, renumbered 0..n-1 (e.g. a water file, then a scan)."""

    def __init__(self, *parts: Sequence[Transient], time_zero: tuple[bool, ...] = ()):
        self._parts = parts
        self._time_zero = time_zero or tuple(False for _ in parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        offset = 0
        for part, zero in zip(self._parts, self._time_zero):
            if i < offset + len(part):
                t = part[i - offset]
                return replace(t, index=i, time_s=0.0 if zero else t.time_s)
            offset += len(part)
        raise IndexError(i)

    def __iter__(self) -> Iterator[Transient]:
        offset = 0
        for part, zero in zip(self._parts, self._time_zero):
            for t in part:
                yield replace(t, index=t.index + offset, time_s=0.0 if zero else t.time_s)
            offset += len(part)


def paced(transients: Iterable[Transient], speed: float | None) -> Iterator[Transient]:
    """Yield the transients at ``speed`` x their acquisition pace (their ``time_s`` from the first one
    yielded); None = as fast as the caller takes them."""
    t_start = time.monotonic()
    for t in transients:
        if speed:
            wait = t_start + t.time_s / speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        yield t
