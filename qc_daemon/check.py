"""Offline check: feed a recording (and an optional water-reference file) through the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .engine import Acquired, ScanQC
from .errors import InputError
from .model import ScanInfo, ScanSummary, TransientQC
from .sources.open import open_recording
from .sources.recording import Chained, Recording


@dataclass
class CheckRun:
    scan: ScanInfo
    results: list[TransientQC]
    summary: ScanSummary
    notes: list[str]
    checks: list[dict]  # what the checks that ran declare (plugin_api.Contract.describe())
    acquired: dict[int, Acquired]  # per transient index: its combined FID and correction (nifti_out.py)
    config: Config  # the effective config the engine ran with


def merge_water(recording: Recording, water: Recording, water_path: str | Path) -> Recording:
    """Put a separate water-reference scan's transients before the metabolite transients (indices renumbered)."""
    s, w = recording.scan, water.scan
    if (w.n_coils, w.n_points, w.oversampling) != (s.n_coils, s.n_points, s.oversampling) or \
            abs(w.dwell_s - s.dwell_s) > 1e-9:
        raise InputError(water_path, f"water reference has {w.n_coils} coils x {w.n_points} points, dwell "
                                     f"{w.dwell_s * 1e6:.1f} us; the scan has {s.n_coils} x {s.n_points}, "
                                     f"{s.dwell_s * 1e6:.1f} us")
    n = len(water.transients)
    merged = Chained(water.transients, recording.transients, time_zero=(True, False))
    return Recording(recording.scan, merged, recording.notes + [f"{n} water-reference transient(s) from the "
                                                                 "--water file come first"])


def run_check(path: str | Path, water: str | Path | None = None, config: Config | None = None,
              on_result: Callable[[TransientQC, int], None] | None = None) -> CheckRun:
    """Check one recording; ``on_result(result, n_total)`` is called as each result becomes final."""
    rec = open_recording(path)
    if water is not None:
        rec = merge_water(rec, open_recording(water, role="water"), water)
    engine = ScanQC(rec.scan, config)
    results: list[TransientQC] = []
    n = len(rec.transients)
    for tr in rec.transients:
        for r in engine.process(tr):
            results.append(r)
            if on_result:
                on_result(r, n)
    tail, summary = engine.finish()
    for r in tail:
        results.append(r)
        if on_result:
            on_result(r, n)
    summary.notes[:0] = rec.notes
    return CheckRun(rec.scan, results, summary, rec.notes, engine.contract.describe(), engine.acquired,
                    engine.config)
