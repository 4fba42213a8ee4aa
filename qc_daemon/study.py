"""``mrsqc study DIR_OR_FILES... --out DIR``: every scan under the folders, checked in parallel, one row each.

Discovery (:func:`discover`): twix, MRS DICOM (a folder whose DICOM files are one series is one scan),
NIfTI-MRS, MRD HDF5, Philips SDAT/SPAR and DATA/LIST, Siemens RDA, GE P-files, Bruker folders; found by
content as ``mrsqc check`` finds them (sources/open.py). A folder of saved results (summary.json: a daemon scan
folder, a ``check --out`` folder) is a row from those results, not checked again, so a supervisor can review a
day's live scans with ``mrsqc study DATA_DIR``; a study's own output folders are skipped. Water references
are paired when the layout leaves no doubt (:func:`pair_water`): ``NAME`` + ``NAME_wref`` (or ``_water``,
``_ref``, ``_mrsref``, ``_h2o``) of the same format in one folder, or a folder holding exactly one metabolite file
and one water file whose names differ in one such word (``metab_raw`` / ``wref_raw``); any other file is checked as its
own scan, and a water-only one's row says it was not paired.

Each scan is checked by a worker process (as many as cores, ``--jobs``): memory holds that many scans at most.
Its outputs (`check --out`'s: transients.jsonl, summary.json, report.html, NIfTI-MRS) go to ``OUT/scans/<name>/``
with ``study_key.json`` (the input files' sizes and modification times, the config digest, mrsqc's version):
a re-run skips a scan whose key is unchanged (``--force`` re-checks). A file that cannot be read is a row with
its error. Columns of study.tsv: :data:`BASE_COLUMNS`, then every summary value a check declares with a label
(their names carry the unit), then verdict, reasons, status, report, error (docs/results.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .model import METABOLITE

WATER_WORDS = ("wref", "water", "ref", "mrsref", "h2o")
STUDY_MARKERS = ("study.tsv", "study_key.json")  # a study's own output folders: never searched
RESULT_MARKER = "summary.json"  # a daemon scan folder or a check --out folder: its saved results are the row
SKIP_SUFFIXES = {".json", ".jsonl", ".tsv", ".html", ".png", ".svg", ".txt", ".md", ".py", ".csv", ".log",
                 ".spar", ".list", ".tmp", ".toml"}
BASE_COLUMNS = ("file", "water_file", "sequence", "te_ms", "tr_ms", "n_transients", "n_metabolite", "n_water_ref",
                "n_flagged", "n_excluded")
TAIL_COLUMNS = ("verdict", "reasons", "status", "notes", "report", "error")
ERROR = "error"  # the verdict column of a row whose file could not be checked


@dataclass
class Scan:
    """One scan to check: ``name`` (its output folder), ``path``, the paired ``water`` or None."""

    name: str
    path: Path
    water: Path | None = None


@dataclass
class Row:
    values: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False  # unchanged since the last run: taken from its saved outputs


# ---------------------------------------------------------------------------------------------- discovery
def _series(path: Path) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        return str(getattr(ds, "SeriesInstanceUID", "") or path.name)
    except Exception:  # noqa: BLE001  (the check reports an unreadable file)
        return path.name


def _candidate(path: Path) -> Path | None:
    """``path`` itself when it is a recording mrsqc reads (cheap checks: signature, suffix), else None."""
    from .sources.nifti_mrs import is_nifti
    from .sources.open import HDF5_SIGNATURE
    from .sources.spec2nii_formats import detect
    from .sources.twix import is_twix

    name = path.name.lower()
    if name.startswith(".") or path.suffix.lower() in SKIP_SUFFIXES or name.endswith(".truth.json"):
        return None
    try:
        if path.stat().st_size == 0:
            return path  # an empty file is a row with its error
        if is_nifti(path) or is_twix(path):
            return path
        with open(path, "rb") as f:
            if f.read(8) == HDF5_SIGNATURE:
                return path
        fmt = detect(path)
    except Exception:  # noqa: BLE001  (a format's own check failed: not a recording we know)
        return None
    return path if fmt is not None and Path(fmt.main) == path else None


def _walk(root: Path, found: list[Path]) -> None:
    from .sources.spec2nii_formats import detect

    if any((root / m).exists() for m in STUDY_MARKERS):
        return  # a study's own outputs
    if (root / RESULT_MARKER).is_file():
        found.append(root)  # saved results (a day's live scans in the daemon's folder): a row, not re-checked
        return
    try:
        if detect(root) is not None:  # a Bruker folder is one scan
            found.append(root)
            return
        entries = sorted(root.iterdir())
    except (OSError, Exception):  # noqa: BLE001
        return
    files = [p for p in entries if p.is_file()]
    from .sources.open import looks_like_dicom

    dicoms = [p for p in files if looks_like_dicom(p)]
    if dicoms:
        series = {}
        for p in dicoms:
            series.setdefault(_series(p), []).append(p)
        if len(series) == 1 and len(dicoms) > 1:
            found.append(root)  # one series of per-transient files: the folder is the scan
        else:
            found.extend(dicoms)
    for p in files:
        if p not in dicoms and (c := _candidate(p)) is not None:
            found.append(c)
    for d in entries:
        if d.is_dir() and not d.is_symlink():
            _walk(d, found)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dat", ".twix", ".sdat", ".data", ".rda", ".h5", ".dcm", ".ima", ".7"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _format_key(path: Path) -> str:
    return "dir" if path.is_dir() else path.name[len(_stem(path)):].lower()


def _words(stem: str) -> list[str]:
    """Name words split at '_' and '.' (not '-': BIDS writes ``ref-1``, ``seq-svsse`` as one entity)."""
    return [w for w in re.split(r"[_.]", stem.lower()) if w]


def is_water_name(path: Path) -> bool:
    return any(w in WATER_WORDS for w in _words(_stem(path)))


def pair_water(paths: list[Path]) -> list[Scan]:
    """Scans with their water reference where the layout is unambiguous (module docstring)."""
    by_dir: dict[Path, list[Path]] = {}
    for p in paths:
        by_dir.setdefault(p.parent, []).append(p)
    out: list[Scan] = []
    for items in by_dir.values():
        used: set[Path] = set()
        pairs: dict[Path, Path] = {}
        for p in items:
            stem = _stem(p)
            for suffix in WATER_WORDS:
                for sep in ("_", "-"):
                    partner = [q for q in items if q != p and _stem(q).lower() == f"{stem}{sep}{suffix}".lower()
                               and _format_key(q) == _format_key(p)]
                    if partner and p not in used:
                        pairs[p] = partner[0]
                        used |= {p, partner[0]}
        rest = [p for p in items if p not in used]
        water = [p for p in rest if is_water_name(p)]
        metab = [p for p in rest if not is_water_name(p)]
        if len(water) == 1 and len(metab) == 1 and _format_key(water[0]) == _format_key(metab[0]):
            mw, ww = _words(_stem(metab[0])), _words(_stem(water[0]))
            diff = [(a, b) for a, b in zip(mw, ww) if a != b]
            if len(mw) == len(ww) and len(diff) == 1 and diff[0][1] in WATER_WORDS:
                pairs[metab[0]] = water[0]
                used |= {metab[0], water[0]}
        for p in items:
            if p in pairs:
                out.append(Scan("", p, pairs[p]))
            elif p not in used:
                out.append(Scan("", p, None))
    return out


def discover(inputs: Iterable[str | Path]) -> list[Scan]:
    """Every scan under ``inputs`` (files or folders), water paired, each with a unique output name."""
    found: list[Path] = []
    roots: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            roots.append(p)
            _walk(p, found)
        else:
            roots.append(p.parent)
            found.append(p)
    seen: set[Path] = set()
    unique = [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]
    scans = pair_water(unique)
    names: set[str] = set()
    for s in scans:
        rel = _relative(s.path, roots)
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", rel.replace(os.sep, "__")).strip("_") or "scan"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        s.name = name
    return sorted(scans, key=lambda s: s.name)


def _relative(path: Path, roots: list[Path]) -> str:
    for r in roots:
        try:
            return str(path.resolve().relative_to(r.resolve()))
        except ValueError:
            continue
    return path.name


# ---------------------------------------------------------------------------------------------- checking
def _identity(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return {"files": len(files), "digest": h.hexdigest()[:16]}


def study_key(scan: Scan, config_digest: str) -> dict[str, Any]:
    from . import __version__

    return {"input": _identity(scan.path), "water": _identity(scan.water), "config_digest": config_digest,
            "version": __version__}


def summary_columns(checks: list[dict]) -> list[str]:
    """The labelled summary values the checks declare (names with their unit), in declaration order."""
    from .display import summary_labels

    return list(summary_labels(checks))


def row_from(scan: Scan, summary: dict, results: list[dict], scan_info: dict, columns: list[str],
             report: str) -> dict[str, Any]:
    row = {"file": str(scan.path), "water_file": str(scan.water or ""), "sequence": scan_info.get("sequence", ""),
           "te_ms": scan_info.get("te_ms"), "tr_ms": scan_info.get("tr_ms"),
           "n_transients": summary["n_transients"], "n_metabolite": summary["n_metabolite"],
           "n_water_ref": summary["n_water_ref"], "n_flagged": summary["n_flagged"],
           "n_excluded": sum(1 for r in results if not r["accepted"] and r["kind"] == METABOLITE)}
    row.update({c: summary.get(c) for c in columns})
    notes = []
    if summary.get("scan_kind") == "water-only" and not scan.water:
        notes.append("a water-only scan, not paired with a metabolite scan (no unambiguous partner by name)")
    row.update({"verdict": summary["verdict"], "reasons": "; ".join(summary.get("reasons") or []),
                "status": summary.get("status", ""), "notes": "; ".join(notes), "report": report, "error": ""})
    return row


def check_one(scan: Scan, out_root: str, config_path: str | None, force: bool) -> Row:
    """Check one scan into OUT/scans/<name>/ (a worker's job); never raises for a bad input."""
    from .check import run_check, write_report
    from .config import load_config
    from .errors import InputError
    from .nifti_out import write_nifti_outputs
    from .provenance import config_digest
    from .report import write_outputs
    from .tracking import FilterParams

    folder = Path(out_root) / "scans" / scan.name
    report = f"scans/{scan.name}/report.html"
    if scan.path.is_dir() and (scan.path / RESULT_MARKER).is_file():
        return _saved(scan, folder, report)
    try:
        config = load_config(config_path)
        key = study_key(scan, config_digest(config))
        saved = folder / "study_key.json"
        if not force and saved.is_file() and json.loads(saved.read_text()) == key and \
                (folder / "study_row.json").is_file():
            return Row(json.loads((folder / "study_row.json").read_text()), skipped=True)
        run = run_check(scan.path, water=scan.water, config=config)
        folder.mkdir(parents=True, exist_ok=True)
        saved.unlink(missing_ok=True)
        write_outputs(folder, run.results, run.summary)
        write_nifti_outputs(folder, run.scan, run.results, run.acquired, run.summary.provenance,
                            FilterParams.from_config(run.config["tracking"]))
        write_report(folder, run.scan, run.results, run.summary, run.checks, run.acquired, run.config, run.limits,
                     run.noise_sd)
        row = row_from(scan, run.summary.to_dict(), [r.to_dict() for r in run.results], run.scan.to_dict(),
                       summary_columns(run.checks), report)
        (folder / "study_row.json").write_text(json.dumps(row))
        saved.write_text(json.dumps(key))
        return Row(row)
    except InputError as exc:
        error = exc.reason
    except Exception as exc:  # noqa: BLE001  (one scan's failure is its row, never the end of the study)
        error = f"internal error: {type(exc).__name__}: {exc}"
    return Row({"file": str(scan.path), "water_file": str(scan.water or ""), "verdict": ERROR, "error": error})


def _saved(scan: Scan, folder: Path, report: str) -> Row:
    """The row of a folder of saved results (a daemon scan folder, a check --out folder): its summary and
    results as saved, its report copied (or drawn from them); nothing is re-checked."""
    from .html_report import render
    from .report_data import load

    try:
        data = load(scan.path)
        folder.mkdir(parents=True, exist_ok=True)
        page = scan.path / "report.html"
        (folder / "report.html").write_text(page.read_text(encoding="utf-8") if page.is_file() else render(data),
                                            encoding="utf-8")
        row = row_from(scan, data["summary"], data["results"], data["scan"], summary_columns(data["checks"]),
                       report)
        row["notes"] = "; ".join(x for x in (row["notes"], "saved results (not re-checked)") if x)
        return Row(row)
    except (OSError, ValueError, KeyError) as exc:
        return Row({"file": str(scan.path), "verdict": ERROR, "error": f"unreadable saved results ({exc})"})


# ---------------------------------------------------------------------------------------------- the study
def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v).replace("\t", " ").replace("\n", " ")


def write_tsv(path: Path, rows: list[dict], columns: list[str]) -> None:
    lines = ["\t".join(columns)] + ["\t".join(_fmt(r.get(c)) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def progress_line(done: int, total: int, elapsed: float, last: str) -> str:
    """``[####......] 12/70 scans, 2m05s elapsed, ETA 10m03s; last: NAME PASS``."""
    width = 24
    fill = int(width * done / max(total, 1))
    eta = elapsed / done * (total - done) if done else float("nan")

    def mmss(s: float) -> str:
        return "?" if s != s else f"{int(s // 60)}m{int(s % 60):02d}s"

    return f"[{'#' * fill}{'.' * (width - fill)}] {done}/{total} scans, {mmss(elapsed)} elapsed, ETA {mmss(eta)}; " \
           f"last: {last}"


def run_study(inputs: list[str], out: Path, jobs: int | None = None, config_path: str | None = None,
              force: bool = False, on_progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[str]]:
    """Discover, check in parallel, write study.tsv and index.html; returns (rows, columns)."""
    from .study_index import write_index

    scans = discover(inputs)
    out.mkdir(parents=True, exist_ok=True)
    jobs = max(1, jobs or os.cpu_count() or 1)
    rows: dict[str, Row] = {}
    t0 = time.monotonic()
    if scans:
        with ProcessPoolExecutor(max_workers=min(jobs, len(scans))) as pool:
            futures = {pool.submit(check_one, s, str(out), config_path, force): s for s in scans}
            for fut in as_completed(futures):
                s = futures[fut]
                try:
                    rows[s.name] = fut.result()
                except Exception as exc:  # noqa: BLE001  (a worker that died: its row says so)
                    rows[s.name] = Row({"file": str(s.path), "verdict": ERROR,
                                        "error": f"worker failed: {type(exc).__name__}: {exc}"})
                if on_progress:
                    r = rows[s.name].values
                    last = f"{s.name} {r.get('verdict', '?').upper()}" + (" (unchanged)" if rows[s.name].skipped
                                                                            else "")
                    on_progress(progress_line(len(rows), len(scans), time.monotonic() - t0, last))
    ordered = [rows[s.name].values | {"scan": s.name} for s in scans]
    extra: list[str] = []
    for r in ordered:
        for k in r:
            if k not in BASE_COLUMNS and k not in TAIL_COLUMNS and k != "scan" and k not in extra:
                extra.append(k)
    columns = ["scan", *BASE_COLUMNS, *extra, *TAIL_COLUMNS]
    write_tsv(out / "study.tsv", ordered, columns)
    write_index(out / "index.html", ordered, columns)
    (out / "study.json").write_text(json.dumps({"scans": [asdict(s) | {"path": str(s.path),
                                                                        "water": str(s.water or "")} for s in scans],
                                                "columns": columns}, indent=1))
    return ordered, columns


def stderr_progress(line: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line[:160].ljust(160))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
