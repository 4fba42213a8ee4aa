"""Registration (docs/results.md "Frequency and phase"): the band-limited least-squares fit of one transient to
its reference, the running references it is fitted to, the noise terms that make its SD honest, and the
decimated residual-water window. Pure numerics: no scan bookkeeping (that is the engine's), no check names.

A transient is modelled as c * ref * exp(i 2 pi f t) * exp(-pi d t) over the first ``fit_window_s`` of the
band-limited (1.85-4.05 ppm, tapered), ramped FIDs; ``kernels.register`` finds f, d and c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import kernels
from .freq_model import METAB_ONLY, WaterTemplate
from .model import METABOLITE, WATER_REF, ScanInfo
from .plugin_api import Registration
from .spectral import SpectralAxis, band_limited, band_mask, fftshift, ifftshift
from .tracking import Trend

SD_STEP_HZ = 0.05  # finite-difference step for the fit's curvature (lines are >= 2 Hz wide)
WATER_MASK_STEPS = 8  # the water band's mask follows the seed in 1/8-bin steps (edges within 1/16 bin)
WATER_WINDOW_MARGIN_PPM = 0.4  # the decimated water window reaches this beyond the band on each side


@dataclass
class Reference:
    """Running aligned mean of the accepted transients of one (kind, set) and its band-limited copy."""

    n: int = 0
    total: np.ndarray | None = None  # sum of aligned member FIDs (raw phase frame)
    total_fft: np.ndarray | None = None  # fft of total (FFT order), kept in step without extra FFTs
    mean: np.ndarray | None = None
    mean_spec: np.ndarray | None = None  # spectrum of the mean in the phase frame of the reference
    band: np.ndarray | None = None  # first m points of the band-limited mean
    band_abs2: np.ndarray | None = None
    phase_rad: float = 0.0  # phase that makes the reference's main peak absorptive
    noise_var_sum: float = 0.0  # sum over members of their complex noise variance per time point
    trend: Trend | None = None  # the accepted members' frequencies: the registration's seed

    def predict(self, t: float) -> tuple[float, float]:
        """Causal trend prediction of the frequency at time t (Hz) from the accepted members
        (``tracking.Trend``) and its variance (Hz^2); (0, NaN) before the reference has members."""
        if self.n == 0 or self.trend is None:
            return 0.0, math.nan
        return self.trend.at(t)[:2]


class Fit(NamedTuple):
    """What re-evaluating a registration at another frequency needs."""

    z: np.ndarray  # transient x conj(reference), band-limited and ramped
    ref_abs2: np.ndarray
    ref_noise: np.ndarray
    s2: float  # noise variance of the fit's amplitude per unit energy


def peak_phase(axis: SpectralAxis, spec: np.ndarray, window_ppm) -> float:
    """Zero-order phase (rad) that makes the main peak absorptive: the angle of the spectrum at the largest |S|
    in ``window_ppm`` (0 when the window is outside the axis)."""
    win = axis.clipped_window(*window_ppm)
    if win is None:
        return 0.0
    return float(np.angle(spec[kernels.argmax_abs(spec, win[0], win[1])]))


class BandFit:
    """The fit of a transient to its reference in the metabolite band (metabolite transients) or the water
    band (water references): masks, the baseline ramp, the fit window, and the references' operations."""

    def __init__(self, scan: ScanInfo, axis: SpectralAxis, reg: dict, phase_windows: dict[str, tuple]):
        self.scan, self.axis, self.reg = scan, axis, reg
        self.phase_windows = phase_windows  # kind -> ppm window of the peak made absorptive
        self.m = max(8, min(scan.n_points, int(reg["fit_window_s"] / scan.dwell_s)))
        # band masks in FFT (unshifted) order, and their mean power (the band's share of white noise)
        bands = {METABOLITE: reg["band_ppm"], WATER_REF: reg["water_band_ppm"]}
        self.masks = {kind: ifftshift(band_mask(axis, *bands[kind], *reg["band_taper_ppm"])) for kind in bands}
        self.mask_power = {kind: float(np.mean(m ** 2)) for kind, m in self.masks.items()}
        self._rolled: dict[tuple[str, int], np.ndarray] = {}
        # raised-cosine ramp over the first baseline_skip_s: broad in-band features (tails of residual water,
        # macromolecules) live in the first few ms of the band-limited FID; narrow metabolite lines last longer
        t = np.arange(self.m) * scan.dwell_s
        skip = float(reg["baseline_skip_s"])
        self._set_ramp(np.where(t < skip, 0.5 - 0.5 * np.cos(np.pi * t / max(skip, 1e-12)), 1.0) if skip > 0
                       else np.ones(self.m))

    def _set_ramp(self, ramp: np.ndarray) -> None:
        self.ramp = ramp
        self.ramp2 = ramp ** 2
        self.ramp2_sum = float(self.ramp2.sum())

    def flatten_ramp(self) -> None:
        """No ramp (no residual water whose wandering tail it would keep out: every early point counts)."""
        self._set_ramp(np.ones(self.m))

    # ------------------------------------------------------------------ references
    def seed(self, ref: Reference, fids: list[np.ndarray], noise_vars: list[float], kind: str) -> None:
        """Initial reference = the unaligned mean of ``fids`` (their complex noise variances per point given):
        its frequency is exactly their mean true frequency, the scan's 0 Hz."""
        ref.n = len(fids)
        ref.noise_var_sum = sum(noise_vars)
        ref.total = np.sum(fids, axis=0).astype(np.complex128)
        ref.total_fft = np.fft.fft(ref.total)
        self.derive(ref, kind)

    def add(self, ref: Reference, corrected: np.ndarray, corrected_fft: np.ndarray, kind: str) -> None:
        """An aligned member joins (its FID and FFT in the reference's phase frame, display phase included)."""
        rot = np.exp(1j * ref.phase_rad)  # stored without the reference's display phase
        if ref.total is None:
            ref.total = np.zeros(corrected.shape[0], dtype=np.complex128)
            ref.total_fft = np.zeros(corrected.shape[0], dtype=np.complex128)
        kernels.accumulate(ref.total, corrected * rot)
        kernels.accumulate(ref.total_fft, corrected_fft * rot)
        ref.n += 1
        self.derive(ref, kind)

    def derive(self, ref: Reference, kind: str) -> None:
        """Recompute the reference's mean, band-limited copy, display phase and spectrum from its total."""
        mean = ref.total / ref.n
        mean_fft = ref.total_fft / ref.n
        ref.band = band_limited(mean_fft, self.masks[kind], self.m) * self.ramp
        ref.band_abs2 = ref.band.real ** 2 + ref.band.imag ** 2
        raw_spec = fftshift(mean_fft)
        ref.phase_rad = self.peak_phase(raw_spec, kind)
        rot = np.exp(-1j * ref.phase_rad)
        ref.mean = mean * rot
        ref.mean_spec = raw_spec * rot

    def peak_phase(self, spec: np.ndarray, kind: str) -> float:
        """The phase that makes the main peak of ``kind`` absorptive (NAA; water for water references)."""
        return peak_phase(self.axis, spec, self.phase_windows[kind])

    # ------------------------------------------------------------------ the fit
    def register(self, fid_fft: np.ndarray, ref: Reference, seed: float, kind: str, noise_sd: float,
                 phase_sd: bool = True) -> tuple[Registration, Fit]:
        """Register one transient (its FFT, FFT order) to ``ref`` around the seed frequency (Hz). Returns the
        registration and its :class:`Fit`; ``phase_sd`` False leaves the phase SD to the caller (the water fit
        moves the frequency)."""
        r = self.reg
        dwell = self.scan.dwell_s
        # mask the transient in its own (seed-shifted) frame, so the tapers cut it where they cut the reference
        shift = int(round(seed / self.axis.hz_per_point))
        mask = self._rolled.get((kind, shift))
        if mask is None:
            mask = self._rolled[(kind, shift)] = np.roll(self.masks[kind], shift)
        band = band_limited(fid_fft, mask, self.m) * self.ramp
        z = kernels.cross_product(band, ref.band, self.m)
        # expected noise energy per point of the band-limited, ramped reference mean
        power = self.mask_power[kind]
        ref_noise = (ref.noise_var_sum / ref.n) * power / ref.n * self.ramp2
        white = 2.0 * noise_sd ** 2 / self.scan.n_points  # complex noise variance per time point
        v_point = white * power
        trans_noise = v_point * self.ramp2
        d_lo, d_hi = r["damping_range_hz"]
        out = kernels.register(z, ref.band_abs2, ref_noise, trans_noise, dwell, seed,
                               r["search_half_width_hz"], r["grid_step_hz"], d_lo, d_hi)
        if out[5] > 0.0:  # optimum outside the seeded window: search three times wider around the seed
            out = kernels.register(z, ref.band_abs2, ref_noise, trans_noise, dwell, seed,
                                   3.0 * r["search_half_width_hz"], r["grid_step_hz"], d_lo, d_hi)
        f, cr, ci, d, j_best, _, c0r, c0i = out
        # misfit of the model: ||b||^2 - J, over the noise energy expected in b (band-limited, ramped) plus
        # the reference's noise carried through the fit; ~1 for a transient that matches the reference
        expected = v_point * self.ramp2_sum * (1.0 + 1.0 / ref.n)
        resid = (float(np.vdot(band, band).real) - j_best) / expected if expected > 0 else math.nan
        s2 = white * (1.0 + 1.0 / ref.n)  # the template's own noise adds 1/n of the transient's
        _, _, curv = kernels.fit_at(z, ref.band_abs2, ref_noise, dwell, f, d, SD_STEP_HZ)
        sd = math.sqrt(s2 / curv * max(1.0, resid)) if curv > 0 and math.isfinite(resid) else math.inf
        amp = math.hypot(cr, ci)
        p_sd = math.degrees(self.phase_sd(s2, amp, ref.band_abs2, sd)) if amp > 0 and phase_sd else math.nan
        reg = Registration(freq_hz=f, phase_deg=math.degrees(math.atan2(ci, cr)), amplitude=amp,
                           damping_hz=d, residual_norm=resid, matched_amplitude=math.hypot(c0r, c0i),
                           freq_sd_hz=sd, phase_sd_deg=p_sd, freq_metab_hz=f, freq_metab_sd_hz=sd,
                           freq_model=METAB_ONLY)
        return reg, Fit(z, ref.band_abs2, ref_noise, s2)

    def amplitude_at(self, fit: Fit, f: float, d: float) -> tuple[float, float]:
        """The fit's complex amplitude (re, im) at frequency f (Hz) and damping d (Hz)."""
        cr, ci, _ = kernels.fit_at(fit.z, fit.ref_abs2, fit.ref_noise, self.scan.dwell_s, f, d, SD_STEP_HZ)
        return cr, ci

    def phase_sd(self, s2: float, amp: float, ref_abs2: np.ndarray, f_sd: float) -> float:
        """SD (rad) of the zero-order phase angle(c) at the fitted frequency: the amplitude's own noise,
        s2 / (2 |c|^2 E), plus the frequency's error carried to t = 0 from the energy-weighted mean time."""
        e, t_mean = kernels.energy_moments(ref_abs2, self.scan.dwell_s)
        return math.sqrt(s2 / (2.0 * amp * amp * e) + (2.0 * math.pi * t_mean * f_sd) ** 2)


class WaterFit(NamedTuple):
    """The residual water's fit to its template: frequency vs the seed (Hz), its variance (Hz^2; inf when
    lost), the misfit (1 = the template's shape), whether the optimum was found inside the search."""

    freq_hz: float
    var_hz2: float
    misfit: float
    found: bool
    z: np.ndarray


class WaterWindow:
    """The residual water's band (``water_fit_band_ppm``), decimated: the bins of a window around it (the
    band +- 0.4 ppm, room for the seed to move the mask; a power of 2) hold everything the masked band has,
    and their inverse FFT samples its FID every N dt / L s (exactly: a unitary change of basis, not a
    filter). ``of(scan, axis, reg)`` is None when the band is outside the spectral width."""

    def __init__(self, scan: ScanInfo, axis: SpectralAxis, reg: dict):
        wlo, whi = reg["water_fit_band_ppm"]
        self.scan, self.axis, self.reg = scan, axis, reg
        self.mask = ifftshift(band_mask(axis, wlo, whi, *reg["water_fit_taper_ppm"]))
        self.power = float(np.mean(self.mask ** 2))
        # the band moved by a fraction of a bin (1/8 steps): with an integer roll, a mask for any seed
        ppm_step = axis.hz_per_point / scan.f0_mhz
        self._frac = [ifftshift(band_mask(axis, wlo + k * ppm_step / WATER_MASK_STEPS,
                                          whi + k * ppm_step / WATER_MASK_STEPS, *reg["water_fit_taper_ppm"]))
                      for k in range(WATER_MASK_STEPS)]
        n, hz = scan.n_points, axis.hz_per_point
        lo_hz, hi_hz = ((wlo - WATER_WINDOW_MARGIN_PPM - scan.centre_ppm) * scan.f0_mhz,
                        (whi + WATER_WINDOW_MARGIN_PPM - scan.centre_ppm) * scan.f0_mhz)
        size = min(n, 1 << max(3, math.ceil(math.log2((hi_hz - lo_hz) / hz + 1))))
        first = int(math.floor(lo_hz / hz))
        self.idx = (first + np.arange(size)) % n
        self.first = first % n
        self.twiddle = np.exp(2j * np.pi * np.arange(size) / size)
        self.dt = n * scan.dwell_s / size
        self.m = max(8, min(size, int(reg["fit_window_s"] / self.dt)))
        self.reach_hz = WATER_WINDOW_MARGIN_PPM * scan.f0_mhz  # a seed beyond moves the band out
        self._rolled: dict[int, np.ndarray] = {}

    @classmethod
    def of(cls, scan: ScanInfo, axis: SpectralAxis, reg: dict) -> WaterWindow | None:
        wlo, whi = reg["water_fit_band_ppm"]
        return cls(scan, axis, reg) if axis.ppm_min < wlo and axis.ppm_max > whi else None

    @property
    def size(self) -> int:
        return self.idx.shape[0]

    def band(self, fft: np.ndarray, window_mask: np.ndarray | None = None, shift_hz: float = 0.0) -> np.ndarray:
        """The first ``m`` samples (every ``dt`` s) of the FID of ``fft * mask`` (FFT order), from the
        decimation window's bins (``window_mask`` = the mask on them; the unshifted band's by default):
        (L / N) ifft_L, so each sample is the full-rate band-limited FID's value there (the window's base
        frequency is left out: common to transient and template, it cancels); shifted by -``shift_hz``."""
        mask = self.mask[self.idx] if window_mask is None else window_mask
        return kernels.decimated_band(fft, self.first, mask, self.twiddle, self.m, self.dt, shift_hz)

    def mask_at(self, seed_hz: float) -> np.ndarray:
        """The band's mask moved by the seed (in 1/8-bin steps), on the window's bins: the water's tails at
        the band edges are then cut where the template's were, to a sixteenth of a bin."""
        key = int(math.floor(seed_hz / self.axis.hz_per_point * WATER_MASK_STEPS + 0.5))
        mask = self._rolled.get(key)
        if mask is None:
            if len(self._rolled) >= 256:  # a long drift: keep the memory bounded
                self._rolled.clear()
            whole, frac = divmod(key, WATER_MASK_STEPS)
            mask = self._rolled[key] = np.roll(self._frac[frac], whole)[self.idx]
        return mask

    def noise_var(self, noise_sd: float) -> float:
        """Complex noise variance of one decimated sample of a transient of noise SD ``noise_sd``."""
        return 2.0 * noise_sd ** 2 / self.scan.n_points * self.power

    def fit(self, band: np.ndarray, tpl: WaterTemplate, noise_sd: float) -> WaterFit | None:
        """Fit a transient's water band (cut at the seed) to the template: frequency vs the seed, no extra
        damping. None for an all-zero transient (nothing to fit)."""
        r = self.reg
        m, dt = self.m, self.dt
        z = kernels.cross_product(band, tpl.band, m)
        white = 2.0 * noise_sd ** 2 / self.scan.n_points
        v_point = white * self.power  # noise variance of one decimated sample
        if not v_point > 0:
            return None
        half = r["search_half_width_hz"]
        # (the transient-noise term is unused: the damping is fixed)
        out = kernels.register(z, tpl.abs2, tpl.noise, tpl.noise, dt, 0.0, half, r["grid_step_hz"], 0.0, 0.0)
        if out[5] > 0.0:
            out = kernels.register(z, tpl.abs2, tpl.noise, tpl.noise, dt, 0.0, 3.0 * half, r["grid_step_hz"],
                                   0.0, 0.0)
        f_w, _, _, _, j_w, edge = out[:6]
        misfit = (float(np.vdot(band, band).real) - j_w) / (v_point * m * (1.0 + 1.0 / tpl.n))
        # the sum over samples every dt s is (L / N) times the full-rate one: so is the curvature
        s2_w = white * (1.0 + 1.0 / tpl.n) * self.size / self.scan.n_points
        _, _, curv = kernels.fit_at(z, tpl.abs2, tpl.noise, dt, f_w, 0.0, SD_STEP_HZ)
        # a misfit above the noise (real suppression changes the water's shape a little) is model error: its
        # variance is scaled by it, as a parameter's variance by the reduced chi-square
        v_w = s2_w / curv * max(1.0, misfit) if curv > 0 else math.inf
        return WaterFit(f_w, v_w, misfit, edge <= 0.0, z)

    def phase_at(self, fit: WaterFit, tpl: WaterTemplate, f_hz: float) -> float:
        """The water's phase (rad) at frequency f_hz vs the seed."""
        wr, wi, _ = kernels.fit_at(fit.z, tpl.abs2, tpl.noise, self.dt, f_hz, 0.0, SD_STEP_HZ)
        return math.atan2(wi, wr)
