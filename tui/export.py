"""Export the shown scan's report: the same files `mrsqc check --out` writes, plus the text summary."""

from __future__ import annotations

import time
from pathlib import Path

from qc_daemon.model import ScanSummary, TransientQC
from qc_daemon.report import summary_text, write_outputs

from .scan_state import ScanState


def export_report(st: ScanState, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/mrsqc-<scan id>-<local time>/`` with transients.jsonl, summary.json, summary.txt.
    Mid-scan, the summary is the live one (``status`` "running"). Returns the folder."""
    if st.summary is None:
        raise ValueError("nothing to export yet: no summary (the first transients calibrate)")
    folder = Path(out_dir) / f"mrsqc-{st.scan_id[:12]}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = ScanSummary.from_dict(st.summary)
    write_outputs(folder, [TransientQC.from_dict(r) for r in st.results], summary)
    (folder / "summary.txt").write_text(summary_text(st.scan, summary, st.checks) + "\n")
    return folder
