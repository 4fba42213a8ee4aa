"""The noise SD every check divides by: the detrended SD of Re S in a signal-free window (FID-A op_getSNR),
with fallbacks when that window is outside the spectral width ([noise] config section)."""

from __future__ import annotations

import math

import numpy as np

from . import kernels
from .spectral import SpectralAxis


class NoiseSD:
    """SD of the noise in Re(spec) of one scan's spectra. ``label``: the window in words; ``note``: why a
    fallback is used (None when the window is inside the spectral width)."""

    def __init__(self, axis: SpectralAxis, cfg: dict):
        self.frac = float(cfg["fallback_tail_fraction"])
        self.window = axis.window(*cfg["window_ppm"])
        self.edges: list[tuple[int, int]] = []
        self.note: str | None = None
        if self.window is None:
            lo_hi, hi_lo = cfg["fallback_edges_ppm"]
            for lo, hi in ((axis.ppm_min, lo_hi), (hi_lo, axis.ppm_max)):
                win = axis.clipped_window(lo, hi)
                if win is not None and win[1] - win[0] >= 32:
                    self.edges.append(win)
            edges = [f"{axis.ppm_of_index(a):.2f}..{axis.ppm_of_index(b - 1):.2f} ppm" for a, b in self.edges]
            self.label = " / ".join(["quietest of " + ", ".join(edges)] if edges else []) + \
                (" and " if edges else "") + f"FID tail (last {self.frac:.0%} of points)"
            self.note = (f"noise window {cfg['window_ppm'][0]}..{cfg['window_ppm'][1]} ppm lies outside the "
                         f"spectral width ({axis.ppm_min:.2f}..{axis.ppm_max:.2f} ppm): SNR noise from the "
                         f"{self.label}")
        else:
            lo, hi = cfg["window_ppm"]
            self.label = f"{lo:g}..{hi:g} ppm"

    def sd(self, spec: np.ndarray, fid: np.ndarray) -> float:
        """Detrended SD in the noise window (FID-A). When that window is outside the spectral width: the
        smallest of the detrended SDs of the axis edges (below / above ``fallback_edges_ppm``, >= 32 points)
        and the FID-tail estimate scaled by sqrt(N)."""
        if self.window is not None:
            return float(kernels.detrended_sd(spec.real, self.window[0], self.window[1]))
        # the quietest estimate: a tail that still holds signal (long-T2 residual water) or an edge band with a
        # line in it can only raise an SD, never lower it below the noise
        sds = [float(kernels.detrended_sd(spec.real, a, b)) for a, b in self.edges]
        sds.append(float(kernels.tail_sd(fid, self.frac) * math.sqrt(fid.shape[0])))
        return min(sds)
