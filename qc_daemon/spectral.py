"""The ppm/Hz axis of a scan and the numpy FFT steps around the numba kernels.

A spectrum here is always ``fftshift(fft(fid, n))`` (unnormalised); index n//2 is the receiver frequency,
which sits at ``scan.centre_ppm``; ppm grows with index (mrsqc's frame, as FSL-MRS's; NIfTI-MRS stores the conjugate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import ScanInfo


@dataclass(frozen=True)
class SpectralAxis:
    """Frequency axis of an n-point spectrum of a scan. ``hz_per_point`` = 1 / (n * dwell_s)."""

    n: int
    dwell_s: float
    f0_mhz: float
    centre_ppm: float

    @classmethod
    def of(cls, scan: ScanInfo, n: int | None = None) -> SpectralAxis:
        return cls(n or scan.n_points, scan.dwell_s, scan.f0_mhz, scan.centre_ppm)

    @property
    def hz_per_point(self) -> float:
        return 1.0 / (self.n * self.dwell_s)

    @property
    def ppm_min(self) -> float:
        return self.ppm_of_index(0)

    @property
    def ppm_max(self) -> float:
        return self.ppm_of_index(self.n - 1)

    def ppm_of_index(self, i: float) -> float:
        return self.centre_ppm + (i - self.n // 2) * self.hz_per_point / self.f0_mhz

    def ppm(self) -> np.ndarray:
        return self.centre_ppm + (np.arange(self.n) - self.n // 2) * self.hz_per_point / self.f0_mhz

    def index_of_ppm(self, ppm: float) -> int:
        return int(round(self.n // 2 + (ppm - self.centre_ppm) * self.f0_mhz / self.hz_per_point))

    def window(self, lo_ppm: float, hi_ppm: float) -> tuple[int, int] | None:
        """Half-open index range [i0, i1) covering lo..hi ppm, or None if any part lies outside the axis."""
        if lo_ppm < self.ppm_min or hi_ppm > self.ppm_max:
            return None
        i0 = self.index_of_ppm(lo_ppm)
        i1 = self.index_of_ppm(hi_ppm) + 1
        return (i0, i1) if i1 - i0 >= 2 else None

    def clipped_window(self, lo_ppm: float, hi_ppm: float) -> tuple[int, int] | None:
        """Like :meth:`window` but clipped to the axis; None when less than 4 points remain."""
        i0 = max(0, self.index_of_ppm(lo_ppm))
        i1 = min(self.n, self.index_of_ppm(hi_ppm) + 1)
        return (i0, i1) if i1 - i0 >= 4 else None


def fftshift(x: np.ndarray) -> np.ndarray:
    """np.fft.fftshift for 1-D arrays without np.roll's overhead (this runs several times per transient)."""
    k = x.shape[0] - x.shape[0] // 2
    return np.concatenate((x[k:], x[:k]))


def ifftshift(x: np.ndarray) -> np.ndarray:
    """np.fft.ifftshift for 1-D arrays."""
    k = x.shape[0] // 2
    return np.concatenate((x[k:], x[:k]))


def decimated_fft(x: np.ndarray, factor: int) -> np.ndarray:
    """FFT (FFT order) of ``x`` with ``factor``-times oversampling removed along the last axis: the central
    1/factor of the band, divided by ``factor`` (so a time-domain sample keeps its value). In FFT order the
    central band of ``keep`` bins is the first ``keep - keep // 2`` bins and the last ``keep // 2``."""
    spec = np.fft.fft(x, axis=-1)
    if factor == 1:
        return spec
    n = spec.shape[-1]
    keep = n // factor
    lo, hi = keep - keep // 2, keep // 2
    return np.concatenate((spec[..., :lo], spec[..., n - hi:]), axis=-1) / factor


def decimate(x: np.ndarray, factor: int) -> np.ndarray:
    """Remove ``factor``-times oversampling along the last axis (FFT, keep the central 1/factor, inverse FFT)."""
    if factor == 1:
        return x
    return np.fft.ifft(decimated_fft(x, factor), axis=-1)


def spectrum(fid: np.ndarray, n: int | None = None) -> np.ndarray:
    """fftshift(fft(fid, n)): zero-filled to n points when n > len(fid)."""
    return fftshift(np.fft.fft(fid, n))


def band_mask(axis: SpectralAxis, lo_ppm: float, hi_ppm: float, taper_lo_ppm: float = 0.08,
              taper_hi_ppm: float = 0.08) -> np.ndarray:
    """Spectral mask: 1 inside lo..hi ppm, raised-cosine tapers just inside each edge, 0 outside.

    A wider taper makes the band filter's impulse response shorter, so a strong line just outside the band
    (residual water above it) leaks into fewer early FID points.
    """
    ppm = axis.ppm()
    mask = np.zeros(axis.n)
    inside = (ppm >= lo_ppm) & (ppm <= hi_ppm)
    mask[inside] = 1.0
    for edge, sign, taper in ((lo_ppm, 1.0, taper_lo_ppm), (hi_ppm, -1.0, taper_hi_ppm)):
        x = sign * (ppm - edge) / taper  # 0 at the edge, 1 at taper inside
        ramp = inside & (x < 1.0)
        mask[ramp] = 0.5 - 0.5 * np.cos(np.pi * x[ramp])
    return mask


def band_limited(spec_fft_order: np.ndarray, mask_fft_order: np.ndarray, m: int) -> np.ndarray:
    """First m points of the FID whose spectrum is ``spec`` times ``mask``, both in FFT (unshifted) order.

    Registration works on band-limited copies of both the transient and its reference, so residual water
    and lipids outside the band cannot steer the fit, even through the truncation to the first m points.
    """
    return np.ascontiguousarray(np.fft.ifft(spec_fft_order * mask_fft_order)[:m])
