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
TRIM_ROBUST_SD = 5.0  # Honesty: rows this many robust SDs out (a lost fit) are left out


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
    beyond 5 robust SDs in any series, a lost fit, left out). The claim (median over the window) is scaled by
    k^2 = max(1, (true - 2 se) / claimed): by what the data show beyond doubt, so a chance fluctuation of an
    honest SD's estimate (it is re-estimated every 4 transients) changes little, while a water line whose
    apparent frequency does not follow B0 (or a weak metabolite fit) is weighted down."""

    def __init__(self, window: int):
        self._rows = np.empty((max(int(window), 1), 5))  # a ring: (d, r_w, r_m, v_w, v_m) per transient
        self.n_rows = 0
        self._next = 0
        self._cached = (1.0, 1.0)
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
        """A held calibration transient. Both of its fits are biased towards templates it is part of, so it
        tests only the pair: until 8 later rows exist, a water whose difference from the metabolites over the
        held ones fails the chi-square test sum(d^2 / (v_w + v_m)) <= K + 3 sqrt(2K) has its variance scaled to
        mean(d^2) - median(v_m) (else the first transients after calibration would trust a distorted line)."""
        row = (f_w - f_m, v_w, v_m)
        if all(math.isfinite(x) for x in row):
            self._calibration.append(row)
            a = np.array(self._calibration)
            k = a.shape[0]
            chi2 = float(np.sum(a[:, 0] ** 2 / (a[:, 1] + a[:, 2])))
            if k >= 4 and chi2 > k + 3.0 * math.sqrt(2.0 * k):
                true_w = float(np.mean(a[:, 0] ** 2) - np.median(a[:, 2]))
                self._cached = (max(1.0, true_w / float(np.median(a[:, 1]))), 1.0)
            else:
                self._cached = (1.0, 1.0)

    def scales2(self) -> tuple[float, float]:
        """(k_w^2, k_m^2) >= 1: the factors on the water's and the metabolites' claimed variance; before 8 rows,
        the calibration test's (``add_calibration``). Recomputed every 4 new rows (the window of 32 moves
        slowly; this runs once per transient)."""
        if self.n_rows >= 8 and (self._added >= 4 or self.n_rows <= 9):
            self._cached, self._added = self._scales2(), 0
        return self._cached

    def _scales2(self) -> tuple[float, float]:
        # a lost fit (one wild single shot) would dominate the squares: rows beyond 5 robust SDs are left out;
        # the per-row terms' scatter gives each true variance's standard error, correlations included
        k, true_w, se_w, claimed_w, true_m, se_m, claimed_m = kernels.three_cornered_hat(
            self._rows[: self.n_rows], TRIM_ROBUST_SD)
        if k < 8:
            return self._cached
        return self._scale2(true_w, se_w, claimed_w), self._scale2(true_m, se_m, claimed_m)

    @staticmethod
    def _scale2(true: float, se: float, claimed: float) -> float:
        return max(1.0, (true - 2.0 * se) / claimed) if claimed > 0 else 1.0


def inverse_variance(f_m: float, v_m: float, f_w: float, v_w: float) -> tuple[float, float]:
    """(mean, variance) of two independent estimates weighted by their inverse variances."""
    w_m, w_w = 1.0 / v_m, 1.0 / v_w
    return (w_m * f_m + w_w * f_w) / (w_m + w_w), 1.0 / (w_m + w_w)
