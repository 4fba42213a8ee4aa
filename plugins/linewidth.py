"""Linewidth (FWHM, Hz): water from unsuppressed reference transients, tCr of the running average otherwise.

Definition (FID-A ``op_getLW`` window, spant ``peak_info`` crossing): zero-fill the FID (x8 for water as
FID-A does, x4 for the running metabolite average as spant interpolates, recomputed per accepted transient),
phase the spectrum so the largest |S| in the window is absorptive, take the maximum of Re S in the window and
the two half-height crossings by linear interpolation; FWHM = distance between them (Hz).
- water_ref transients: window 3.7..5.7 ppm, on the single transient. -> ``fwhm_hz``
- metabolite transients: tCr window 2.9..3.1 ppm on the running mean of accepted transients of the set
  (aligned, so drift does not broaden it). -> ``fwhm_hz``; NAA (1.8..2.2 ppm) in ``fwhm_naa_hz``.
  Recomputed after each of the first 8 accepted transients, then after every ``metab_every``-th (4); between
  those the last value is reported. The summary recomputes it on the final running mean.
Not reported (null) when the peak's SNR (height / noise SD) is below ``min_peak_snr``.
"""

from __future__ import annotations

import numpy as np

from qc_daemon import kernels
from qc_daemon.model import METABOLITE, WATER_REF, TransientQC
from qc_daemon.plugin_api import FAIL, OK, WARN, CheckResult, Finding, ScanContext, SummaryPart, TransientContext
from qc_daemon.spectral import SpectralAxis, spectrum


def zero_filled(fid: np.ndarray, axis: SpectralAxis, zero_fill: int) -> tuple[np.ndarray, SpectralAxis]:
    """The spectrum of ``fid`` zero-filled x``zero_fill`` and its axis."""
    n = fid.shape[0] * zero_fill
    return spectrum(fid, n), SpectralAxis(n, axis.dwell_s, axis.f0_mhz, axis.centre_ppm)


def fwhm_hz(fid: np.ndarray, axis: SpectralAxis, window_ppm, zero_fill: int, noise_sd: float | None,
            min_peak_snr: float) -> float | None:
    """FWHM (Hz) of the largest peak of ``fid`` in ``window_ppm``, per the module definition; None if not measurable."""
    return fwhm_in_window(*zero_filled(fid, axis, zero_fill), window_ppm, noise_sd, min_peak_snr)


def fwhm_in_window(spec: np.ndarray, zf_axis: SpectralAxis, window_ppm, noise_sd: float | None,
                   min_peak_snr: float) -> float | None:
    """FWHM (Hz) of the largest peak of a (zero-filled) spectrum in ``window_ppm``; None if not measurable.

    The peak height of a zero-filled spectrum equals that of the unfilled one, so the unfilled noise SD applies.
    """
    win = zf_axis.clipped_window(*window_ppm)
    if win is None:
        return None
    i = kernels.argmax_abs(spec, win[0], win[1])
    y = np.ascontiguousarray((spec * np.exp(-1j * np.angle(spec[i]))).real)
    height, peak = kernels.max_real(y.astype(np.complex128), win[0], win[1])
    if noise_sd is not None and noise_sd > 0 and height / noise_sd < min_peak_snr:
        return None
    w = kernels.fwhm_real(y, peak, zf_axis.hz_per_point)
    return float(w) if np.isfinite(w) else None


class LinewidthCheck:
    name = "linewidth"

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["linewidth"]
        self.water: list[float] = []
        self.metab: dict[int, float | None] = {}
        self.naa: dict[int, float | None] = {}
        self._final = None

    def measure(self, ctx: TransientContext) -> CheckResult:
        if ctx.transient.kind != WATER_REF:
            return CheckResult()
        w = fwhm_hz(ctx.fid, ctx.axis, self.cfg["water_window_ppm"], self.cfg["zero_fill"], ctx.noise_sd,
                    self.cfg["min_peak_snr"])
        if w is not None:
            self.water.append(w)
        return CheckResult(fields={"fwhm_hz": w}, metrics={"fwhm_water_hz": w})

    def update(self, ctx: TransientContext, qc: TransientQC) -> None:
        if qc.kind != METABOLITE or ctx.running_fid is None:
            return
        s = qc.set
        n = ctx.n_accepted
        # the running mean changes slowly: recompute for the first 8 accepted, then every 4th (see docstring)
        due = s not in self.metab or (qc.accepted and (n <= 8 or n % self.cfg["metab_every"] == 0))
        if due:
            spec, zf_axis = zero_filled(ctx.running_fid, ctx.axis, self.cfg["metab_zero_fill"])
            snr_min, noise = self.cfg["min_peak_snr"], ctx.running_noise_sd
            self.metab[s] = fwhm_in_window(spec, zf_axis, self.cfg["metab_window_ppm"], noise, snr_min)
            self.naa[s] = fwhm_in_window(spec, zf_axis, self.cfg["naa_window_ppm"], noise, snr_min)
        if s == 0:
            self._final = (ctx.running_fid, ctx.axis, ctx.running_noise_sd)
        qc.fwhm_hz = self.metab[s]
        qc.metrics["fwhm_metab_hz"] = self.metab[s]
        qc.metrics["fwhm_naa_hz"] = self.naa[s]

    def finish(self, ctx: ScanContext) -> SummaryPart:
        f0 = self.scan.f0_mhz
        water = float(np.median(self.water)) if self.water else None
        metab = self.metab.get(0, next(iter(self.metab.values()), None)) if self.metab else None
        if self._final is not None:  # the latest running mean, whatever the update cadence (read-only: a
            fid, axis, noise = self._final  # mid-scan summary must not change later per-transient results)
            spec, zf_axis = zero_filled(fid, axis, self.cfg["metab_zero_fill"])
            metab = fwhm_in_window(spec, zf_axis, self.cfg["metab_window_ppm"], noise, self.cfg["min_peak_snr"])
        part = SummaryPart(fields={"fwhm_water_hz": water, "fwhm_metab_hz": metab},
                           details={"fwhm_water_each_hz": self.water, "fwhm_naa_hz": self.naa.get(0)})
        for value, label, warn, fail in (
                (water, "water linewidth", self.cfg["water_warn_ppm"], self.cfg["water_fail_ppm"]),
                (metab, "tCr linewidth", self.cfg["metab_warn_ppm"], self.cfg["metab_fail_ppm"])):
            if value is None:
                continue
            ppm = value / f0
            if ppm > fail:
                part.findings.append(Finding(FAIL, f"{label} {value:.1f} Hz: consider reshim", label, value))
            elif ppm > warn:
                part.findings.append(Finding(WARN, f"{label} {value:.1f} Hz: consider reshim", label, value))
            else:
                part.findings.append(Finding(OK, f"{label} {value:.1f} Hz", label, value))
        return part
