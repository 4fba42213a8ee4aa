"""``report.json``: everything ``report.html`` shows, saved beside transients.jsonl and summary.json so that
``mrsqc report DIR`` re-renders the report without the raw data.

Contents: the scan (ScanInfo.to_dict: acquisition parameters and an anonymous hash, no patient field), the
summary and the per-transient results as in summary.json / transients.jsonl, the checks' declarations
(plugin_api.Contract.describe(): what the report draws, by name), and the spectra of the average per edit set:

- ``before``: every metabolite transient of the set, coil-combined as acquired (no frequency or phase
  correction, none excluded), averaged; one zero-order phase for the whole average (the circular mean of the
  transients' phases), so that it is drawn phased as ``after`` is;
- ``after``: the accepted transients only, each corrected by mrsqc's estimate as in accepted_aligned.nii.gz
  (smoothed frequency and phase, nifti_out.py), averaged.

Both as real parts over ``SPECTRUM_PPM`` (ppm ascending with the index), in units of the noise SD of one
transient (engine), so before and after share a scale. A scan recovered from its journal alone (no combined FIDs)
has no spectra: ``spectra`` is [] and ``spectra_missing`` says why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels
from .engine import Acquired
from .model import METABOLITE, ScanInfo, ScanSummary, TransientQC
from .nifti_out import smoothed_frequencies
from .tracking import FilterParams

REPORT_DATA = "report.json"
SPECTRUM_PPM = (0.2, 4.4)
MAX_SPECTRUM_POINTS = 1200
VERSION = 1


def _axis(scan: ScanInfo, n: int) -> np.ndarray:
    return scan.centre_ppm + (np.arange(n) - n // 2) / (n * scan.dwell_s) / scan.f0_mhz


def _shown(spec: np.ndarray, sel: np.ndarray, block: int, scale: float) -> list[float]:
    x = spec[sel].real
    x = x[: x.size // block * block].reshape(-1, block).mean(axis=1)
    return [float(f"{v / scale:.4g}") for v in x]


def spectra(scan: ScanInfo, results: list[TransientQC], acquired: dict[int, Acquired],
            tracking: FilterParams, noise_sd: float | None) -> list[dict[str, Any]]:
    """Per edit set: {set, ppm_lo, ppm_hi, n_before, n_after, before, after} (see the module docstring)."""
    metab = [r for r in results if r.kind == METABOLITE and r.index in acquired]
    if not metab:
        return []
    applied = smoothed_frequencies([r for r in metab if r.accepted], acquired, tracking)
    n = acquired[metab[0].index].fft.size
    ppm = _axis(scan, n)
    sel = (ppm >= SPECTRUM_PPM[0]) & (ppm <= SPECTRUM_PPM[1])
    block = max(1, -(-int(sel.sum()) // MAX_SPECTRUM_POINTS))
    idx = np.flatnonzero(sel)
    idx = idx[: idx.size // block * block]
    half = (block - 1) / 2
    # one transient's noise SD in the FFT's units; the averages are divided by it (a shared, honest scale)
    scale = float(noise_sd) if noise_sd and noise_sd > 0 else 1.0
    out = []
    for s in sorted({r.set for r in metab}):
        rows = [r for r in metab if r.set == s]
        phases = np.array([acquired[r.index].phase_rad for r in rows])
        phase0 = float(np.angle(np.exp(1j * phases).mean()))
        # running sums, one spectrum's worth of memory: stacking 2000 transients first took 16-32 MB per average
        total = np.zeros(n, dtype=np.complex128)
        for r in rows:
            total += acquired[r.index].fft
        # Acquired.fft is the FFT of the combined FID in FFT order: shifted here onto the ppm axis
        before = np.fft.fftshift(total / len(rows)) * np.exp(-1j * phase0)
        kept = [r for r in rows if r.accepted]
        after = None
        if kept:
            total = np.zeros(n, dtype=np.complex128)
            for r in kept:
                total += kernels.correct_fid(np.fft.ifft(acquired[r.index].fft), scan.dwell_s, applied[r.index],
                                             acquired[r.index].phase_rad)
            after = np.fft.fftshift(np.fft.fft(total / len(kept)))
        out.append({"set": int(s), "ppm_lo": float(ppm[idx[0]] + half * (ppm[1] - ppm[0])),
                    "ppm_hi": float(ppm[idx[-1]] - half * (ppm[1] - ppm[0])),
                    "n_before": len(rows), "n_after": len(kept),
                    "before": _shown(before, sel, block, scale),
                    "after": _shown(after, sel, block, scale) if after is not None else None})
    return out


def build(scan: ScanInfo, results: list[TransientQC], summary: ScanSummary, checks: list[dict],
          acquired: dict[int, Acquired] | None, tracking: FilterParams | None,
          noise_sd: float | None) -> dict[str, Any]:
    """The report's data (module docstring)."""
    data: dict[str, Any] = {"version": VERSION, "scan": scan.to_dict(), "summary": summary.to_dict(),
                            "results": [r.to_dict() for r in results], "checks": checks, "spectra": [],
                            "spectra_missing": None}
    if acquired and tracking is not None:
        data["spectra"] = spectra(scan, results, acquired, tracking, noise_sd)
        if not data["spectra"]:
            data["spectra_missing"] = "no metabolite transient"
    else:
        data["spectra_missing"] = "the combined FIDs were not kept (a scan recovered from its journal alone)"
    return data


def save(out_dir: str | Path, data: dict[str, Any]) -> Path:
    path = Path(out_dir) / REPORT_DATA
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, allow_nan=False, separators=(",", ":")))
    tmp.replace(path)
    return path


def load(folder: str | Path) -> dict[str, Any]:
    """The report data of an output or journal folder: report.json, else rebuilt from summary.json and
    transients.jsonl (and the journal's scan_start record for the scan and the checks), without spectra.
    Raises FileNotFoundError when the folder holds neither."""
    folder = Path(folder)
    if (folder / REPORT_DATA).is_file():
        return json.loads((folder / REPORT_DATA).read_text())
    if not (folder / "summary.json").is_file():
        raise FileNotFoundError(f"{folder} has no {REPORT_DATA} and no summary.json")
    from .journal import journal_start

    summary = json.loads((folder / "summary.json").read_text())
    results = [json.loads(line) for line in (folder / "transients.jsonl").read_text().splitlines() if line.strip()] \
        if (folder / "transients.jsonl").is_file() else []
    start = journal_start(folder / "journal.jsonl") if (folder / "journal.jsonl").is_file() else {}
    return {"version": VERSION, "scan": start.get("scan") or {"scan_id": summary.get("scan_id")},
            "summary": summary, "results": results, "checks": start.get("checks") or [], "spectra": [],
            "spectra_missing": "the spectra were not saved with these results (no report.json)"}


def noise_of(engine) -> float | None:
    """The latest metabolite transient's noise SD as the engine measured it, in the units of its combined
    spectra (None before the first metabolite transient)."""
    latest = engine.latest_spectra()
    value = None if latest is None else float(latest.noise_sd)
    return value if value is not None and math.isfinite(value) and value > 0 else None
