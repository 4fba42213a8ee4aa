"""Per-transient frequency and phase against the information limit (issue 14).

Cases: 32 coils x 2048 points (0.5 ms), 128 averages, per-transient NAA SNR 4, true per-transient jitter 0.15 Hz;
- clean: no drift;
- drift: 2.5 Hz/min + 0.5 Hz slow sinusoid + gradient-heating exponential 4 Hz (tau 60 s): ~12 Hz in all;
- motion: 2 Hz/min drift + 2 events of each corruption kind (jumps 6-10 Hz, phase 45-90 deg with 45-70 %
  amplitude loss, lipid 2-6x NAA, broadening 10-16 Hz);
- mega: the motion case's drift, edited (ON/OFF interleaved: NAA 0.3x and GABA inverted in ON), no events;
- capture: 4 Hz/min + the 4 Hz exponential (~21 Hz in all) and frequency jumps of +-12 and +-15 Hz besides the
  motion events (the capture range kept);
each with residual water 0 (perfect suppression), 10x and 30x the NAA amplitude (its peak 6.7x / 20x the NAA
peak), following B0 exactly, its phase wandering within +-20 deg and its amplitude within +-10 %; and a
"distorted water" case (10x, its apparent frequency off B0 by 1 Hz SD per transient) for the fallback (its
bound counts the water's B0 information with that 1 Hz^2 added, see ``bound_hz``).

Bound: Cramer-Rao for one transient's frequency with the estimator's model (metabolites in the registration
band, residual water in the water-fit band, one common frequency, each with its own free complex amplitude,
noise-free templates), plus the zero point: 0 Hz is the mean of the first 8 transients, itself known only
to bound / sqrt(8), so bound_total = bound x sqrt(1 + 1/8). suspect's spectral_registration and RATS
align the same coil-combined transients to the same target (mean of the first 8), search starting at 0 Hz,
over 1.8-5.1 ppm (metabolites and water), seed 1 of each case.
Writes a Markdown section to stdout (bench/run_all.py puts it in RESULTS.md).
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from scan_run import run_scan

from qc_daemon.config import load_config
from qc_daemon.engine import ScanQC
from qc_daemon.model import METABOLITE
from qc_daemon.sources.simulate import (
    Event,
    SimulationParams,
    default_events,
    metabolite_fid,
    naa_height,
)

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "9f2e463"  # the last commit before the water fit and the frequency filter (issue 14's "today")
SEEDS = (1, 2, 3)
WATER = (0.0, 10.0, 30.0)
KINDS = ("clean", "drift", "motion", "capture")


def params(kind: str, water: float, seed: int) -> SimulationParams:
    p = SimulationParams(n_coils=32, n_points=2048, averages=128, naa_snr=4.0, seed=seed, freq_jitter_hz=0.15,
                         residual_water=water, residual_water_freq_sd_hz=0.0, residual_water_amp_jitter=0.1,
                         residual_water_phase_step_deg=8.0, residual_water_phase_limit_deg=20.0, events=[])
    if kind == "clean":
        return replace(p, drift_hz_per_min=0.0, drift_curvature_hz=0.0)
    if kind == "drift":
        return replace(p, drift_hz_per_min=2.5, drift_thermal_hz=4.0, drift_thermal_tau_s=60.0)
    if kind == "capture":
        rng = np.random.default_rng(seed + 100)
        events = default_events(128, rng, start=20)
        taken = {e.index for e in events}
        extra = [int(i) for i in rng.choice([i for i in range(14, 128) if i not in taken], 4, replace=False)]
        events += [Event(i, "freq_jump", v) for i, v in zip(sorted(extra), (12.0, -12.0, 15.0, -15.0))]
        return replace(p, drift_hz_per_min=4.0, drift_thermal_hz=4.0, drift_thermal_tau_s=60.0,
                       events=sorted(events, key=lambda e: e.index))
    if kind == "mega":
        return replace(p, drift_hz_per_min=2.0, mega=True)
    if kind == "distorted":
        return replace(p, drift_hz_per_min=2.0, residual_water_freq_sd_hz=1.0)
    return replace(p, drift_hz_per_min=2.0, events=default_events(128, np.random.default_rng(seed + 100)))


def bound_hz(p: SimulationParams, cfg: dict, edit_on: bool = False) -> tuple[float, float]:
    """(bound with the estimator's model, the same over the whole spectrum) for one transient (Hz); ``edit_on``:
    of an edited scan's ON transient (the noise is the OFF spectrum's, as the simulator scales it). Water whose
    apparent frequency is off B0 by sigma per transient (``residual_water_freq_sd_hz``) measures B0 with variance
    b_w^2 + sigma^2: the bound is then (1 / b_m^2 + 1 / (b_w^2 + sigma^2))^-1/2 (the two bands' information
    adds: each component has its own amplitude)."""
    n, dt = p.n_points, p.dwell_s
    t = np.arange(n) * dt
    f0 = p.f0_hz / 1e6
    var = 2.0 * (naa_height(metabolite_fid(p, t), p) / p.naa_snr / math.sqrt(n)) ** 2
    m = metabolite_fid(p, t, edit_on=edit_on)
    ppm = 4.65 + np.fft.fftfreq(n, dt) / f0
    reg = cfg["registration"]
    metab_bins = (ppm >= reg["band_ppm"][0]) & (ppm <= reg["band_ppm"][1])
    water_bins = (ppm >= reg["water_fit_band_ppm"][0]) & (ppm <= reg["water_fit_band_ppm"][1])
    water = 30.0 * p.residual_water * np.exp(-np.pi * 10.0 * t)

    def crb(parts: list[np.ndarray], sel: np.ndarray | None) -> float:
        cols = [2j * np.pi * t * sum(parts)]
        for r in parts:
            cols += [r, 1j * r]
        d = np.array(cols).T
        if sel is None:
            fisher = 2.0 / var * np.real(d.conj().T @ d)
        else:
            dh = np.fft.fft(d, axis=0)[sel]
            fisher = 2.0 / (n * var) * np.real(dh.conj().T @ dh)
        return math.sqrt(np.linalg.inv(fisher)[0, 0])

    if p.residual_water <= 0:
        return crb([m], metab_bins), crb([m], None)
    sigma2 = p.residual_water_freq_sd_hz ** 2
    if sigma2 > 0:
        out = []
        for sel_m, sel_w in ((metab_bins, water_bins), (None, None)):
            b_m, b_w = crb([m], sel_m), crb([water], sel_w)
            out.append((1.0 / b_m ** 2 + 1.0 / (b_w ** 2 + sigma2)) ** -0.5)
        return out[0], out[1]
    return crb([m, water], metab_bins | water_bins), crb([m, water], None)


def run_case(kind: str, water: float, seed: int, with_suspect: bool) -> dict:
    sim, qc, res, summary, per_ms, truth = run_scan(params(kind, water, seed))
    metab = [r for r in res if r.kind == METABOLITE]
    clean = [r for r in metab if not truth[r.index]["corrupted"]]
    bad = [r for r in metab if truth[r.index]["corrupted"]]
    smoothed = summary.details["frequency"]["freq_smoothed_hz"]
    nc = set(summary.noncausal_flagged_indices)

    def errs(get) -> np.ndarray:
        return np.array([get(r) - truth[r.index]["freq_hz"] for r in clean if get(r) is not None])

    e = errs(lambda r: r.freq_hz)
    with_sd = [r for r in clean if r.metrics.get("freq_sd_hz") is not None]  # (not the 8 held ones)
    z = np.array([(r.freq_hz - truth[r.index]["freq_hz"]) / r.metrics["freq_sd_hz"] for r in with_sd])
    pe = np.array([(r.phase_deg - truth[r.index]["phase_deg"] + 180.0) % 360.0 - 180.0 for r in clean])
    pz = np.array([((r.phase_deg - truth[r.index]["phase_deg"] + 180.0) % 360.0 - 180.0) / r.metrics["phase_sd_deg"]
                   for r in with_sd if r.metrics.get("phase_sd_deg")])
    out = {"e": e, "z": z, "causal": errs(lambda r: r.metrics.get("freq_causal_hz")),
           "smoothed": np.array([smoothed[str(r.index)] - truth[r.index]["freq_hz"] for r in clean
                                 if str(r.index) in smoothed]),
           "pe": pe, "pz": pz, "found": sum(not r.accepted for r in bad), "n_bad": len(bad),
           "false": sum(not r.accepted for r in clean), "n_clean": len(clean),
           "nc_found": sum(r.index in nc for r in bad), "nc_false": sum(r.index in nc for r in clean),
           "water_used": sum(r.metrics.get("freq_model") == "metabolites+water" for r in clean), "ms": per_ms,
           "set_bias": [float(np.mean([r.freq_hz - truth[r.index]["freq_hz"] for r in clean if r.set == s]))
                        for s in range(sim.scan.n_sets)]}
    if with_suspect:
        out.update(suspect_errors(qc, sim, truth))
    return out


def suspect_errors(qc: ScanQC, sim, truth: dict) -> dict:
    """suspect's spectral_registration and RATS on the same coil-combined transients (Hz errors)."""
    try:
        import suspect
        from suspect.processing.frequency_correction import rats, spectral_registration
    except ImportError:
        return {}
    s = sim.scan
    metab = [t for t in sim.transients if t.kind == METABOLITE]
    fids = [np.fft.ifft(qc.combine(t).raw_fft) for t in metab]  # before any water removal, as they would see it
    target = suspect.MRSData(np.mean(fids[:8], axis=0), s.dwell_s, s.f0_mhz)
    hz = ((1.8 - 4.65) * s.f0_mhz, (5.1 - 4.65) * s.f0_mhz)
    out: dict[str, list] = {"sr": [], "rats": []}
    failed = {"sr": 0, "rats": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t, fid in zip(metab, fids):
            if truth[t.index]["corrupted"]:
                continue
            d = suspect.MRSData(fid, s.dwell_s, s.f0_mhz)
            for key, method in (("sr", spectral_registration), ("rats", rats)):
                try:
                    out[key].append(method(d, target, frequency_range=hz)[0] - truth[t.index]["freq_hz"])
                except ValueError:  # scipy's bracket search can fail on a transient: counted, not hidden
                    failed[key] += 1
    return {k: np.array(v) for k, v in out.items()} | {"suspect_failed": failed}


def time_ratio(rounds: int = 30, baseline: str = BASELINE, what: str = "before the water fit and the filter",
               target: float = 1.2) -> str:
    """Per-transient time of this checkout vs ``baseline``: two bench/timing_worker.py processes, one per
    checkout (a git worktree of the baseline), given alternate passes over the same transients."""
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "baseline"
        try:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), baseline],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            return f"not measured (no git worktree of {baseline}: {exc})"
        try:
            workers = {k: subprocess.Popen([sys.executable, str(ROOT / "bench" / "timing_worker.py"), str(root)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                       for k, root in (("base", base), ("this", ROOT))}
            for w in workers.values():
                assert w.stdout.readline().strip() == "ready"
            ms: dict[str, list[float]] = {"base": [], "this": []}
            for i in range(rounds):
                for k in (("base", "this") if i % 2 else ("this", "base")):
                    workers[k].stdin.write("go\n")
                    workers[k].stdin.flush()
                    ms[k].append(float(workers[k].stdout.readline()))
            for w in workers.values():
                w.stdin.close()
                w.wait()
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    b, t = statistics.median(ms["base"]), statistics.median(ms["this"])
    pair = statistics.median(x / y for x, y in zip(ms["this"], ms["base"]))
    return (f"per-transient QC, 32 coils x 2048 points: **{t:.2f} ms** here vs {b:.2f} ms at {baseline} ({what}), "
            f"alternating passes in one run: ratio of medians **{t / b:.2f}**, median of paired ratios {pair:.2f} "
            f"(target <= {target:g}; {rounds} passes of 20 transients each)")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x) ** 2))) if len(x) else math.nan


def main() -> str:
    cfg = load_config()
    lines = ["## Per-transient frequency and phase at the information limit (issue 14)", "",
             __doc__.split("\n\n", 1)[1].split("Writes a Markdown")[0].strip(), "",
             "RMSE over uncorrupted transients, pooled over seeds "
             f"{SEEDS[0]}-{SEEDS[-1]}; `freq_hz` is the single shot, `freq_causal_hz` the causal filter's "
             "estimate, `freq_smoothed_hz` the end-of-scan smoother's; z = error / own SD (1 = honest SD).", "",
             "| case | water/NAA | bound (Hz) | `freq_hz` RMSE (Hz) | ratio to bound | z SD | water used | "
             "causal RMSE | smoothed RMSE | phase RMSE (deg), z SD | suspect SR / RATS RMSE (Hz) | "
             "flags: found, false (causal / end-of-scan) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    mega_rows = []
    for kind in KINDS + ("distorted", "mega"):
        for water in (WATER if kind not in ("distorted", "mega") else (10.0,) if kind == "distorted" else (0.0, 10.0)):
            rows = [run_case(kind, water, s, s == SEEDS[0]) for s in SEEDS]
            b, b_full = bound_hz(params(kind, water, 1), cfg)
            if kind == "mega":  # half the transients are ON (less NAA): the RMS of the two sets' bounds
                b_on, b_full_on = bound_hz(params(kind, water, 1), cfg, edit_on=True)
                b, b_full = math.hypot(b, b_on) / math.sqrt(2.0), math.hypot(b_full, b_full_on) / math.sqrt(2.0)
            b_tot = b * math.sqrt(1.0 + 1.0 / 8.0)
            cat = {k: np.concatenate([r[k] for r in rows]) for k in ("e", "z", "causal", "smoothed", "pe", "pz")}
            n_clean = sum(r["n_clean"] for r in rows)
            sus = rows[0]
            sr = f"{rms(sus['sr']):.3f} / {rms(sus['rats']):.3f}" if "sr" in sus else "n/a (suspect not installed)"
            if "sr" in sus and any(sus["suspect_failed"].values()):
                sr += " ({sr} / {rats} failed)".format(**sus["suspect_failed"])
            found = sum(r["found"] for r in rows), sum(r["n_bad"] for r in rows)
            flags = (f"{found[0]}/{found[1]}, " if found[1] else "-, ") + \
                f"{sum(r['false'] for r in rows) / n_clean:.1%} / {sum(r['nc_false'] for r in rows) / n_clean:.1%}"
            if found[1]:
                flags += f" (end-of-scan found {sum(r['nc_found'] for r in rows)}/{found[1]})"
            ratio = rms(cat["e"]) / b_tot
            lines.append(
                f"| {kind} | {water:g}x | {b_tot:.3f} | {rms(cat['e']):.3f} | {ratio:.2f} | {np.std(cat['z']):.2f} | "
                f"{sum(r['water_used'] for r in rows) / n_clean:.0%} | {rms(cat['causal']):.3f} | "
                f"{rms(cat['smoothed']):.3f} | {rms(cat['pe']):.2f}, {np.std(cat['pz']):.2f} | {sr} | {flags} |")
            summary.append((kind, water, rms(cat["e"]), ratio, b_tot / (b_full * math.sqrt(1.125))))
            if kind == "mega":
                mega_rows.append((water, [r["set_bias"] for r in rows]))
            print(lines[-1], file=sys.stderr, flush=True)
    worst = max(summary[:len(KINDS) * len(WATER)], key=lambda s: s[3])
    with_water = [s for s in summary if s[1] > 0 and s[0] in KINDS]
    over_full = max(s[4] for s in summary) - 1.0  # model bound / whole-spectrum bound
    lines += ["", "Edited (MEGA) scans, one frequency zero: mean error of each edit set's `freq_hz` (OFF, ON) per "
              "seed, Hz; before the reconciliation each set had its own zero (4 noisy transients each) and the "
              "sets differed by up to 1.2 Hz:", ""]
    for water, biases in mega_rows:
        text = "; ".join(f"{b[0]:+.3f}, {b[1]:+.3f}" for b in biases)
        apart = max(abs(b[0] - b[1]) for b in biases)
        lines.append(f"- residual water {water:g}x: {text} (largest OFF-ON difference {apart:.3f} Hz)")
    lines += ["", "Speed: " + time_ratio() + "."]
    lines += ["", "Worst ratio to the bound over the clean/drift/motion/capture cases: "
              f"**{worst[3]:.2f}** ({worst[0]}, {worst[1]:g}x water; target <= 1.3). Largest `freq_hz` RMSE with "
              f"residual water 10-30x: **{max(s[2] for s in with_water):.3f} Hz** (target <= 0.2 Hz). The model's "
              f"bound (two fit bands) exceeds the whole-spectrum bound (every bin, the same components) by at most "
              f"{over_full:.1%}: what the bands leave out (macromolecules, lipid region) carries little frequency "
              "information, but a whole-spectrum fit with no drift to follow (suspect's spectral registration, "
              "clean case without water) can use it. Bounds assume noise-free templates; the running references add "
              "1/n of a transient's noise (n = 8 at first, 128 at the end: ~2 % in variance on average)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
