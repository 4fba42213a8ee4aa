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
    limits: dict[str, float]  # the thresholds a viewer draws (session.limits)
    noise_sd: float | None  # one metabolite transient's noise SD in the combined spectra's units (report_data)


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
    scan = rec.scan_with_notes
    engine = ScanQC(scan, config)
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
    from .report_data import noise_of
    from .session import limits

    return CheckRun(scan, results, summary, rec.notes, engine.contract.describe(), engine.acquired,
                    engine.config, limits(engine), noise_of(engine))


def write_report(out_dir: str | Path, scan: ScanInfo, results: list[TransientQC], summary: ScanSummary,
                 checks: list[dict], acquired: dict | None, config: Config | None, limits: dict[str, float],
                 noise_sd: float | None) -> Path:
    """report.json and report.html in ``out_dir`` (report_data.py, html_report.py); returns the page's path."""
    from .html_report import render
    from .report_data import build, save
    from .tracking import FilterParams

    tracking = FilterParams.from_config(config["tracking"]) if config is not None else None
    data = build(scan, results, summary, checks, acquired, tracking, noise_sd)
    data["limits"] = dict(limits)
    save(out_dir, data)
    page = Path(out_dir) / "report.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(page)
    return page
