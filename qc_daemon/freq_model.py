"""Per-transient frequency from every component that carries it: the metabolites and the residual water.

Residual water (often 10-30x the NAA peak in a small voxel) follows B0 exactly like the metabolites, but its
phase and amplitude wander from transient to transient with the suppression. So it gets its own free complex
amplitude, and its lineshape comes from a *phase-coherent* running mean of the water band (each accepted
transient rotated by its own water phase before it is added; a plain mean would cancel the wandering water).

Per metabolite transient (the engine drives this; docs/results.md "Frequency and phase"):

1. metabolite fit: spectral registration in ``registration.band_ppm`` against the running aligned mean
   -> f_m, its SD s_m (from the curvature of the fit, see ``kernels.fit_at``);
2. water fit: the same registration in ``registration.water_fit_band_ppm`` of the transient *before* any
   residual-water removal, against the coherent water template, damping fixed at 0 -> f_w, s_w, and its misfit
   (residual energy over the noise energy expected there; ~1 when the water has the template's shape);
3. the single-shot ``freq_hz`` is their inverse-variance mean, ``freq_sd_hz`` its SD. A fit whose misfit
   exceeds 1 (model error: real suppression changes the water's shape a little) has its variance scaled by
   the misfit, as a parameter's variance by the reduced chi-square.

The water is left out (metabolites alone, ``freq_model`` says why) when
- the scan has no significant residual water (template peak < ``water_fit_min_snr`` x the transient noise SD),
- its fit is distorted (misfit > ``water_fit_max_misfit``) or hit its search edge,
- it disagrees with the metabolites: |f_w - f_m'| > ``water_fit_max_z`` x sqrt(k_w^2 s_w^2 + k_m^2 s_m^2),
  and the metabolites are the nearer to the causal trend (when the water is nearer, the metabolite fit is
  the one lost: ``freq_hz`` is then the water's alone, ``freq_model`` "water (metabolites disagree)").

Honest SDs (``Honesty``): the three-cornered hat of water, metabolites and the causal trend over the last
``water_fit_agreement_window`` accepted transients of the set gives each component's true scatter; k^2 scales
a component's variance (combination and disagreement test) by what that scatter shows beyond its claim,
less two standard errors. The held calibration transients count only for a first test of the pair (their
fits are biased towards the templates they are part of): ``Honesty.add_calibration``.

One frequency zero: the water template is one for the scan (every edit set), its 0 Hz the mean of the held
calibration transients. Each set's metabolite reference has its own frame (its seed's registration noise;
for an edited set, few and weak lines): over the same window the mean of f_w - f_m, shrunk by its standard
error (James-Stein), is that frame's offset,
and f_m' = f_m + offset is the metabolite estimate on the scan's frame. Without residual water an edited
scan's frame is set 0's: each other set's offset is minus the mean of its single shots less set 0's trend
at their times (interleaved sets share the drift; engine.py ``_set_offset``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from . import kernels

#: freq_model values
METAB_AND_WATER = "metabolites+water"
METAB_ONLY = "metabolites"
WATER_ONLY = "water (metabolites disagree)"
HAT_MIN_ROWS = 6  # Honesty: rows before the three-cornered hat replaces the held transients' pair test
TRIM_ROBUST_SD = 5.0  # Honesty: rows this many robust SDs out (a lost fit) are left out
HELD_FLOOR_ROWS = 16  # Honesty: until this many hat rows, the held test's scale is the water's floor
HELD_ALLOWANCE = 3.0  # Honesty's pair test: a held transient's d^2 is allowed this many times v_w + v_m


@dataclass
class WaterTemplate:
    """Phase-coherent running sum of the band-limited water (first m points) of accepted metabolite
    transients, each frequency-corrected and rotated by minus its own water phase."""

    total: np.ndarray
    n: int
    noise_var_sum: float  # sum over members of their complex noise variance per point (band-limited)
    band: np.ndarray = field(init=False)
    abs2: np.ndarray = field(init=False)
    noise: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.derive()

    def derive(self) -> None:
        self.band, self.abs2 = kernels.mean_and_power(self.total, self.n)
        self.noise = np.full(self.band.shape[0], self.noise_var)  # per point, as the kernels take it

    def add(self, band: np.ndarray, noise_var: float) -> None:
        """Add one aligned, water-phase-normalised band."""
        self.total += band
        self.n += 1
        self.noise_var_sum += noise_var
        self.derive()

    @property
    def noise_var(self) -> float:
        """Expected |noise|^2 per point of the template mean (complex variance)."""
        return self.noise_var_sum / self.n / self.n


def coherent_seed(bands: list[np.ndarray]) -> np.ndarray:
    """Phase-coherent sum of water bands whose water phase differs: each rotated onto the strongest, then
    onto the first-pass sum (the unaligned frequencies stay: the scan's 0 Hz is their mean, as for the
    metabolite reference)."""
    anchor = max(bands, key=lambda b: float(np.vdot(b, b).real))
    total = anchor
    for _ in range(2):
        total = sum(b * np.exp(-1j * np.angle(np.vdot(total, b))) for b in bands)
    return np.asarray(total, dtype=np.complex128)


class FrameOffset:
    """Mean of f_water - f_metab over a sliding window (one per edit set): the offset (Hz) between that set's
    metabolite reference frame and the water template's, which is the scan's."""

    def __init__(self, window: int):
        self.diffs: deque[float] = deque(maxlen=max(int(window), 1))
        self._sum = 0.0
        self._sum2 = 0.0

    def add(self, diff_hz: float) -> None:
        if len(self.diffs) == self.diffs.maxlen:
            old = self.diffs[0]
            self._sum -= old
            self._sum2 -= old * old
        self.diffs.append(diff_hz)
        self._sum += diff_hz
        self._sum2 += diff_hz * diff_hz

    def mean_and_se2(self) -> tuple[float, float]:
        """(mean Hz, its squared standard error Hz^2); (0, inf) before 4 differences."""
        n = len(self.diffs)
        if n < 4:
            return 0.0, math.inf
        mean = self._sum / n
        return mean, max(self._sum2 / n - mean * mean, 0.0) / (n - 1)

    def offset(self) -> float:
        """Hz; 0 before 4 differences. The mean shrunk towards 0 by max(0, 1 - SE^2 / mean^2) (James-Stein):
        an offset within its own noise (scattered water, few transients) is not applied at full size."""
        n = len(self.diffs)
        if n < 4:
            return 0.0
        mean = self._sum / n
        se2 = max(self._sum2 / n - mean * mean, 0.0) / (n - 1)
        return mean * max(0.0, 1.0 - se2 / (mean * mean)) if mean != 0.0 else 0.0


class Honesty:
    """Is each component's SD honest? The three-cornered hat over a sliding window (one per edit set): with
    r_w = f_w - trend, r_m = f_m' - trend and d = f_w - f_m', the trend's own error and the transients'
    jitter are common to r_w and r_m, so the water's true variance is (V(d) + V(r_w) - V(r_m)) / 2 and the
    metabolites' (V(d) + V(r_m) - V(r_w)) / 2 (V: sample variance over the window), each the mean of a
    per-row term whose scatter gives its standard error se (the three series' correlations included; rows
    beyond 5 robust SDs in any series, a lost fit, left out). From ``HAT_MIN_ROWS`` rows, the claim (median
    over the window) is scaled by k^2 = max(1, (true - se) / claimed): by what the data show beyond one SE,
    so a chance fluctuation of an honest SD's estimate (it is re-estimated every 4 transients) changes
    little, while a water line whose apparent frequency does not follow B0 (or a weak metabolite fit) is
    weighted down. Before that, the held calibration transients' pair test (``add_calibration``)."""

    def __init__(self, window: int):
        self._rows = np.empty((max(int(window), 1), 5))  # a ring: (d, r_w, r_m, v_w, v_m) per transient
        self.n_rows = 0
        self._next = 0
        self._cached = (1.0, 1.0)
        self._held_k2 = 1.0  # the held transients' pair test's scale on the water's variance (1: passed)
        self._claimed_w = math.nan  # median claimed water variance (Hz^2) of the hat's last window
        self._added = 0  # rows since the scales were last computed
        self._calibration: list[tuple[float, float, float]] = []  # held transients: (f_w - f_m, v_w, v_m)

    def add(self, f_w: float, f_m: float, trend: float, v_w: float, v_m: float) -> None:
        row = (f_w - f_m, f_w - trend, f_m - trend, v_w, v_m)
        if all(math.isfinite(x) for x in row):
            self._rows[self._next] = row
            self._next = (self._next + 1) % self._rows.shape[0]
            self.n_rows = min(self.n_rows + 1, self._rows.shape[0])
            self._added += 1

    def add_calibration(self, f_w: float, f_m: float, trend: float, v_w: float, v_m: float) -> None:
        """A held calibration transient. Both of its fits are biased towards templates it is part of (and
        shrunk differently: within a drifting calibration window their difference follows the drift), so it
        tests only the pair, with room: when the held differences fail the chi-square test
        sum(d^2 / (HELD_ALLOWANCE (v_w + v_m))) <= K + 3 sqrt(2K) (K >= 4), the water's variance is scaled to
        mean(d^2) - median(v_m) (the largest such scale) until the hat takes over, and the floor of the hat's
        until it has ``HELD_FLOOR_ROWS`` rows (else the first transients after calibration would trust a
        distorted line). Measured without the allowance (32 coils, NAA SNR 4):
        chi^2 / K 6.7-9.2 for distorted water (1 Hz off B0 per transient) in 4 of 6 scans, 1.1-2.2 for water
        that follows B0, the 2.2 under a 4 Hz/min drift; with 4 held per set (MEGA) higher by chance."""
        row = (f_w - f_m, v_w, v_m)
        if not all(math.isfinite(x) for x in row):
            return
        self._calibration.append(row)
        a = np.array(self._calibration)
        k = a.shape[0]
        chi2 = float(np.sum(a[:, 0] ** 2 / (HELD_ALLOWANCE * (a[:, 1] + a[:, 2]))))
        if k >= 4 and chi2 > k + 3.0 * math.sqrt(2.0 * k):  # once failed, the largest scale stands
            true_w = float(np.mean(a[:, 0] ** 2) - np.median(a[:, 2]))
            self._held_k2 = max(self._held_k2, true_w / float(np.median(a[:, 1])))
            self._cached = (self._held_k2, 1.0)

    def scales2(self) -> tuple[float, float]:
        """(k_w^2, k_m^2) >= 1: the factors on the water's and the metabolites' claimed variance; before
        ``HAT_MIN_ROWS`` rows, the calibration test's (``add_calibration``). Recomputed every 4 new rows (the
        window of 32 moves slowly; this runs once per transient)."""
        if self.n_rows >= HAT_MIN_ROWS and (self._added >= 4 or self.n_rows <= HAT_MIN_ROWS + 1):
            k_w2, k_m2 = self._scales2()
            if self.n_rows < HELD_FLOOR_ROWS:  # a few rows cannot clear a line the held transients failed
                k_w2 = max(k_w2, self._held_k2)
            self._cached, self._added = (k_w2, k_m2), 0
        return self._cached

    def distortion_var(self) -> float:
        """Hz^2: the part of the water's per-transient variance that is not B0 (its apparent frequency moving
        on its own), (k_w^2 - 1) x its median claimed variance over the hat's window; 0 for an honest line or
        before the hat."""
        k_w2 = self._cached[0]
        if k_w2 <= 1.0 or not math.isfinite(self._claimed_w):
            return 0.0
        return (k_w2 - 1.0) * self._claimed_w

    def _scales2(self) -> tuple[float, float]:
        # a lost fit (one wild single shot) would dominate the squares: rows beyond 5 robust SDs are left out;
        # the per-row terms' scatter gives each true variance's standard error, correlations included
        k, true_w, se_w, claimed_w, true_m, se_m, claimed_m = kernels.three_cornered_hat(
            self._rows[: self.n_rows], TRIM_ROBUST_SD)
        if k < HAT_MIN_ROWS:
            return self._cached
        self._claimed_w = claimed_w
        return self._scale2(true_w, se_w, claimed_w), self._scale2(true_m, se_m, claimed_m)

    @staticmethod
    def _scale2(true: float, se: float, claimed: float) -> float:
        if not claimed > 0:
            return 1.0
        return max(1.0, (true - se) / claimed)


def frame_shift(frame0: FrameOffset, honesty0: Honesty, n_held: int) -> float:
    """Hz to subtract to move the water template's frame onto set 0's metabolite frame. The two zeros are the
    held transients' mean apparent frequency of each: they differ only where the water's apparent frequency
    moves on its own (variance D per transient, ``Honesty.distortion_var``), by an offset O of prior variance
    P = D / n_held. Set 0's mean difference f_w - f_m estimates O with squared error se2; it is applied
    shrunk by P / (P + se2), the least-squares weight: not at all for water that follows B0 (P = 0)."""
    prior = honesty0.distortion_var() / max(n_held, 1)
    if prior <= 0.0:
        return 0.0
    mean, se2 = frame0.mean_and_se2()
    return mean * prior / (prior + se2) if math.isfinite(se2) else 0.0


def water_nearer_trend(f_w: float, v_w: float, f_m: float, v_m: float, trend: float, trend_var: float,
                       jitter_hz: float) -> bool:
    """When water and metabolites disagree: is the water the likelier given the trend, each distance in units
    of its own SD with the trend's variance and the jitter's added? (Hz, variances Hz^2; a NaN trend variance
    counts as 0.) Raw distances would let a distorted line that has pulled the trend with it win again."""
    common = (trend_var if math.isfinite(trend_var) else 0.0) + jitter_hz ** 2
    return abs(f_w - trend) / math.sqrt(v_w + common) < abs(f_m - trend) / math.sqrt(v_m + common)


def inverse_variance(f_m: float, v_m: float, f_w: float, v_w: float) -> tuple[float, float]:
    """(mean, variance) of two independent estimates weighted by their inverse variances."""
    w_m, w_w = 1.0 / v_m, 1.0 / v_w
    return (w_m * f_m + w_w * f_w) / (w_m + w_w), 1.0 / (w_m + w_w)
