"""The hard cases real scanners produce, simulated (issue 12): each must give the right verdict for the right
reason, and nothing unmeasurable may raise a WARN/FAIL."""

from dataclasses import replace

import numpy as np
import pytest

from qc_daemon.engine import ScanQC
from qc_daemon.sources.classify import classify
from qc_daemon.sources.simulate import SimulationParams, simulate_scan


def check(**kw):
    """Simulate (small but honest: 4 coils, 1024 points), classify from the signal, run the engine."""
    base = dict(n_coils=4, n_points=1024, dwell_s=0.5e-3, averages=64, events=[], seed=2, drift_hz_per_min=0.3)
    base.update(kw)
    sim = simulate_scan(SimulationParams(**base))
    s = sim.scan
    found = classify(np.stack([t.data for t in sim.transients]), s.dwell_s, s.f0_mhz, s.oversampling)
    qc = ScanQC(s)
    results = []
    for t, kind in zip(sim.transients, found.kinds):
        results += qc.process(replace(t, kind=kind))
    tail, summary = qc.finish()
    return sim, found, results + tail, summary


def test_a_clean_scan_passes():
    _, _, _, s = check()
    assert s.verdict == "pass", s.reasons
    assert s.fwhm_water_hz == pytest.approx(8.0, abs=0.1)  # pure Lorentzian water: truth is exactly 8 Hz


@pytest.mark.parametrize("residual", [30.0, 80.0, 300.0])
def test_water_dominated_poorly_suppressed_spectra_give_no_false_alarm(residual):
    """Residual water 30x-300x NAA whose phase wanders 25 deg per transient: without its removal the drift
    read 7.5 / 9.6 Hz for a true 0.6 Hz at 80x / 300x (WARN), 300x flagged 9 averages and 30x (32 coils)
    false-flagged 3.1 % of clean transients."""
    sim, found, results, s = check(residual_water=residual)
    assert found.kinds.count("water_ref") == 2 and s.verdict == "pass", s.reasons
    assert any(n.startswith("residual water") and "removed" in n for n in s.notes)
    truth = [t["freq_hz"] for t in sim.truth["transients"] if t["kind"] == "metabolite"]
    got = [r.freq_hz for r in results if r.kind == "metabolite"]
    err = np.asarray(got) - np.asarray(truth)
    assert np.sqrt(np.mean((err - err.mean()) ** 2)) < 1.0  # per-transient frequency RMSE (Hz), as at 15x


def test_residual_water_is_not_removed_where_it_does_not_dominate():
    _, _, _, s = check(residual_water=15.0)
    assert s.verdict == "pass" and not any(n.startswith("residual water") for n in s.notes)


def test_lipid_power_does_not_follow_a_wandering_residual_water_line():
    """Residual water 15x NAA (below the removal threshold) whose amplitude (+-40 %) and phase (25 deg steps)
    wander: its tail reaches the lipid window, and the band's raw power had 3x the spread it has without water
    (robust SD 0.9 vs 0.3, seeds 9-11), which false-flagged `lipid` on clean averages (the small_nifti
    fixture). With the tail's fit left out, the spread is the same with and without the water."""
    from qc_daemon.sources.simulate import Event

    def spread(results):
        lp = np.array([r.metrics["lipid_power"] for r in results if r.kind == "metabolite"
                       and "lipid_power" in r.metrics and "lipid" not in r.flags])
        return float(np.median(lp)), float(1.4826 * np.median(np.abs(lp - np.median(lp))))

    events = [Event(40, "lipid", 1.5), Event(70, "lipid", 3.0)]
    _, _, dry, _ = check(residual_water=0.0, averages=96, seed=9, naa_snr=8.0, events=events)
    _, _, wet, s = check(residual_water=15.0, averages=96, seed=9, naa_snr=8.0, events=events)
    (med_dry, sd_dry), (med_wet, sd_wet) = spread(dry), spread(wet)
    assert med_wet == pytest.approx(med_dry, rel=0.1) and sd_wet < 1.3 * sd_dry
    assert 0.9 < med_dry < 1.6  # ~1 = noise only, plus the macromolecules' share
    metab = [r for r in wet if r.kind == "metabolite"]
    assert [i for i, r in enumerate(metab) if "lipid" in r.flags] == [40, 70]  # the events, and only they


def test_a_water_only_scan_gets_water_metrics_and_its_own_wording():
    _, found, results, s = check(averages=0, water_refs_before=4)
    assert found.water_only and s.scan_kind == "water-only" and s.verdict == "pass", s.reasons
    assert s.fwhm_water_hz == pytest.approx(8.0, abs=0.1)
    assert s.snr_final is None and s.fwhm_metab_hz is None and "water-only" in s.unmeasured["snr_final"]


@pytest.mark.parametrize("refs, averages", [(1, 1), (1, 2), (0, 3)])
def test_one_to_three_transients_judge_nothing_they_cannot(refs, averages):
    _, _, _, s = check(averages=averages, water_refs_before=refs, naa_snr=20.0, drift_hz_per_min=20.0)
    assert s.verdict == "pass", s.reasons
    assert s.drift_hz_per_min is None and "collecting" in s.unmeasured["drift_hz_per_min"]


def test_a_metabolite_free_phantom_gets_no_naa_snr_and_no_tcr_linewidth():
    _, _, _, s = check(phantom_lines=((1.1, 40.0, 0.0), (3.6, 30.0, 0.0)), naa_snr=10.0)
    assert s.verdict == "pass", s.reasons
    assert s.snr_final is None and "NAA" in s.unmeasured["snr_final"]
    assert s.fwhm_metab_hz is None and s.unmeasured["fwhm_metab_hz"]


def test_a_genuinely_broad_shim_fails_on_the_water_line():
    _, _, _, s = check(water_lw_hz=25.0, metab_lw_hz=20.0)
    assert s.verdict == "fail" and s.reasons[0].startswith("water linewidth 25."), s.reasons
    assert "consider reshim" in s.reasons[0]


def test_genuine_drift_still_warns_with_its_rate():
    _, _, _, s = check(drift_hz_per_min=4.0)
    assert s.verdict in ("warn", "fail") and any(r.startswith("drift rate +") for r in s.reasons), s.reasons


def test_the_first_transients_carry_no_back_filled_running_values():
    _, _, results, _ = check(averages=20)
    metab = [r for r in results if r.kind == "metabolite"]
    assert all(r.snr_running is None and "calibration" in r.unmeasured["snr_running"] for r in metab[:7])
    assert metab[7].snr_running is not None  # the 8th holds the 8-average reference: its value is its own


def test_a_live_summary_before_the_first_metabolite_is_not_called_water_only():
    sim = simulate_scan(SimulationParams(n_coils=4, n_points=1024, averages=12, events=[], seed=2))
    qc = ScanQC(sim.scan)
    for t in sim.transients[:2]:  # the two water references that precede the averages
        qc.process(t)
    live = qc.summary("running")
    assert live.scan_kind == "metabolite" and live.unmeasured["snr_final"] == "no metabolite transient yet"
    assert "yet" in live.unmeasured["fwhm_metab_hz"]
