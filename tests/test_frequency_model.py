"""Frequency from metabolites and residual water, its SD, the causal filter and the smoother (issue 14)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from qc_daemon.engine import ScanQC
from qc_daemon.freq_model import (
    HAT_MIN_ROWS,
    METAB_AND_WATER,
    FrameOffset,
    Honesty,
    coherent_seed,
    frame_shift,
    inverse_variance,
    water_nearer_trend,
)
from qc_daemon.model import METABOLITE
from qc_daemon.sources.simulate import SimulationParams, simulate_scan
from qc_daemon.tracking import FilterParams, FrequencyFilter, smooth

BASE = SimulationParams(n_coils=4, n_points=2048, averages=48, naa_snr=4.0, seed=3, freq_jitter_hz=0.15,
                        residual_water_freq_sd_hz=0.0, residual_water_amp_jitter=0.1,
                        residual_water_phase_step_deg=8.0, residual_water_phase_limit_deg=20.0, events=[])


def _run(p: SimulationParams):
    sim = simulate_scan(p)
    qc = ScanQC(sim.scan)
    res = []
    for t in sim.transients:
        res += qc.process(t)
    tail, summary = qc.finish()
    truth = {r["index"]: r for r in sim.truth["transients"]}
    metab = [r for r in res + tail if r.kind == METABOLITE]
    err = np.array([r.freq_hz - truth[r.index]["freq_hz"] for r in metab])
    return metab, err, summary, truth


@pytest.fixture(scope="module")
def with_water():
    return _run(replace(BASE, residual_water=10.0))


def test_residual_water_that_follows_b0_is_used_and_beats_the_metabolites_alone(with_water):
    metab, err, _, truth = with_water
    assert sum(r.metrics["freq_model"] == METAB_AND_WATER for r in metab) >= 0.9 * len(metab)
    metab_only = np.array([r.metrics["freq_metab_hz"] - truth[r.index]["freq_hz"] for r in metab])
    rmse, rmse_m = float(np.sqrt(np.mean(err ** 2))), float(np.sqrt(np.mean(metab_only ** 2)))
    assert rmse < 0.5 * rmse_m and rmse < 0.25, (rmse, rmse_m)


def test_the_reported_sd_is_the_error_s_sd(with_water):
    metab, err, _, _ = with_water
    held, rest = metab[:8], metab[8:]
    z = err[8:] / np.array([r.metrics["freq_sd_hz"] for r in rest])
    assert 0.7 < float(np.std(z)) < 1.35
    assert all(r.metrics["phase_sd_deg"] > 0 for r in rest) and np.isfinite([r.phase_deg for r in metab]).all()
    # the held calibration transients are fitted against a mean they are part of: no SD, and why
    assert all(r.metrics["freq_sd_hz"] is None and "calibration" in r.unmeasured["freq_sd_hz"] for r in held)


def test_without_residual_water_the_metabolites_alone_decide():
    metab, err, _, _ = _run(replace(BASE, residual_water=0.0, averages=24))
    assert {r.metrics["freq_model"] for r in metab} == {"metabolites"}
    assert all(r.metrics["freq_water_hz"] is None for r in metab)


def test_water_that_does_not_follow_b0_is_weighted_down():
    """Its apparent frequency off B0 by 1 Hz SD per transient: the agreement test must catch it, so the
    result stays near the metabolites-only precision instead of inheriting the water's 1 Hz."""
    metab, err, _, truth = _run(replace(BASE, residual_water=10.0, residual_water_freq_sd_hz=1.0, averages=64))
    metab_only = np.array([r.metrics["freq_metab_hz"] - truth[r.index]["freq_hz"] for r in metab])
    late = slice(40, None)  # once the agreement window holds enough transients
    assert np.sqrt(np.mean(err[late] ** 2)) < 1.1 * np.sqrt(np.mean(metab_only[late] ** 2)) + 0.05


def test_the_smoothed_series_and_causal_estimate_are_reported(with_water):
    metab, err, summary, truth = with_water
    smoothed = summary.details["frequency"]["freq_smoothed_hz"]
    accepted = [r for r in metab if r.accepted]
    assert set(smoothed) == {str(r.index) for r in accepted}
    causal = [r for r in metab if r.metrics.get("freq_causal_hz") is not None]
    assert len(causal) >= len(metab) - 9  # all but the held ones and the first after them (no trend yet)
    assert summary.details["frequency"]["per_set"]["0"]["n_accepted"] == len(accepted)


def test_the_three_cornered_hat_finds_which_component_claims_too_much():
    """Water off B0 by 1 Hz SD claiming 0.1 Hz, metabolites honest at 0.5 Hz, a trend wrong by 0.3 Hz SD:
    only the water's variance is scaled, to ~its true 1 Hz^2; honest claims are left alone."""
    rng = np.random.default_rng(0)
    bad, good = Honesty(32), Honesty(32)
    for _ in range(32):
        f, trend = float(rng.normal(0, 0.15)), float(rng.normal(0, 0.3))
        bad.add(f + rng.normal(0, 1.0), f + rng.normal(0, 0.5), trend, 0.01, 0.25)
        good.add(f + rng.normal(0, 0.1), f + rng.normal(0, 0.5), trend, 0.01, 0.25)
    k_w2, k_m2 = bad.scales2()
    assert 40 < k_w2 < 250 and k_m2 == 1.0
    assert good.scales2() == (1.0, 1.0)


def test_the_frame_offset_is_the_mean_difference():
    off = FrameOffset(32)
    for d in (0.4, 0.6, 0.5):
        off.add(d)
    assert off.offset() == 0.0  # too few yet
    off.add(0.5)
    assert off.offset() == pytest.approx(0.5, rel=0.01)  # well determined: (nearly) the mean
    noisy = FrameOffset(32)
    for d in (1.5, -1.2, 0.9, -0.8, 1.1, -0.9):  # mean 0.1, SE 0.5: within its noise, not applied
        noisy.add(d)
    assert noisy.offset() == 0.0


def test_coherent_seed_undoes_each_member_s_phase():
    t = np.arange(64) * 1e-3
    line = np.exp(-30 * t)
    bands = [line * np.exp(1j * ph) for ph in (0.0, 0.3, -0.35, 2.5)]
    total = coherent_seed(bands)
    assert np.allclose(np.abs(total), 4 * line, rtol=1e-9)


def test_inverse_variance_mean():
    f, v = inverse_variance(1.0, 1.0, 3.0, 1.0)
    assert (f, v) == (2.0, 0.5)


def test_the_filter_follows_drift_and_its_innovations_are_unit_sd():
    rng = np.random.default_rng(1)
    filt = FrequencyFilter(FilterParams())
    zs = []
    for k in range(300):
        t = 2.0 * k
        true = 2.5 * t / 60.0 + 4.0 * (1 - math.exp(-t / 60.0)) + rng.normal(0, 0.15)
        sd = 0.3
        meas = true + rng.normal(0, sd)
        pred = filt.predict(t)
        if pred is not None and k > 20:
            zs.append(pred.raw_z(meas, sd))
        filt.observe(t, meas, sd, True)
    assert 0.85 < float(np.std(zs)) < 1.2 and abs(float(np.mean(zs))) < 0.2


def test_the_filter_ignores_a_lost_fit_and_reacquires_a_real_step():
    filt = FrequencyFilter(FilterParams())
    for k in range(20):
        filt.observe(2.0 * k, 0.0, 0.2, True)
    filt.observe(40.0, -23.0, 0.2, True)  # one wild single shot: not drift
    assert abs(filt.predict(42.0).freq_hz) < 0.1
    for k, z in enumerate((-23.0, 14.0, -7.0)):  # three in a row that disagree: still not a level
        filt.observe(42.0 + 2 * k, z, 0.2, True)
    assert abs(filt.predict(50.0).freq_hz) < 0.1
    for k in range(3):  # the patient moved and stayed 8 Hz off
        filt.observe(50.0 + 2 * k, 8.0, 0.2, False)
    assert abs(filt.predict(58.0).freq_hz - 8.0) < 0.5


def test_the_smoother_beats_the_single_shots():
    rng = np.random.default_rng(2)
    t = np.arange(128) * 2.0
    true = 2.0 * t / 60.0 + rng.normal(0, 0.15, t.size)
    sd = np.full(t.size, 0.5)
    z = true + rng.normal(0, 0.5, t.size)
    sm = smooth(t, z, sd, FilterParams())
    assert np.sqrt(np.mean((sm - true) ** 2)) < 0.5 * np.sqrt(np.mean((z - true) ** 2))


def test_a_jump_is_judged_in_units_of_its_own_sd():
    """3 Hz is ~20 single-shot SDs with 10x water: flagged; clean transients' z stays ~N(0, 1)."""
    from qc_daemon.sources.simulate import Event

    metab, _, _, truth = _run(replace(BASE, residual_water=10.0, events=[Event(34, "freq_jump", 3.0)]))
    jumped = next(r for r in metab if truth[r.index]["corrupted"])
    assert "freq_jump" in jumped.flags and jumped.metrics["z_freq_jump"] > 8
    z = [r.metrics["z_freq_jump"] for r in metab if not truth[r.index]["corrupted"]
         and r.metrics.get("z_freq_jump") is not None]
    assert len(z) > 30 and 0.6 < float(np.std(z)) < 1.4


@pytest.mark.parametrize("water", [0.0, 10.0])
def test_an_edited_scan_has_one_frequency_zero(water):
    """MEGA ON/OFF interleaved: both sets' freq_hz on one zero (seed 2 without residual water: 0.83 Hz apart
    when each set kept its own reference's zero), per-set statistics reported."""
    metab, err, summary, truth = _run(replace(BASE, residual_water=water, mega=True, averages=64, seed=2))
    bias = [float(np.mean([e for r, e in zip(metab, err) if r.set == s])) for s in (0, 1)]
    assert abs(bias[0] - bias[1]) < (0.3 if water == 0 else 0.1), bias
    assert set(summary.details["frequency"]["per_set"]) == {"0", "1"}


def _hat(water_sd: float, seed: int = 0) -> Honesty:
    rng = np.random.default_rng(seed)
    h = Honesty(32)
    for _ in range(32):
        f, trend = float(rng.normal(0, 0.15)), float(rng.normal(0, 0.3))
        h.add(f + rng.normal(0, water_sd), f + rng.normal(0, 0.5), trend, 0.01, 0.25)
    h.scales2()
    return h


def test_the_frame_moves_only_for_water_that_does_not_follow_b0():
    """Water and metabolite zeros are each their held transients' mean: equal where the water follows B0, so
    a measured offset (noise) is not applied; a distorted line's (variance D = (k_w^2 - 1) claimed) is, by
    the least-squares weight P / (P + se2), P = D / n_held."""
    offset = FrameOffset(32)
    for d in np.random.default_rng(1).normal(0.6, 0.5, 32):
        offset.add(float(d))
    mean, se2 = offset.mean_and_se2()
    honest, distorted = _hat(0.1), _hat(1.0)
    assert honest.distortion_var() == 0.0 and frame_shift(offset, honest, 8) == 0.0
    p = distorted.distortion_var() / 8
    assert 0.5 < distorted.distortion_var() < 2.0
    assert frame_shift(offset, distorted, 8) == pytest.approx(mean * p / (p + se2))
    assert 0.5 * mean < frame_shift(offset, distorted, 8) < mean
    assert frame_shift(FrameOffset(32), distorted, 8) == 0.0  # fewer than 4 differences: nothing to apply


def test_a_disagreement_goes_to_the_likelier_estimate_in_its_own_sd():
    # a metabolite fit lost 1.5 Hz away, the water 0.5 Hz from the trend with an SD of 0.17: the water
    assert water_nearer_trend(0.5, 0.03, -1.5, 0.25, 0.0, 0.002, 0.15)
    # an untested water line 1.7 Hz from the trend claiming 0.08 Hz: nearer in hertz than the metabolites
    # (1.74 Hz) but far less likely in its own SD
    assert not water_nearer_trend(-2.2, 0.0064, 1.24, 0.25, -0.5, 0.1, 0.15)
    assert water_nearer_trend(0.1, 0.01, 3.0, 0.25, 0.0, math.nan, 0.15)  # no trend variance yet: counts 0


def test_the_held_pair_test_weights_down_only_a_line_far_off_b0():
    honest, distorted = Honesty(32), Honesty(32)
    rng = np.random.default_rng(4)
    for _ in range(8):  # held transients: difference SD 0.5 vs a claim of 0.45 / 2.2 Hz vs 0.45
        honest.add_calibration(float(rng.normal(0, 0.5)), 0.0, 0.0, 0.01, 0.2)
        distorted.add_calibration(float(rng.normal(0, 2.2)), 0.0, 0.0, 0.01, 0.2)
    assert honest.scales2() == (1.0, 1.0)
    assert distorted.scales2()[0] > 100 and distorted.scales2()[1] == 1.0
    assert distorted.n_rows == 0 < HAT_MIN_ROWS  # the hat takes over only with rows of later transients
    held_k2 = distorted.scales2()[0]
    for _ in range(HAT_MIN_ROWS + 2):  # a few rows that happen to agree cannot clear it
        f = float(rng.normal(0, 0.15))
        distorted.add(f + rng.normal(0, 0.1), f + rng.normal(0, 0.45), 0.0, 0.01, 0.2)
    assert distorted.scales2()[0] >= held_k2
