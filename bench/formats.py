"""Issue 16 (every vendor in): what reading a format costs. `mrsqc check` of a NIfTI-MRS file against nibabel's own
load of the same file (header + every data point; target <= 2x), at realistic size and on the in-vivo file; and
the Philips SDAT decode that mrsqc vectorised against spec2nii's own. Writes a Markdown section to stdout
(bench/run_all.py puts it in RESULTS.md)."""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPEATS = 7
INVIVO = ROOT.parent / "shared" / "data" / "real" / "invivo_7t_steam" / "metab_raw.nii.gz"


def _nibabel_load(path: Path) -> None:
    import nibabel as nib

    img = nib.load(str(path))
    np.asanyarray(img.dataobj)


def _interleaved(a, b) -> tuple[list[float], list[float]]:
    """Seconds of a() and b(), alternating, after one untimed call of each (page cache, first-call effects)."""
    a(), b()
    ta, tb = [], []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return ta, tb


def _line(what: str, path: Path) -> str:
    from qc_daemon.check import run_check
    from qc_daemon.sources.open import open_recording

    t_load, t_check = _interleaved(lambda: _nibabel_load(path), lambda: run_check(path))
    _, t_read = _interleaved(lambda: None, lambda: open_recording(path))
    ml, mc, mr = statistics.median(t_load), statistics.median(t_check), statistics.median(t_read)
    return (f"{what}: `mrsqc check` **{mc:.3f} s** (range {min(t_check):.3f}-{max(t_check):.3f}); nibabel's "
            f"load of the same file (header + `dataobj`): {ml:.3f} s (range {min(t_load):.3f}-{max(t_load):.3f}) "
            f"-> ratio of medians **{mc / ml:.2f}** (target <= 2; {REPEATS} interleaved repeats). mrsqc's read "
            f"alone (header, data into transients, the water test): {mr:.3f} s ({mr / ml:.2f}x the load); the QC "
            f"of its transients is the rest, {mc - mr:.3f} s")


def _sdat_line(d: Path) -> str:
    from spec2nii.Philips import philips

    from qc_daemon.simulate_files import write_simulation
    from qc_daemon.sources.open import open_recording
    from qc_daemon.sources.vendor_write import vax_to_ieee

    with contextlib.redirect_stdout(io.StringIO()):
        write_simulation(d, name="p", formats="sdat", averages=240, n_coils=1, n_points=2048, seed=3, events=False)
    raw = (d / "p.SDAT").read_bytes()
    t0 = time.perf_counter()
    theirs = np.asarray(philips._vax_to_ieee_single_float(raw), dtype=np.float32)
    t_theirs = time.perf_counter() - t0
    t_ours = min(_interleaved(lambda: vax_to_ieee(raw), lambda: None)[0])
    same = np.array_equal(theirs, vax_to_ieee(raw))
    t_read = statistics.median(_interleaved(lambda: open_recording(d / "p.SDAT"), lambda: None)[0])
    return (f"Philips SDAT, 240 transients x 2048 points: spec2nii's VAX decoder {t_theirs:.2f} s, mrsqc's "
            f"vectorised one {t_ours * 1e3:.1f} ms ({'equal value for value' if same else 'NOT EQUAL'}); the whole "
            f"read through spec2nii with it: {t_read:.3f} s")


def main() -> str:
    from qc_daemon import kernels
    from qc_daemon.simulate_files import write_simulation

    kernels.warm_up()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            write_simulation(d, name="big", formats="nifti", averages=128, n_coils=32, n_points=2048, seed=4)
        size = (d / "big.nii.gz").stat().st_size / 1e6
        lines.append(_line(f"NIfTI-MRS, 32 coils x 2048 points x 128 transients ({size:.0f} MB gzipped)",
                           d / "big.nii.gz"))
        if INVIVO.is_file():
            lines.append(_line("the in-vivo 7T file (4 coils x 4096 x 16, 1 MB)", INVIVO))
        lines.append(_sdat_line(d))
    return ("## Every vendor in (issue 16): reading costs\n\n" + "\n".join(f"- {x}" for x in lines) + "\n")


if __name__ == "__main__":
    print(main())
