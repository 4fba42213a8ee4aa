"""Per-scan journal: an append-only JSONL file, flushed and fsync'd per record, in the daemon's data directory.

Layout: ``DATA_DIR/<scan_id>/journal.jsonl`` with records ``{"record": "scan_start" | "result" | "summary", ...}``;
at scan end ``transients.jsonl`` and ``summary.json`` are written beside it, identical in form to
``mrsqc check --out``. After a crash, :func:`recover` closes every journal without a summary as
``interrupted`` from what it recorded (a torn last line is ignored and counted), so nothing is silently lost.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .model import METABOLITE, ScanInfo, ScanSummary, TransientQC
from .report import write_outputs

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """$MRSQC_DATA_DIR, else $XDG_DATA_HOME/mrsqc, else ~/.local/share/mrsqc."""
    if os.environ.get("MRSQC_DATA_DIR"):
        return Path(os.environ["MRSQC_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mrsqc"


class Journal:
    """The journal of one scan. Write errors raise OSError to the caller (the daemon reports them)."""

    def __init__(self, data_dir: Path, scan: ScanInfo, fsync: bool = True):
        self.dir = _fresh_dir(Path(data_dir), scan.scan_id)
        self.path = self.dir / "journal.jsonl"
        self.fsync = fsync
        self._f = open(self.path, "a", encoding="utf-8")
        self.scan = scan
        self.write({"record": "scan_start", "scan": scan.to_dict()})

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, allow_nan=False) + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def result(self, qc: TransientQC) -> None:
        self.write({"record": "result", "result": qc.to_dict()})

    def close(self, results: list[TransientQC], summary: ScanSummary) -> None:
        self.write({"record": "summary", "summary": summary.to_dict()})
        self._f.close()
        write_outputs(self.dir, results, summary)


def _fresh_dir(data_dir: Path, scan_id: str) -> Path:
    d = data_dir / scan_id
    n = 1
    while (d / "journal.jsonl").exists():  # the same scan streamed again: keep both
        n += 1
        d = data_dir / f"{scan_id}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_journal(path: Path) -> tuple[ScanInfo | None, list[TransientQC], dict | None, int]:
    """(scan, results, summary record or None, number of unreadable lines) of a journal file."""
    scan, results, summary, bad = None, [], None, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
                kind = rec["record"]
                if kind == "scan_start":
                    scan = ScanInfo.from_dict(rec["scan"])
                elif kind == "result":
                    results.append(TransientQC.from_dict(rec["result"]))
                elif kind == "summary":
                    summary = rec["summary"]
            except (ValueError, KeyError, TypeError):
                bad += 1  # a torn last line after a crash
    return scan, results, summary, bad


def interrupted_summary(scan: ScanInfo, results: list[TransientQC], status: str, note: str) -> ScanSummary:
    """A summary built from recorded results only (the engine state is gone): counts, flags, and the last
    running values; verdict warn at least, because the scan did not finish under QC."""
    metab = [r for r in results if r.kind == METABOLITE]
    flagged = [r.index for r in results if not r.accepted]
    last = metab[-1] if metab else None
    water = [r.fwhm_hz for r in results if r.kind != METABOLITE and r.fwhm_hz is not None]
    return ScanSummary(
        scan_id=scan.scan_id, n_transients=len(results), n_metabolite=len(metab),
        n_water_ref=len(results) - len(metab), n_flagged=len(flagged), flagged_indices=flagged,
        drift_hz_per_min=last.metrics.get("drift_rate_hz_per_min") if last else None,
        drift_total_hz=last.metrics.get("freq_trend_hz") if last else None,
        fwhm_water_hz=sorted(water)[len(water) // 2] if water else None,
        fwhm_metab_hz=last.fwhm_hz if last else None, snr_final=last.snr_running if last else None,
        snr_projected=last.metrics.get("snr_projected") if last else None, verdict="warn",
        reasons=[f"scan {status}: {len(results)} of {scan.planned_averages} planned transients checked"],
        status=status, notes=[note])


def recover(data_dir: Path) -> list[Path]:
    """Close every journal in ``data_dir`` that has no summary as ``interrupted``; returns their folders."""
    closed = []
    if not Path(data_dir).is_dir():
        return closed
    for path in sorted(Path(data_dir).glob("*/journal.jsonl")):
        try:
            scan, results, summary, bad = read_journal(path)
        except OSError as exc:
            log.error("journal %s unreadable: %s", path, exc)
            continue
        if summary is not None or scan is None:
            continue
        note = "daemon stopped during the scan; summary rebuilt from the journal"
        if bad:
            note += f" ({bad} torn line(s) skipped)"
        s = interrupted_summary(scan, results, "interrupted", note)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"record": "summary", "summary": s.to_dict()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        write_outputs(path.parent, results, s)
        log.warning("closed interrupted scan %s (%d results)", scan.scan_id, len(results))
        closed.append(path.parent)
    return closed
