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
- it disagrees with the metabolites: |f_w - f_m| > ``water_fit_max_z`` x sqrt(s_w^2 + s_m^2 + x^2).
x^2 is the excess scatter of f_w - f_m over the last ``water_fit_agreement_window`` transients that used the
water (from 4 on; the held calibration transients do not count: their fits are biased towards the
template they are part of): 0 unless their chi-square sum(d^2 / (s_w^2 + s_m^2)) exceeds its 3-sigma limit
K + 3 sqrt(2K) (a water
line whose apparent frequency does not follow B0); then x^2 = mean(d^2) - mean(s_w^2 + s_m^2) and it is
added to the water's variance in the combination (water weighted down, never trusted beyond the data).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

#: freq_model values
METAB_AND_WATER = "metabolites+water"
METAB_ONLY = "metabolites"


@dataclass
class WaterTemplate:
    """Phase-coherent running sum of the band-limited water (first m points) of accepted metabolite
    transients, each frequency-corrected and rotated by minus its own water phase."""

    total: np.ndarray
    n: int
    noise_var_sum: float  # sum over members of their complex noise variance per point (band-limited)
    band: np.ndarray = field(init=False)
    abs2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.derive()

    def derive(self) -> None:
        self.band = np.ascontiguousarray(self.total / self.n)
        self.abs2 = self.band.real ** 2 + self.band.imag ** 2

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


class Agreement:
    """Excess scatter of the water's frequency over the metabolites' (Hz^2), over a sliding window."""

    def __init__(self, window: int):
        self.rows: deque[tuple[float, float]] = deque(maxlen=max(int(window), 1))

    def add(self, diff_hz: float, var_hz2: float) -> None:
        self.rows.append((diff_hz, var_hz2))

    def excess_var(self) -> float:
        k = len(self.rows)
        if k < 4:
            return 0.0
        d2 = np.array([d * d for d, _ in self.rows])
        v = np.array([v for _, v in self.rows])
        chi2 = float(np.sum(d2 / v))
        if chi2 <= k + 3.0 * math.sqrt(2.0 * k):
            return 0.0
        return max(float(d2.mean() - v.mean()), 0.0)


def inverse_variance(f_m: float, v_m: float, f_w: float, v_w: float) -> tuple[float, float]:
    """(mean, variance) of two independent estimates weighted by their inverse variances."""
    w_m, w_w = 1.0 / v_m, 1.0 / v_w
    return (w_m * f_m + w_w * f_w) / (w_m + w_w), 1.0 / (w_m + w_w)
