"""Per-scan journal: an append-only JSONL file, flushed and fsync'd per record, in the daemon's data directory.

Layout: ``DATA_DIR/<scan folder>/journal.jsonl`` with records ``{"record": "scan_start" | "result" | "verdict" |
"summary", ...}``; at scan end ``transients.jsonl`` and ``summary.json`` are written beside it
(sinks.OutputsSink), identical in form to ``mrsqc check --out``. The raw transients are in ``spool.mrsqc``
beside it (qc_daemon/spool.py): after a crash the daemon resumes an open scan from its spool;
:func:`close_from_journal` closes one that has no usable spool from its journal alone (a torn last line is
ignored and counted), so nothing is silently lost.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from . import verdict
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
    """The journal of one scan, in ``folder``. Records are flushed as written and made durable by
    :meth:`sync` (the daemon syncs once per burst of messages, with the spool). Write errors raise OSError to
    the caller (the daemon reports them)."""

    def __init__(self, folder: Path, scan: ScanInfo, fsync: bool = True, records: list[dict] | None = None,
                 checks: list[dict] | None = None, provenance: dict | None = None):
        """A new journal (``records`` None), or one rewritten from ``records`` (a resumed scan: what the
        engine re-derived from the spool replaces what the crashed daemon had journaled). ``checks``: what
        the checks that run declare (plugin_api.Contract.describe()), kept for a journal-only recovery;
        ``provenance``: program, version, config digest, checks (qc_daemon/provenance.py)."""
        self.dir = Path(folder)
        self.path = self.dir / "journal.jsonl"
        self.fsync = fsync
        self.scan = scan
        start = {"record": "scan_start", "scan": scan.to_dict(), "checks": checks or [],
                 "provenance": provenance or {}}
        if records is None:
            self._f = open(self.path, "a", encoding="utf-8")
            self.write(start)
        else:
            tmp = self.path.with_suffix(".jsonl.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in [start] + records:
                    f.write(json.dumps(rec, allow_nan=False) + "\n")
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self._f = open(self.path, "a", encoding="utf-8")
        self.sync()

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, allow_nan=False) + "\n")
        self._f.flush()

    def sync(self) -> None:
        if self.fsync:
            os.fsync(self._f.fileno())

    def result(self, qc: TransientQC) -> None:
        self.write(result_record(qc))

    def close(self, summary: ScanSummary) -> None:
        """The summary record, synced; the journal is then closed (the scan's outputs are another sink's)."""
        self.write({"record": "summary", "summary": summary.to_dict()})
        self.sync()
        self._f.close()


def result_record(qc: TransientQC) -> dict[str, Any]:
    return {"record": "result", "result": qc.to_dict()}


def verdict_record(summary: dict[str, Any]) -> dict[str, Any]:
    """The live verdict and its findings (from a live summary dict), journaled when the verdict changes: what
    a journal-only recovery (no usable spool) keeps of a scan's findings."""
    return {"record": "verdict", "verdict": summary.get("verdict"),
            "findings": (summary.get("details") or {}).get("findings", [])}


def scan_folder(data_dir: Path, scan_id: str) -> Path:
    """A new folder for a scan: ``<scan_id>``, or ``<scan_id>-2``, ``-3`` ... when the same scan was streamed
    before (both are kept)."""
    data_dir = Path(data_dir)
    d = data_dir / scan_id
    n = 1
    while (d / "journal.jsonl").exists() or (d / "spool.mrsqc").exists():
        n += 1
        d = data_dir / f"{scan_id}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_journal(path: Path) -> tuple[ScanInfo | None, list[TransientQC], dict | None, int]:
    """(scan, results, summary record or None, number of unreadable lines) of a journal file."""
    scan, results, summary, _, bad = _read(path)
    return scan, results, summary, bad


def journal_start(path: Path) -> dict:
    """A journal's scan_start record: the checks' declarations and the provenance it recorded ({} for none or
    an unreadable journal)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rec = json.loads(f.readline())
        return rec if isinstance(rec, dict) and rec.get("record") == "scan_start" else {}
    except (OSError, ValueError):
        return {}


def _read(path: Path):
    scan, results, summary, verdicts, bad = None, [], None, [], 0
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
                elif kind == "verdict":
                    verdicts.append(rec)
            except (ValueError, KeyError, TypeError):
                bad += 1  # a torn last line after a crash
    return scan, results, summary, verdicts, bad


def old_verdicts(folder: Path) -> list[dict]:
    """The ``verdict`` records of a scan's journal (none when it has no readable journal)."""
    try:
        return _read(Path(folder) / "journal.jsonl")[3]
    except OSError:
        return []


def interrupted_summary(scan: ScanInfo, results: list[TransientQC], status: str, note: str,
                        verdicts: list[dict] | None = None, checks: list[dict] | None = None,
                        provenance: dict | None = None, extra: list | None = None) -> ScanSummary:
    """A summary built from journaled records only (no spool to re-run the engine on): counts, flags, each
    check's summary fields rebuilt as it declares (plugin_api.Recovered: the last running value, or a median),
    every finding of the last live verdict, and the interruption as one more reason; the verdict is the
    worst one the scan reached live (warn at least: the scan did not finish under QC)."""
    metab = [r for r in results if r.kind == METABOLITE]
    flagged = [r.index for r in results if not r.accepted]
    verdicts = verdicts or []
    findings = [f for f in verdict.from_records(verdicts[-1]["findings"] if verdicts else []) if f.key != "status"]
    findings += verdict.status_findings(status, len(results), len(metab), scan.planned_averages) + list(extra or [])
    decided, reasons = verdict.decide(findings, reached=[v["verdict"] for v in verdicts])
    return ScanSummary(
        scan_id=scan.scan_id, n_transients=len(results), n_metabolite=len(metab),
        n_water_ref=len(results) - len(metab), n_flagged=len(flagged), flagged_indices=flagged,
        fields=recovered_fields(checks or [], results), verdict=decided, reasons=reasons, status=status,
        notes=[note], details={"findings": verdict.as_records(findings)}, provenance=dict(provenance or {}))


def recovered_fields(checks: list[dict], results: list[TransientQC]) -> dict:
    """Each declared summary field from per-transient results (plugin_api.Recovered); None where a check
    declares no way to rebuild it."""
    def value(r: TransientQC, name: str):
        return r.fields[name] if name in r.fields else r.metrics.get(name)

    out = {}
    for check in checks:
        for name, spec in (check.get("summary") or {}).items():
            how = spec.get("recovered")
            out[name] = None
            if not how:
                continue
            rows = [r for r in results if r.kind == how["kind"]]
            if how["how"] == "median":
                vals = sorted(v for v in (value(r, how["source"]) for r in rows) if v is not None)
                out[name] = vals[len(vals) // 2] if vals else None
            elif rows:
                out[name] = value(rows[-1], how["source"])
    return out


def open_journals(data_dir: Path) -> list[Path]:
    """Folders in ``data_dir`` whose journal has no summary (a scan a stopped daemon left open), oldest
    first."""
    folders = []
    if not Path(data_dir).is_dir():
        return folders
    for path in Path(data_dir).glob("*/journal.jsonl"):
        try:
            scan, _, summary, _, _ = _read(path)
        except OSError as exc:
            log.error("journal %s unreadable: %s", path, exc)
            continue
        if summary is None and scan is not None:
            folders.append(path.parent)
    return sorted(folders, key=lambda p: (p / "journal.jsonl").stat().st_mtime)


def close_from_journal(folder: Path, status: str = "interrupted") -> ScanSummary | None:
    """Close an open scan from its journal alone (used when it has no usable spool)."""
    path = folder / "journal.jsonl"
    scan, results, summary, verdicts, bad = _read(path)
    if summary is not None or scan is None:
        return None
    note = "daemon stopped during the scan; summary rebuilt from the journal (no usable spool)"
    if bad:
        note += f" ({bad} torn line(s) skipped)"
    start = journal_start(path)
    s = interrupted_summary(scan, results, status, note, verdicts, list(start.get("checks") or []),
                            start.get("provenance"))
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"record": "summary", "summary": s.to_dict()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    write_outputs(folder, results, s)
    log.warning("closed interrupted scan %s from its journal (%d results)", scan.scan_id, len(results))
    return s
