"""A recorded scan: its ScanInfo, its transients in acquisition order, and reader notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import ScanInfo, Transient


@dataclass
class Recording:
    scan: ScanInfo
    transients: list[Transient]
    notes: list[str] = field(default_factory=list)
