"""Sinks for finished results: transients.jsonl + summary.json, and the readable text summary."""

from __future__ import annotations

import json
from pathlib import Path

from . import display
from .model import ScanInfo, ScanSummary, TransientQC, verdict_word


def write_outputs(out_dir: str | Path, results: list[TransientQC], summary: ScanSummary) -> None:
    """Write ``transients.jsonl`` (one object per transient, acquisition order) and ``summary.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "transients.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps(r.to_dict(), allow_nan=False) + "\n")
    with open(out / "summary.json", "w") as f:
        json.dump(summary.to_dict(), f, indent=2, allow_nan=False)
        f.write("\n")


def _fmt(v, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{(' ' + unit) if unit else ''}"


def summary_text(scan: ScanInfo, summary: ScanSummary, checks: list[dict]) -> str:
    """A readable multi-line summary (no patient identifiers: the scan id is an anonymous hash). ``checks``:
    the checks' declarations (plugin_api.Contract.describe()): each contributes its declared lines."""
    d = summary.to_dict()
    lines = [
        f"mrsqc  scan {scan.scan_id}  {scan.sequence or '?'}  TE {_fmt(scan.te_ms, 'ms', 0)}  "
        f"TR {_fmt(scan.tr_ms, 'ms', 0)}  f0 {scan.f0_hz / 1e6:.3f} MHz  {scan.n_coils} coils x "
        f"{scan.n_points} points  ({scan.source})",
        f"VERDICT: {verdict_word(summary.verdict)}" + (f"  ({'; '.join(summary.reasons)})" if summary.reasons else ""),
        f"transients: {summary.n_transients} ({summary.n_metabolite} metabolite, {summary.n_water_ref} water ref)"
        f"  flagged: {summary.n_flagged} {summary.flagged_indices if summary.flagged_indices else ''}",
        *display.summary_text_lines(checks, d),
    ]
    if summary.scan_kind == "water-only":
        lines.insert(2, "water-only scan: water linewidth and frequency only; no metabolite metrics")
    labels = display.summary_labels(checks)
    lines += [f"not judged: {labels[k][0] if k in labels else k}: {why}" for k, why in summary.unmeasured.items()]
    lines += [f"note: {n}" for n in summary.notes]
    return "\n".join(lines)
