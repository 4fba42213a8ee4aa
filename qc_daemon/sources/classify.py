"""Decide from the signal which transients are unsuppressed water references (header flags are not trusted).

Definitions (docs/results.md, "Transient kinds"):
- A crude coil combination y_i = sum_c conj(a_c) x_ic / |a|, a_c = sum over transients and the first
  16 output points of x_ic (the coils' common early-signal direction; no noise model needed here).
- ``energy`` E_i = sum |y_i|^2 over the first 16 output points.
- ``water_share`` W_i: fraction of the spectral power of y_i within +-0.5 ppm of water (4.65 ppm), and
  ``water_peak``: the largest |S| of the spectrum lies in that window. A transient is *water-shaped* when both
  hold with W_i >= 0.5. Lipid (0.9-1.3 ppm) and most motion artefacts are not water-shaped.
- Water references: water-shaped transients above the largest gap in log E when that gap is at least
  ``ENERGY_GAP`` (30x). Unsuppressed water is 10^2-10^6 x the early energy of a suppressed transient (real
  files here: 600x, 5x10^5x), a lipid or motion average a few to ~10^3 x but not water-shaped, so it is never
  taken for a water reference. Works for 1, 2 and 3 transients, and for references anywhere in the scan.
- No such gap (every transient alike): a *water-only* scan when every transient is water-shaped and the
  mean spectrum's water dominance D (water peak height over the largest deviation from a straight line
  in 1.9..3.4 ppm, in the phased real spectrum) is at least ``WATER_ONLY_DOMINANCE``; else all metabolite.
  Suppressed scans, even water-dominated ones, keep metabolite peaks within ~10^2 of residual water.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model import DEFAULT_CENTRE_PPM, METABOLITE, WATER_REF

WATER_PPM = 4.65
WATER_HALF_WIDTH_PPM = 0.5
MIN_WATER_SHARE = 0.5
ENERGY_GAP = 30.0
WATER_ONLY_DOMINANCE = 300.0
METABOLITE_WINDOW_PPM = (1.9, 3.4)
EARLY_POINTS = 16


@dataclass
class Classification:
    """Kinds per transient and the measurements they came from (for notes and tests)."""

    kinds: list[str]
    energy: np.ndarray
    water_share: np.ndarray
    water_shaped: np.ndarray
    dominance: float | None  # water dominance of the mean spectrum, when every transient was alike
    water_only: bool

    def note(self) -> str | None:
        return kinds_note(self.kinds, self.dominance if self.water_only else None)


def kinds_note(kinds: list[str], water_only_dominance: float | None) -> str | None:
    """The readers' (and the bridge's) words for the kinds found; ``water_only_dominance``: D of a water-only
    scan, None otherwise."""
    if water_only_dominance is not None:
        return (f"water-only scan: all {len(kinds)} transient(s) are unsuppressed water (water dominance "
                f"{water_only_dominance:.0f}); water metrics only")
    n_ref = sum(k == WATER_REF for k in kinds)
    if n_ref:
        return f"{n_ref} unsuppressed water-reference transient(s) recognised from the signal"
    return None


def crude_combination(data: np.ndarray, oversampling: int = 1) -> np.ndarray:
    """y (transients x samples) from data (transients x coils x samples): see the module definition."""
    data = np.asarray(data)
    early = data[:, :, :EARLY_POINTS * oversampling].sum(axis=(0, 2))
    norm = float(np.linalg.norm(early))
    w = early.conj() / norm if norm > 0 else np.full(data.shape[1], 1.0 / math.sqrt(data.shape[1]))
    return np.einsum("c,tcs->ts", w, data)


def _ppm_axis(n: int, dwell_s: float, f0_mhz: float, centre_ppm: float) -> np.ndarray:
    return centre_ppm + (np.arange(n) - n // 2) / (n * dwell_s) / f0_mhz


def classify(data: np.ndarray, dwell_s: float, f0_mhz: float, oversampling: int = 1,
             centre_ppm: float = DEFAULT_CENTRE_PPM) -> Classification:
    """Classify transients x coils x samples (``dwell_s``: the output dwell, before oversampling removal)."""
    y = crude_combination(data, oversampling)
    n_t, n_s = y.shape
    energy = (np.abs(y[:, :EARLY_POINTS * oversampling]) ** 2).sum(axis=1)
    spec = np.fft.fftshift(np.fft.fft(y, axis=1), axes=1)
    ppm = _ppm_axis(n_s, dwell_s / oversampling, f0_mhz, centre_ppm)
    in_water = np.abs(ppm - WATER_PPM) <= WATER_HALF_WIDTH_PPM
    power = np.abs(spec) ** 2
    total = power.sum(axis=1)
    share = np.where(total > 0, power[:, in_water].sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
    peak_in_water = in_water[np.argmax(power, axis=1)]
    shaped = peak_in_water & (share >= MIN_WATER_SHARE)
    kinds = [METABOLITE] * n_t
    log_e = np.log10(np.maximum(energy, np.finfo(float).tiny))
    order = np.sort(log_e)
    gaps = np.diff(order)
    if gaps.size and gaps.max() >= math.log10(ENERGY_GAP):
        j = int(np.argmax(gaps))
        threshold = 0.5 * (order[j] + order[j + 1])
        kinds = [WATER_REF if (shaped[i] and log_e[i] > threshold) else METABOLITE for i in range(n_t)]
        return Classification(kinds, energy, share, shaped, None, False)
    dominance = water_dominance(spec, ppm) if shaped.all() else None
    water_only = dominance is not None and dominance >= WATER_ONLY_DOMINANCE
    if water_only:
        kinds = [WATER_REF] * n_t
    return Classification(kinds, energy, share, shaped, dominance, water_only)


def water_dominance(spec: np.ndarray, ppm: np.ndarray) -> float:
    """D of the mean of per-transient spectra (transients x points), each phased so its water peak is real:
    water peak height / max |Re S - straight line| in METABOLITE_WINDOW_PPM (see the module definition)."""
    return dominance_of_mean(np.abs(spec).mean(axis=0), ppm)


def dominance_of_mean(mag: np.ndarray, ppm: np.ndarray) -> float:
    """D of a mean magnitude spectrum (see :func:`water_dominance`)."""
    idx = np.flatnonzero(np.abs(ppm - WATER_PPM) <= WATER_HALF_WIDTH_PPM)
    peak = int(idx[np.argmax(mag[idx])])
    height = float(mag[peak])
    sel = (ppm >= METABOLITE_WINDOW_PPM[0]) & (ppm <= METABOLITE_WINDOW_PPM[1])
    if sel.sum() < 8 or height <= 0:
        return 0.0
    # the water line's tail in |S| falls as 1/distance (dispersion) and 1/distance^2 (absorption):
    # a least-squares fit of {1, 1/d, 1/d^2} removes it, narrow metabolite lines remain
    dist = np.abs(ppm[sel] - ppm[peak])
    basis = np.stack([np.ones_like(dist), 1.0 / dist, 1.0 / dist ** 2], axis=1)
    yv = mag[sel]
    coef, *_ = np.linalg.lstsq(basis, yv, rcond=None)
    level = float(np.max(np.abs(yv - basis @ coef)))
    return height / level if level > 0 else math.inf


CLASSIFY_POINTS = 512  # output points per transient the readers classify on (the water line and its tail)


class StreamClassifier:
    """The live rule: each transient's kind decided when it arrives, by the rule of :func:`classify` applied
    to the transients seen so far (it cannot wait for the ones to come). Coil weights are the running sum of
    the early signal; a transient's water share and peak are measured once, with the weights of its arrival;
    energies are re-weighted with the current weights at every decision. The kinds agree with the whole-file
    rule on every real file and fixture (tests/test_bridge.py); they can differ only when a later transient
    opens a larger energy gap than the ones seen so far."""

    def __init__(self, dwell_s: float, f0_mhz: float, oversampling: int = 1,
                 centre_ppm: float = DEFAULT_CENTRE_PPM):
        self.os = oversampling
        self.n_samples = CLASSIFY_POINTS * oversampling
        self.ppm: np.ndarray | None = None
        self._axis = (dwell_s / oversampling, f0_mhz, centre_ppm)
        self._early_sum: np.ndarray | None = None
        self._early: list[np.ndarray] = []
        self._shaped: list[bool] = []
        self._mag_sum: np.ndarray | None = None
        self.kinds: list[str] = []

    def add(self, data: np.ndarray) -> str:
        """The kind of the next transient (coils x samples)."""
        x = np.asarray(data)[:, :self.n_samples]
        early = x[:, :EARLY_POINTS * self.os]
        self._early.append(np.array(early, dtype=np.complex64))
        self._early_sum = early.sum(axis=1) if self._early_sum is None else self._early_sum + early.sum(axis=1)
        w = self._weights()
        y = w @ x
        spec = np.fft.fftshift(np.fft.fft(y))
        if self.ppm is None or self.ppm.size != spec.size:
            self.ppm = _ppm_axis(spec.size, *self._axis)
        in_water = np.abs(self.ppm - WATER_PPM) <= WATER_HALF_WIDTH_PPM
        power = np.abs(spec) ** 2
        total = power.sum()
        share = power[in_water].sum() / total if total > 0 else 0.0
        self._shaped.append(bool(in_water[np.argmax(power)] and share >= MIN_WATER_SHARE))
        mag = np.abs(spec)
        self._mag_sum = mag if self._mag_sum is None else self._mag_sum + mag
        log_e, threshold = self._energy_gap(w)
        if threshold is not None:
            kind = WATER_REF if self._shaped[-1] and log_e[-1] > threshold else METABOLITE
        elif all(self._shaped) and dominance_of_mean(self._mag_sum / len(self._shaped), self.ppm) \
                >= WATER_ONLY_DOMINANCE:
            kind = WATER_REF
        else:
            kind = METABOLITE
        self.kinds.append(kind)
        return kind

    def _weights(self) -> np.ndarray:
        """Coil weights from the running sum of the early signal (as :func:`crude_combination`)."""
        norm = float(np.linalg.norm(self._early_sum))
        n = self._early_sum.shape[0]
        return self._early_sum.conj() / norm if norm > 0 else np.full(n, 1.0 / math.sqrt(n))

    def _energy_gap(self, w: np.ndarray) -> tuple[np.ndarray, float | None]:
        """log10 early energies of the transients so far (weights ``w``) and the log threshold of the largest
        gap when it is at least ENERGY_GAP, else None."""
        energy = (np.abs(np.einsum("c,tcs->ts", w, np.stack(self._early))) ** 2).sum(axis=1)
        log_e = np.log10(np.maximum(energy, np.finfo(float).tiny))
        order = np.sort(log_e)
        gaps = np.diff(order)
        if gaps.size and gaps.max() >= math.log10(ENERGY_GAP):
            j = int(np.argmax(gaps))
            return log_e, 0.5 * (order[j] + order[j + 1])
        return log_e, None

    def note(self) -> str | None:
        """The readers' note on the kinds decided (:func:`kinds_note`): water-only when every transient is
        water and no energy gap separates them, as :func:`classify` decides it."""
        if not self.kinds or self._early_sum is None:
            return None
        water_only = all(k == WATER_REF for k in self.kinds) and self._energy_gap(self._weights())[1] is None
        dominance = dominance_of_mean(self._mag_sum / len(self._shaped), self.ppm) if water_only else None
        return kinds_note(self.kinds, dominance)
