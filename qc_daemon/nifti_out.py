"""NIfTI-MRS for analysts, beside transients.jsonl and summary.json (``mrsqc check --out``, the daemon's scan folder).

- ``combined.nii.gz``: every metabolite transient, coil-combined with mrsqc's calibrated weights and with the
  oversampling removed, as acquired (no correction), in acquisition order: ``DIM_DYN`` (x ``DIM_EDIT`` for edited
  scans: complete edit cycles; an incomplete last cycle is left out and said). ``combined_wref.nii.gz``: the
  water references the same way. ``combined.tsv``: one row per (dyn, edit) entry: the transient's index in
  transients.jsonl, its average, time, whether it was accepted, the correction mrsqc measured and its flags.
- ``accepted_aligned.nii.gz``: only the accepted metabolite transients, each corrected by mrsqc's estimate
  (fid x exp(-i (2 pi f t + phase))), with ``ProcessingApplied`` (coil combination, frequency and phase
  correction, outlier removal: program mrsqc, version, config digest); ``accepted_aligned.tsv`` maps its entries
  to transients. Edited scans keep the same number per edit set (the first accepted of each), so the
  ``DIM_EDIT`` sets stay paired. Average along ``DIM_DYN`` and fit (FSL-MRS, spant, Osprey read it directly).

Correction: f is the transient's smoothed frequency (tracking.smooth over the accepted transients of its edit set,
the frequency check's ``freq_smoothed_hz``: the single shots ``freq_hz`` weighed against the drift trend by their
SDs: correcting by the single shots would add their estimation noise to the average's line), + = towards higher
ppm; the phase is the transient's phase vs its reference plus the reference's own zero-order phase (so the
average is phased as mrsqc's reference is). Nothing from the input's header but the acquisition parameters is
written: no patient field, no file name. Written in the NIfTI-MRS frame (nifti_write.py conjugates).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np

from . import kernels
from .engine import Acquired
from .model import METABOLITE, WATER_REF, ScanInfo, TransientQC
from .sources.nifti_write import write_nifti_mrs
from .tracking import FilterParams, smooth

TSV_COLUMNS = ("dyn", "edit", "transient_index", "average", "time_s", "accepted", "freq_hz", "freq_applied_hz",
               "phase_applied_deg", "flags")


def smoothed_frequencies(accepted: list[TransientQC], acquired: dict[int, Acquired],
                         params: FilterParams) -> dict[int, float]:
    """Per accepted metabolite transient, its smoothed frequency (Hz; tracking.smooth per edit set, time order;
    a held calibration transient's SD is the median of the others', as the frequency check takes it)."""
    out: dict[int, float] = {}
    for s in sorted({r.set for r in accepted}):
        rows = [r for r in accepted if r.set == s]
        known = [acquired[r.index].freq_sd_hz for r in rows if acquired[r.index].freq_sd_hz is not None]
        if not known:
            out.update({r.index: acquired[r.index].freq_hz for r in rows})
            continue
        z = np.array([acquired[r.index].freq_hz for r in rows])
        fill = float(np.median(known))
        sd = np.array([acquired[r.index].freq_sd_hz or fill for r in rows])
        sm = smooth(np.array([r.time_s for r in rows]), z, sd, params)
        out.update({r.index: float(v) for r, v in zip(rows, sm)})
    return out


def _fid(a: Acquired) -> np.ndarray:
    """The transient's FID, complex64 (the precision the files hold; a 2000-transient scan's peak stays small)."""
    return np.fft.ifft(a.fft).astype(np.complex64, copy=False)


def _cycles(rows: list[TransientQC], n_sets: int) -> list[list[TransientQC]]:
    """Rows grouped into DIM_DYN entries of one transient per edit set (set order), complete entries only."""
    by_set = [[r for r in rows if r.set == s] for s in range(n_sets)]
    n = min(len(b) for b in by_set) if by_set else 0
    return [[by_set[s][k] for s in range(n_sets)] for k in range(n)]


def _header(scan: ScanInfo, provenance: dict, steps: list[dict], results_file: str) -> dict:
    hdr = {"ConversionMethod": f"{provenance.get('program', 'mrsqc')} {provenance.get('version', '')}".strip(),
           "ProcessingApplied": steps,
           "mrsqc_results": {"Value": results_file,
                             "Description": "per-entry mrsqc results (transient index into transients.jsonl, "
                                            "accepted, freq_hz, phase_deg, flags); docs/results.md"}}
    if scan.te_ms:
        hdr["EchoTime"] = scan.te_ms / 1000.0
    if scan.tr_ms:
        hdr["RepetitionTime"] = scan.tr_ms / 1000.0
    if scan.sequence:
        hdr["SequenceName"] = scan.sequence
    return hdr


def _step(provenance: dict, method: str, details: str, when: str) -> dict:
    return {"Time": when, "Program": provenance.get("program", "mrsqc"), "Version": provenance.get("version", ""),
            "Method": method, "Details": f"{details}; config digest {provenance.get('config_digest', '')}"}


def _write(out: Path, name: str, scan: ScanInfo, entries: list[list[TransientQC]], fids: dict[int, np.ndarray],
           acquired: dict[int, Acquired], provenance: dict, steps: list[dict],
           applied: dict[int, float] | None = None) -> Path | None:
    tsv = f"{name.split('.')[0]}.tsv"
    if not entries:  # nothing to write: no file from an earlier run into the same folder may stand for it
        (out / name).unlink(missing_ok=True)
        (out / tsv).unlink(missing_ok=True)
        return None
    n_sets = len(entries[0])
    data = np.stack([np.stack([fids[r.index] for r in e], axis=-1) for e in entries], axis=1)  # pts x dyn x set
    dims = ["DIM_DYN"]
    info = None
    if n_sets > 1:
        dims.append("DIM_EDIT")
        info = {"DIM_EDIT": {"info": "edit sets in acquisition order (mrsqc set 0, 1, ...)"}}
    else:
        data = data[..., 0]
    path = write_nifti_mrs(out / name, data, scan.dwell_s, scan.f0_mhz, dims,
                           _header(scan, provenance, steps, tsv), dim_info=info)
    lines = ["\t".join(TSV_COLUMNS)]
    for k, e in enumerate(entries):
        for s, r in enumerate(e):
            a = acquired[r.index]
            f_applied = f"{applied[r.index]:.4f}" if applied is not None else ""
            p_applied = f"{math.degrees(a.phase_rad):.2f}" if applied is not None else ""
            lines.append("\t".join(str(v) for v in (
                k, s, r.index, r.average, f"{r.time_s:.3f}", str(r.accepted).lower(), f"{a.freq_hz:.4f}",
                f_applied, p_applied, ",".join(r.flags))))
    (out / tsv).write_text("\n".join(lines) + "\n")
    return path


def write_nifti_outputs(out_dir: str | Path, scan: ScanInfo, results: list[TransientQC],
                        acquired: dict[int, Acquired], provenance: dict, tracking: FilterParams) -> list[str]:
    """Write the files above (``tracking``: the engine's frequency-tracking parameters, for the smoothing);
    returns notes on what was left out (empty when nothing was)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    notes: list[str] = []
    rows = [r for r in results if r.index in acquired]
    metab = [r for r in rows if r.kind == METABOLITE]
    water = [r for r in rows if r.kind == WATER_REF]
    n_sets = max(scan.n_sets, 1)
    combine = _step(provenance, "RF coil combination",
                    f"mrsqc calibrated weights (sum_c w_c x data_c) over {scan.n_coils} coil(s); "
                    f"oversampling x{scan.oversampling} removed", when)
    fids = {r.index: _fid(acquired[r.index]) for r in rows}
    cycles = _cycles(metab, n_sets)
    left = len(metab) - len(cycles) * n_sets
    if left:
        notes.append(f"combined.nii.gz: {left} transient(s) of an incomplete last edit cycle left out")
    if _write(out, "combined.nii.gz", scan, cycles, fids, acquired, provenance, [combine]) is None:
        notes.append("combined.nii.gz not written: no metabolite transient (or an edit set without any)")
    _write(out, "combined_wref.nii.gz", scan, [[r] for r in water], fids, acquired, provenance, [combine])
    accepted = [r for r in metab if r.accepted]
    removed = [r for r in metab if not r.accepted]
    applied = smoothed_frequencies(accepted, acquired, tracking)
    aligned = {r.index: kernels.correct_fid(fids[r.index].astype(np.complex128), scan.dwell_s, applied[r.index],
                                            acquired[r.index].phase_rad).astype(np.complex64) for r in accepted}
    kept = _cycles(accepted, n_sets)
    if len(kept) * n_sets < len(accepted):
        notes.append(f"accepted_aligned.nii.gz: {len(accepted) - len(kept) * n_sets} accepted transient(s) left "
                     "out to keep the edit sets paired")
    steps = [combine,
             _step(provenance, "Frequency and phase correction",
                   "each transient x exp(-i (2 pi f t + phi)): f = its smoothed frequency vs the reference of its "
                   "edit set (Kalman/RTS over the accepted single shots, Hz, + = towards higher ppm), phi = its "
                   "phase vs the reference + the reference's zero-order phase; see accepted_aligned.tsv", when),
             _step(provenance, "Outlier removal",
                   f"{len(removed)} of {len(metab)} metabolite transients removed (mrsqc flags: "
                   f"{', '.join(sorted({f for r in removed for f in r.flags})) or 'none'}); see combined.tsv", when)]
    if _write(out, "accepted_aligned.nii.gz", scan, kept, aligned, acquired, provenance, steps, applied) is None:
        notes.append("accepted_aligned.nii.gz not written: no accepted metabolite transient")
    return notes
