"""A peak above its local baseline: height, FWHM, or the reason there is no peak to measure.

Definition (docs/results.md, "Peaks"), on a spectrum S (zero-filled or not) and a window lo..hi ppm:
1. Phase S so the largest |S| in the window is absorptive; y = Re S.
2. The peak is the largest y in the window. It must lie inside the window, not on its first or last
   ``edge_ppm`` (0.015 ppm, at least one point) (a maximum on the edge is a slope: a water tail, a neighbouring line).
3. Local baseline: the straight line through the lowest y in the outer half of ``span_ppm`` left of the peak
   and the lowest y in the outer half right of it (the water tail, macromolecules; for tCr the right point
   lies beyond Cho at 3.2 ppm, so the Cr-Cho valley does not lift the baseline).
4. height = y(peak) - baseline(peak). It must be at least ``min_snr`` x the noise SD of Re S, and the baseline
   under the peak must not lie more than ``min_snr`` noise SDs below zero (in a phased spectrum the water tail
   and macromolecules lie above zero; a deeply negative baseline is a neighbouring line's dispersion or ringing).
5. FWHM: the half-height crossings of y - baseline on each side of the peak, by linear interpolation
   (spant ``peak_info``), found within ``span_ppm`` of the peak; else the line is broader than can be measured.
Without a baseline (``baseline=False``, water references: one dominant line) steps 3-4 use y itself.
A value is returned with ``reason = None``; otherwise the values are None and ``reason`` says why in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .spectral import SpectralAxis


@dataclass
class Peak:
    height: float | None  # above the local baseline, spectrum units
    fwhm_hz: float | None
    ppm: float | None
    reason: str | None = None  # why there is no value (None = measured)
    raw_height: float | None = None  # max Re S in the window, no baseline (the FID-A / Osprey SNR numerator)


def measure_peak(spec: np.ndarray, axis: SpectralAxis, window_ppm, noise_sd: float | None, label: str,
                 min_snr: float = 5.0, span_ppm: float = 0.3, edge_ppm: float = 0.015,
                 baseline: bool = True) -> Peak:
    """Measure the peak named ``label`` in ``window_ppm`` of ``spec`` (fftshifted, on ``axis``)."""
    lo, hi = window_ppm
    win = axis.clipped_window(lo, hi)
    if win is None:
        return Peak(None, None, None, f"{lo:g}..{hi:g} ppm lies outside the spectral width")
    i0, i1 = win
    phased = spec * np.exp(-1j * np.angle(spec[kernels.argmax_abs(spec, i0, i1)]))
    y = np.ascontiguousarray(phased.real)
    raw, p = kernels.max_real(phased, i0, i1)
    per_ppm = axis.f0_mhz / axis.hz_per_point  # points per ppm
    edge = max(1, int(round(edge_ppm * per_ppm)))
    if p < i0 + edge or p >= i1 - edge:
        return Peak(None, None, None, f"no {label} peak in {lo:g}..{hi:g} ppm (the largest value is on the "
                                      "window edge: a slope, not a peak)", raw_height=float(raw))
    span = max(4, int(round(span_ppm * per_ppm)))
    a0, a1 = max(0, p - span), min(y.shape[0], p + span + 1)
    if baseline:
        half = span // 2
        l0, l1 = a0, max(a0 + 1, p - half)
        r0, r1 = min(a1 - 1, p + half + 1), a1
        left = l0 + int(np.argmin(y[l0:l1]))
        right = r0 + int(np.argmin(y[r0:r1]))
        slope = (y[right] - y[left]) / max(right - left, 1)
        local = y[a0:a1] - (y[left] + slope * (np.arange(a0, a1) - left))
    else:
        local = y[a0:a1]
    height = float(local[p - a0])
    floor = float(y[p] - height)  # the baseline under the peak
    if baseline and noise_sd is not None and noise_sd > 0 and floor < -min_snr * noise_sd:
        return Peak(None, None, None, f"no {label} peak to measure: its baseline is {floor / noise_sd:.0f} noise SD "
                                      "below zero (the region is on a neighbouring line's dispersion or ringing)",
                    raw_height=float(raw))
    if noise_sd is not None and noise_sd > 0 and height < min_snr * noise_sd:
        where = "the local baseline" if baseline else "zero"
        return Peak(None, None, None, f"no {label} peak above {where} (height {height / noise_sd:.1f} noise SD, "
                                      f"needs {min_snr:g})", raw_height=float(raw))
    w = kernels.fwhm_real(np.ascontiguousarray(local), p - a0, axis.hz_per_point)
    ppm = axis.ppm_of_index(p)
    if not np.isfinite(w):
        return Peak(height, None, ppm, f"{label} line has no half-height point within {span_ppm:g} ppm of its "
                                       "peak (broader than can be measured)", raw_height=float(raw))
    return Peak(height, float(w), ppm, None, raw_height=float(raw))
