"""Accuracy and speed benchmarks; writes bench/RESULTS.md. Run with `make bench` (installs suspect).

Accuracy (issue 2 condition): simulated scans, 32 coils x 2048 points (0.5 ms dwell), 128 averages,
per-transient NAA SNR 4, drift 2 Hz/min plus a slow sinusoid, residual water (15x NAA) whose phase random-walks,
two events of each corruption kind per scan; 6 seeds. SNR 3 and 5 are reported for context.
Speed: medians of repeated timings, compared as ratios measured in the same run.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as the mrsqc command does
    os.environ.setdefault(_var, "1")

import contextlib
import io
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scan_run import run_scan  # noqa: E402

from qc_daemon import kernels  # noqa: E402
from qc_daemon.engine import ScanQC  # noqa: E402
from qc_daemon.model import METABOLITE  # noqa: E402
from qc_daemon.sources.simulate import (  # noqa: E402
    SimulationParams,
    _voigt,
    default_events,
    metabolite_fid,
    naa_height,
    simulate_scan,
)

SEEDS = (1, 2, 3, 4, 5, 6)


def one_scan(seed: int, snr: float) -> dict:
    p = SimulationParams(n_coils=32, n_points=2048, averages=128, naa_snr=snr, seed=seed,
                         events=default_events(128, np.random.default_rng(seed + 100)))
    sim, _, res, summary, per_ms, truth = run_scan(p)
    nc = set(summary.noncausal_flagged_indices)
    metab = [r for r in res if r.kind == METABOLITE]
    clean = [r for r in metab if not truth[r.index]["corrupted"]]
    bad = [r for r in metab if truth[r.index]["corrupted"]]
    err = np.array([r.freq_hz - truth[r.index]["freq_hz"] for r in clean])
    trend = np.array([r.metrics["freq_trend_hz"] - truth[r.index]["freq_hz"] for r in clean
                      if r.metrics.get("freq_trend_hz") is not None])
    n_acc = metab[-1].metrics["n_accepted_set"]
    snr_truth = p.naa_snr * sim.truth["snr_running_truth_factor"] * math.sqrt(n_acc)
    by_kind: dict[str, list[bool]] = {}
    for r in bad:
        by_kind.setdefault(truth[r.index]["event"], []).append(not r.accepted)
    return {"seed": seed, "snr": snr, "freq_rmse_hz": float(np.sqrt(np.mean(err ** 2))),
            "trend_rmse_hz": float(np.sqrt(np.mean(trend ** 2))),
            "found": sum(not r.accepted for r in bad), "n_bad": len(bad),
            "false": sum(not r.accepted for r in clean), "n_clean": len(clean), "by_kind": by_kind,
            "nc_found": sum(r.index in nc for r in bad), "nc_false": sum(r.index in nc for r in clean),
            "water_fwhm_err_hz": abs(summary.fwhm_water_hz - p.water_lw_hz),
            "snr_rel_err": (summary.snr_final - snr_truth) / snr_truth, "ms_per_transient": per_ms}


def crlb_hz(snr: float = 4.0) -> tuple[float, float]:
    """Cramer-Rao bound on a single transient's frequency (unknown complex amplitude, perfect template) for the
    simulated spectrum at per-transient NAA SNR ``snr``: (all metabolites + MM, NAA singlet alone)."""
    p = SimulationParams(n_points=2048, dwell_s=0.5e-3)
    t = np.arange(p.n_points) * p.dwell_s
    m = metabolite_fid(p, t)
    var = 2.0 * (naa_height(m, p) / snr / math.sqrt(p.n_points)) ** 2  # complex noise variance per point

    def bound(r: np.ndarray) -> float:
        w = np.abs(r) ** 2
        spread = (t ** 2 * w).sum() - (t * w).sum() ** 2 / w.sum()
        return math.sqrt(var / (2 * 4 * math.pi ** 2 * spread))

    naa = _voigt(t, 2.008, 30.0, p.metab_lw_hz, p.metab_gauss_hz, p.f0_hz / 1e6)
    return bound(m), bound(naa)


def speed_vs_suspect(repeats: int = 5) -> tuple[float, float | None]:
    """Median seconds: full per-transient QC (32 coils x 2048, combination + all checks) vs suspect's
    spectral_registration of the same coil-combined transient against the same reference."""
    p = SimulationParams(n_coils=32, n_points=2048, averages=40, naa_snr=4.0, seed=9, events=[])
    sim = simulate_scan(p)
    qc = ScanQC(sim.scan)
    for t in sim.transients[:20]:
        qc.process(t)
    timed = sim.transients[20:]
    ours = []
    for _ in range(repeats):  # the same transients again: the state keeps growing, the work per call is alike
        t0 = time.perf_counter()
        for t in timed:
            qc.process(t)
        ours.append((time.perf_counter() - t0) / len(timed))
    try:
        import suspect
        from suspect.processing.frequency_correction import spectral_registration
    except ImportError:
        return statistics.median(ours), None
    fids = [qc.combine(t).fid for t in sim.transients]
    target = suspect.MRSData(np.mean(fids[:8], axis=0), sim.scan.dwell_s, sim.scan.f0_mhz)
    data = [suspect.MRSData(f, sim.scan.dwell_s, sim.scan.f0_mhz) for f in fids[20:30]]
    theirs = []
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max(1, repeats // 2)):
            t0 = time.perf_counter()
            for d in data:
                spectral_registration(d, target)
            theirs.append((time.perf_counter() - t0) / len(data))
    return statistics.median(ours), statistics.median(theirs)


def check_vs_twixtools(repeats: int = 7) -> tuple[float, float]:
    """Median seconds: twixtools reading a 128-average 32-coil twix (protocol + every data block) vs
    `mrsqc check` of the same file (kernels warmed, both libraries imported beforehand)."""
    import twixtools

    from qc_daemon.check import run_check
    from qc_daemon.simulate_files import write_simulation

    with tempfile.TemporaryDirectory() as d:
        with contextlib.redirect_stdout(io.StringIO()):
            path = write_simulation(Path(d), name="big", averages=128, n_coils=32, n_points=2048, seed=4)[0]
        run_check(path)  # page cache and first-call effects for both
        t_read, t_check = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                scans = twixtools.read_twix(str(path), verbose=False, parse_pmu=False, parse_geometry=False)
            _ = [m.data for m in scans[-1]["mdb"] if m.is_image_scan()]
            t_read.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_check(path)
            t_check.append(time.perf_counter() - t0)
    spans = (min(t_read), max(t_read)), (min(t_check), max(t_check))
    return statistics.median(t_read), statistics.median(t_check), *spans


def warm_up_cached_s() -> float:
    """Seconds kernels.warm_up() takes in a fresh process once the numba cache exists."""
    code = "import time; t=time.perf_counter(); from qc_daemon import kernels; kernels.warm_up(); " \
           "print(time.perf_counter()-t)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    kernels.warm_up()
    # speed first, while the process is fresh; then accuracy (same run)
    t_read, t_check, read_span, check_span = check_vs_twixtools()
    ours, theirs = speed_vs_suspect()
    rows = {snr: [one_scan(s, snr) for s in SEEDS] for snr in (4.0, 3.0, 5.0)}
    b_all, b_naa = crlb_hz(4.0)
    warm = warm_up_cached_s()

    def pooled(rs, key_n, key_d):
        return sum(r[key_n] for r in rs) / sum(r[key_d] for r in rs)

    def rms(rs, key):
        return math.sqrt(statistics.mean(r[key] ** 2 for r in rs))

    out = ["# mrsqc benchmark results", "",
           f"Generated by `bench/run_all.py` (`make bench`) on {platform.machine()}, Python "
           f"{platform.python_version()}, 2 shared cores. Timings are medians of repeats within one run; compare "
           "them as ratios.", "",
           "## Accuracy (issue 2 condition)", "",
           "32 coils x 2048 points, 128 averages, per-transient NAA SNR 4, drift 2 Hz/min + 0.5 Hz slow sinusoid, "
           "residual water 15x NAA with random-walk phase, 2 events of each kind per scan (frequency jump 6-10 Hz, "
           "phase 45-90 deg with 45-70 % amplitude loss, lipid 2-6x NAA, broadening 10-16 Hz), seeds "
           f"{SEEDS[0]}-{SEEDS[-1]}.", "",
           "| seed | freq RMSE single-shot (Hz) | freq RMSE trend (Hz) | events found | false flags | "
           "water FWHM error (Hz) | running SNR error | ms/transient |", "|---|---|---|---|---|---|---|---|"]
    for r in rows[4.0]:
        out.append(f"| {r['seed']} | {r['freq_rmse_hz']:.3f} | {r['trend_rmse_hz']:.3f} | {r['found']}/{r['n_bad']} | "
                   f"{r['false']}/{r['n_clean']} | {r['water_fwhm_err_hz']:.2f} | {r['snr_rel_err']:+.1%} | "
                   f"{r['ms_per_transient']:.2f} |")
    r4 = rows[4.0]
    kinds: dict[str, list[bool]] = {}
    for r in r4:
        for k, v in r["by_kind"].items():
            kinds.setdefault(k, []).extend(v)
    out += ["", "| summary (SNR 4, all seeds) | value | target | met |", "|---|---|---|---|",
            f"| frequency RMSE, smoothed trend (`freq_trend_hz`) | {rms(r4, 'trend_rmse_hz'):.3f} Hz | <= 0.3 Hz | "
            f"{'yes' if rms(r4, 'trend_rmse_hz') <= 0.3 else 'NO'} |",
            f"| frequency RMSE, single shot (`freq_hz`) | {rms(r4, 'freq_rmse_hz'):.3f} Hz | <= 0.3 Hz | "
            + ("yes |" if rms(r4, 'freq_rmse_hz') <= 0.3 else f"NO (metabolite bound {b_all:.2f} Hz, see below) |"),
            f"| sensitivity, causal | {pooled(r4, 'found', 'n_bad'):.3f} | >= 0.95 | "
            f"{'yes' if pooled(r4, 'found', 'n_bad') >= 0.95 else 'NO'} |",
            f"| false flags, causal (clean transients) | {pooled(r4, 'false', 'n_clean'):.2%} | <= 1 % | "
            f"{'yes' if pooled(r4, 'false', 'n_clean') <= 0.01 else 'NO'} |",
            f"| false flags, end-of-scan pass | {pooled(r4, 'nc_false', 'n_clean'):.2%} | <= 1 % | "
            f"{'yes' if pooled(r4, 'nc_false', 'n_clean') <= 0.01 else 'NO'} |",
            f"| sensitivity, end-of-scan pass | {pooled(r4, 'nc_found', 'n_bad'):.3f} | >= 0.95 | "
            f"{'yes' if pooled(r4, 'nc_found', 'n_bad') >= 0.95 else 'NO'} |",
            f"| water FWHM error (max) | {max(r['water_fwhm_err_hz'] for r in r4):.2f} Hz | within 1 Hz | "
            f"{'yes' if max(r['water_fwhm_err_hz'] for r in r4) <= 1 else 'NO'} |",
            f"| running SNR error (max abs) | {max(abs(r['snr_rel_err']) for r in r4):.1%} | within 10 % | "
            f"{'yes' if max(abs(r['snr_rel_err']) for r in r4) <= 0.1 else 'NO'} |", "",
            "Sensitivity by event kind (SNR 4): " + ", ".join(
                f"{k} {sum(v)}/{len(v)}" for k, v in sorted(kinds.items())), "",
            "Other SNRs (pooled over the same seeds):", "",
            "| NAA SNR | single-shot RMSE (Hz) | trend RMSE (Hz) | sensitivity | false flags |",
            "|---|---|---|---|---|"]
    for snr in (3.0, 4.0, 5.0):
        rs = rows[snr]
        out.append(f"| {snr:g} | {rms(rs, 'freq_rmse_hz'):.3f} | {rms(rs, 'trend_rmse_hz'):.3f} | "
                   f"{pooled(rs, 'found', 'n_bad'):.3f} | {pooled(rs, 'false', 'n_clean'):.2%} |")
    out += ["", "### The single shot in this condition", "",
            f"The Cramer-Rao bound for one transient's frequency from the metabolites alone (complex amplitude "
            f"unknown, noise-free template, whole FID) is **{b_all:.3f} Hz** for this spectrum (all metabolites and "
            f"macromolecules) and {b_naa:.3f} Hz for the NAA singlet alone (computed in this run, `crlb_hz`). This "
            "condition's residual water does not follow B0 (its apparent frequency is off by 1 Hz SD per "
            "transient, its amplitude +-40 %, its phase random-walking 25 deg: the simulator's default, a badly "
            "suppressed, distorted line), so the water fit adds little here and the three-cornered hat weights "
            "it down; where the residual water follows B0, the single shot reaches ~0.15 Hz at 10x and ~0.05 Hz at "
            "30x NAA (issue 14 section below, with the bound of that model). The 0.3 Hz target of this table is "
            f"{'met' if rms(rows[4.0], 'trend_rmse_hz') <= 0.3 else 'NOT met'} by the causal trend "
            f"({rms(rows[4.0], 'trend_rmse_hz'):.3f} Hz), which the drift display and drift flags use.", "",
            "## Speed", "",
            f"- full per-transient QC, 32 coils x 2048 points (coil combination + registration + every check): "
            f"**{ours * 1e3:.2f} ms**",
            "- suspect `spectral_registration` of the same (already coil-combined) transient: " + (
                f"**{theirs * 1e3:.1f} ms** -> mrsqc is **{theirs / ours:.0f}x** faster (target >= 100x)"
                if theirs else "suspect not installed (`make bench` installs it)"),
            f"- `mrsqc check` of a 128-average 32-coil twix: **{t_check:.3f} s** (range {check_span[0]:.3f}-"
            f"{check_span[1]:.3f}); twixtools reading the same file's protocol and every data block: {t_read:.3f} s "
            f"(range {read_span[0]:.3f}-{read_span[1]:.3f}) -> ratio of medians **{t_check / t_read:.2f}** "
            "(target < 2; 7 interleaved repeats)",
            f"- numba kernels: `warm_up()` in a fresh process with the on-disk cache: {warm:.2f} s (compiled once, "
            "`cache=True`; a test asserts that a full check after warm-up compiles nothing new)"]
    import architecture
    import formats
    import freq_phase
    import lipid_seeds
    import water_dominated

    out += ["", lipid_seeds.main().rstrip("\n"), "", water_dominated.main().rstrip("\n"), "",
            freq_phase.main().rstrip("\n"), "", architecture.main().rstrip("\n"), "", formats.main().rstrip("\n")]
    results = ROOT / "bench" / "RESULTS.md"
    prev = results.read_text() if results.exists() else ""
    keep = prev[prev.index("\n## Daemon (issue"):] if "\n## Daemon (issue" in prev else ""  # daemon/UI benches
    results.write_text("\n".join(out) + "\n" + keep)
    print("\n".join(out))


if __name__ == "__main__":
    main()
