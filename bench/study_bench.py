"""`mrsqc study` benchmark (issue 18): a folder of simulated scans checked by `mrsqc study` on all cores, against
checking them one by one with `mrsqc check --out` (what a user does without it) and against `mrsqc study
--jobs 1` (the same work in one process, no parallelism), all in one run; and the largest process's memory.

Scans: 8 simulated twix, 32 coils x 2048 points, 2x oversampling, 64 averages + 2 water references (1 MB per
transient, 66 MB per file): realistic sizes. Each variant writes every output (transients.jsonl, summary.json,
NIfTI-MRS, report.html). Memory: the peak RSS of the largest process each variant ran (getrusage of the
children, which counts the study's worker processes too). Appends its section to bench/RESULTS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results_file import write_section  # noqa: E402

from qc_daemon.simulate_files import write_simulation  # noqa: E402

N_SCANS = 8
MRSQC = [sys.executable, "-m", "qc_daemon.cli"]


PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(cmds: list[list[str]]) -> tuple[float, float]:
    """(wall s, peak RSS MB of the largest process) of running ``cmds`` one after the other; each command runs
    under a small wrapper whose children's peak is that command's alone (the study's workers included)."""
    t0 = time.perf_counter()
    peak = 0.0
    for cmd in cmds:
        out = subprocess.run([sys.executable, "-c", PEAK, *cmd], check=True, capture_output=True, text=True)
        peak = max(peak, int(out.stdout.split()[-1]) / 1024)
    return time.perf_counter() - t0, peak


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scans = Path(tmp) / "scans"
        for k in range(N_SCANS):
            write_simulation(scans, name=f"s{k}", averages=64, n_coils=32, n_points=2048, seed=10 + k)
        files = sorted(scans.glob("*.dat"))
        subprocess.run(MRSQC + ["check", str(files[0]), "-q"], check=True, stdout=subprocess.DEVNULL)  # warm caches
        one, rss_one = timed([MRSQC + ["check", str(f), "--out", f"{tmp}/one/{f.stem}", "-q"] for f in files])
        serial, rss_serial = timed([MRSQC + ["study", str(scans), "--out", f"{tmp}/serial", "--jobs", "1", "-q"]])
        par, rss_par = timed([MRSQC + ["study", str(scans), "--out", f"{tmp}/par", "-q"]])
        rerun, _ = timed([MRSQC + ["study", str(scans), "--out", f"{tmp}/par", "-q"]])
        size_mb = sum(f.stat().st_size for f in files) / 1e6
    cores = os.cpu_count()
    ratio = par / one
    lines = ["", "## Study (issue 18): `mrsqc study` on all cores vs one by one", "",
             f"`bench/study_bench.py`: {N_SCANS} simulated twix scans (32 coils x 2048 points, 2x oversampling, 64 "
             f"averages + 2 water references; {size_mb:.0f} MB in all), every output written (JSON, NIfTI-MRS, "
             f"report.html), {cores} cores, one run.", "",
             "| variant | wall (s) | vs one by one | largest process, peak RSS (MB) |", "|---|---|---|---|",
             f"| `mrsqc check --out` per scan, one after the other | {one:.1f} | 1.00 | {rss_one:.0f} |",
             f"| `mrsqc study --jobs 1` (one process, no parallelism) | {serial:.1f} | {serial / one:.2f} | "
             f"{rss_serial:.0f} |",
             f"| `mrsqc study` (all {cores} cores) | {par:.1f} | **{ratio:.2f}** | {rss_par:.0f} |",
             f"| `mrsqc study` again, nothing changed | {rerun:.1f} | {rerun / one:.2f} | - |", "",
             f"Target <= 0.6x the one-by-one time: **{ratio:.2f}x, {'met' if ratio <= 0.6 else 'NOT met'}**; "
             f"against the same work in one process ({serial:.1f} s) the parallel run is {par / serial:.2f}x "
             f"(ideal on {cores} cores: {1 / cores:.2f}). Memory: the study runs one process per core, each "
             "holding one scan at a time, so it holds at most as many scans as cores, and its largest process is "
             "about one `mrsqc check`'s size.", ""]
    text = "\n".join(lines)
    print(text)
    write_section("## Study (issue 18)", text)


if __name__ == "__main__":
    main()
