"""Kernels against closed-form cases."""

import math

import numpy as np
import pytest

from plugins.linewidth import water_peak
from qc_daemon import kernels
from qc_daemon.spectral import SpectralAxis, spectrum

DT = 0.5e-3
N = 2048


def lorentzian(freq_hz=0.0, fwhm=6.0, amp=1.0, phase=0.0, n=N):
    t = np.arange(n) * DT
    return amp * np.exp(1j * phase + 2j * np.pi * freq_hz * t - np.pi * fwhm * t)


@pytest.mark.parametrize("fwhm", [3.0, 8.0, 12.8, 20.0])
def test_fwhm_of_lorentzian_matches_closed_form(fwhm):
    axis = SpectralAxis(N, DT, 123.2, 4.65)
    fid = lorentzian(freq_hz=0.0, fwhm=fwhm, phase=0.7)
    # sampled (DFT) Lorentzian vs the continuous closed form: within 2 %
    cfg = {"zero_fill": 8, "water_window_ppm": (4.3, 5.0), "min_peak_snr": 0.0, "baseline_span_ppm": 0.3}
    assert water_peak(fid, axis, cfg, None).fwhm_hz == pytest.approx(fwhm, rel=0.02)


def test_fwhm_real_rejects_non_positive_peak():
    assert math.isnan(kernels.fwhm_real(-np.ones(16), 8, 1.0))


@pytest.mark.parametrize("shift", [-9.3, -2.0, 0.37, 4.5, 11.0])
def test_register_recovers_known_shift_phase_amplitude(shift):
    ref = lorentzian(0.0, 5.0) + lorentzian(-120.0, 5.0, 0.8)
    fid = 0.6 * np.exp(1j * 0.5) * ref * np.exp(2j * np.pi * shift * np.arange(N) * DT)
    m = 600
    z = kernels.cross_product(fid, ref, m)
    f, cr, ci, d, *_ = kernels.register(z, np.abs(ref[:m]) ** 2, np.zeros(m), np.zeros(m), DT, 0.0, 12.0, 1.0,
                                        -4.0, 30.0)
    assert f == pytest.approx(shift, abs=0.01)
    assert math.atan2(ci, cr) == pytest.approx(0.5, abs=0.01)
    assert math.hypot(cr, ci) == pytest.approx(0.6, rel=0.01)
    assert d == pytest.approx(0.0, abs=0.1)


def test_register_recovers_extra_broadening():
    ref = lorentzian(0.0, 5.0)
    fid = ref * np.exp(-np.pi * 10.0 * np.arange(N) * DT)
    z = kernels.cross_product(fid, ref, 600)
    out = kernels.register(z, np.abs(ref[:600]) ** 2, np.zeros(600), np.zeros(600), DT, 0.0, 12.0, 1.0, -4.0, 30.0)
    assert out[3] == pytest.approx(10.0, abs=0.2)


def test_correct_fid_undoes_shift_and_phase():
    ref = lorentzian(0.0, 5.0)
    moved = ref * np.exp(1j * 0.3 + 2j * np.pi * 3.3 * np.arange(N) * DT)
    back = kernels.correct_fid(moved, DT, 3.3, 0.3)
    assert np.allclose(back, ref, atol=1e-9)


def test_detrended_sd_removes_quadratic_and_estimates_sd():
    rng = np.random.default_rng(0)
    x = np.linspace(-1, 1, 4000)
    y = 5 + 3 * x - 7 * x ** 2 + rng.normal(0, 0.5, x.size)
    assert kernels.detrended_sd(y, 0, y.size) == pytest.approx(0.5, rel=0.05)


def test_spectrum_axis_places_peak_at_its_ppm():
    axis = SpectralAxis(N, DT, 123.2, 4.65)
    fid = lorentzian(freq_hz=(2.01 - 4.65) * 123.2, fwhm=4.0)
    i = int(np.argmax(np.abs(spectrum(fid))))
    assert axis.ppm_of_index(i) == pytest.approx(2.01, abs=0.01)


def test_linear_fit():
    a, b = kernels.linear_fit(np.arange(10.0), 2.0 + 0.5 * np.arange(10.0))
    assert (a, b) == (pytest.approx(2.0), pytest.approx(0.5))


def test_tail_sd_scaled_is_the_spectral_noise_sd():
    rng = np.random.default_rng(3)
    noise = (rng.normal(0, 2.0, N) + 1j * rng.normal(0, 2.0, N))
    assert kernels.tail_sd(noise, 0.25) == pytest.approx(2.0, rel=0.06)
    spec_sd = np.std(spectrum(noise).real)
    assert kernels.tail_sd(noise, 0.25) * math.sqrt(N) == pytest.approx(spec_sd, rel=0.08)


def test_band_power_max_real_argmax_accumulate():
    spec = np.array([1 + 1j, 3 - 4j, -7 + 0j, 2 + 0j])
    assert kernels.band_power(spec, 0, 2) == pytest.approx((2 + 25) / 2)
    assert kernels.max_real(spec, 0, 4) == (3.0, 1)
    assert kernels.argmax_abs(spec, 0, 4) == 2
    acc = np.zeros(4, dtype=np.complex128)
    kernels.accumulate(acc, spec)
    kernels.accumulate(acc, spec)
    assert np.allclose(acc, 2 * spec)


@pytest.mark.parametrize("first,freq", [(0, 0.0), (1900, 3.7), (2040, -12.5)])
def test_decimated_band_is_the_window_s_inverse_fft_shifted(first, freq):
    """The radix-2 kernel against numpy: (L / N) ifft_L of the window's bins (wrapping round the spectrum's end),
    its first m samples multiplied by exp(-2 pi i freq t)."""
    rng = np.random.default_rng(first)
    spec = rng.standard_normal(N) + 1j * rng.standard_normal(N)
    size, m = 256, 37
    mask = rng.uniform(0.0, 1.0, size)
    idx = (first + np.arange(size)) % N
    dt = N * DT / size
    expect = np.fft.ifft(spec[idx] * mask)[:m] * (size / N) * np.exp(-2j * np.pi * freq * np.arange(m) * dt)
    tw = np.exp(2j * np.pi * np.arange(size) / size)
    assert np.allclose(kernels.decimated_band(spec, first, mask, tw, m, dt, freq), expect, rtol=0, atol=1e-12)


def test_three_cornered_hat_matches_its_numpy_definition():
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((32, 5)) * [1.0, 0.3, 0.5, 0.1, 0.2] + [0, 0, 0, 1, 2]
    rows[5, 1] = 40.0  # a lost fit: left out
    k, tw, sw, cw, tm, sm, cm = kernels.three_cornered_hat(rows, 5.0)
    med = np.median(rows[:, :3], axis=0)
    mad = 1.4826 * np.median(np.abs(rows[:, :3] - med), axis=0)
    a = rows[np.all(np.abs(rows[:, :3] - med) <= 5.0 * mad, axis=1)]
    d, rw, rm = (a[:, j] - a[:, j].mean() for j in range(3))
    qw, qm = (d * d + rw * rw - rm * rm) / 2, (d * d + rm * rm - rw * rw) / 2
    n = a.shape[0]
    assert k == n == 31
    assert (tw, sw, cw) == pytest.approx((qw.mean() * n / (n - 1), qw.std(ddof=1) / math.sqrt(n), np.median(a[:, 3])))
    assert (tm, sm, cm) == pytest.approx((qm.mean() * n / (n - 1), qm.std(ddof=1) / math.sqrt(n), np.median(a[:, 4])))


def test_mean_and_power():
    total = np.array([2 + 4j, -6 + 0j])
    mean, power = kernels.mean_and_power(total, 2)
    assert np.allclose(mean, [1 + 2j, -3]) and np.allclose(power, [5.0, 9.0])
