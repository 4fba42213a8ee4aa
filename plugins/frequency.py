"""Frequency and phase: single-shot shift vs the scan reference, a causal trend, drift rate and total drift.

Definitions (docs/results.md):
- ``freq_hz``: measured shift of this transient vs the reference of its (kind, edit set), Hz, + = towards
  higher ppm (the correction to apply is the negative). From spectral registration in the metabolite band
  1.85..4.05 ppm (water band 3.7..5.7 ppm for water references), seeded by the trend prediction.
- ``phase_deg``: zero-order phase vs the reference (degrees, -180..180).
- ``freq_trend_hz``: least-squares line through the accepted metabolite transients of the last
  ``trend_window_s`` (this one included), evaluated at this transient's time.
- ``drift_rate_hz_per_min``: slope of that line (Hz/min).
Summary: ``drift_hz_per_min`` = slope of a least-squares line through all accepted metabolite frequencies
vs time; ``drift_total_hz`` = trend at the last accepted metabolite transient (the reference is at 0 Hz).
"""

from __future__ import annotations

import math

import numpy as np

from qc_daemon import kernels
from qc_daemon.model import METABOLITE, TransientQC
from qc_daemon.plugin_api import FAIL, OK, WARN, CheckResult, Finding, ScanContext, SummaryPart, TransientContext


class FrequencyCheck:
    name = "frequency"

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["frequency"]
        self.t: list[float] = []
        self.f: list[float] = []
        self.trend: list[float] = []
        self.max_abs_trend = 0.0

    def measure(self, ctx: TransientContext) -> CheckResult:
        reg = ctx.reg
        return CheckResult(
            fields={"freq_hz": reg.freq_hz, "phase_deg": reg.phase_deg},
            metrics={"freq_pred_hz": ctx.freq_pred_hz, "amplitude_rel": reg.amplitude,
                     "amplitude_matched": reg.matched_amplitude,
                     "damping_hz": reg.damping_hz, "is_reference": reg.is_reference})

    def update(self, ctx: TransientContext, qc: TransientQC) -> None:
        if qc.kind != METABOLITE or not qc.accepted:
            return
        self.t.append(qc.time_s)
        self.f.append(qc.freq_hz)
        t = np.asarray(self.t)
        sel = t >= qc.time_s - self.cfg["trend_window_s"]
        ts, fs = t[sel], np.asarray(self.f)[sel]
        trend, rate = float(np.median(fs)), math.nan
        if ts.size >= 4 and ts[-1] - ts[0] >= 5.0:
            a, b = kernels.linear_fit(ts, fs)
            if math.isfinite(b):
                trend, rate = float(a + b * qc.time_s), float(b * 60.0)
        self.trend.append(trend)
        self.max_abs_trend = max(self.max_abs_trend, abs(trend))
        ppm = trend / self.scan.f0_mhz
        state = "fail" if abs(ppm) > self.cfg["fail_ppm"] else "warn" if abs(ppm) > self.cfg["warn_band_ppm"] else "ok"
        qc.metrics.update({"freq_trend_hz": trend, "freq_trend_ppm": ppm, "drift_rate_hz_per_min": rate,
                           "drift_state": state})

    def finish(self, ctx: ScanContext) -> SummaryPart:
        part = SummaryPart()
        if len(self.t) < 2:
            return part
        a, b = kernels.linear_fit(np.asarray(self.t), np.asarray(self.f))
        rate = float(b * 60.0) if math.isfinite(b) else None
        total = self.trend[-1]
        part.fields = {"drift_hz_per_min": rate, "drift_total_hz": total}
        f0 = self.scan.f0_mhz
        peak_ppm = self.max_abs_trend / f0
        part.details = {"max_abs_trend_hz": self.max_abs_trend, "trend_range_hz": max(self.trend) - min(self.trend)}
        if peak_ppm > self.cfg["fail_ppm"]:
            part.findings.append(Finding(FAIL, f"frequency drift {peak_ppm:.3f} ppm ({self.max_abs_trend:.1f} Hz)",
                                         "drift_max_ppm", peak_ppm))
        elif peak_ppm > self.cfg["warn_band_ppm"]:
            part.findings.append(Finding(WARN, f"frequency drift {peak_ppm:.3f} ppm ({self.max_abs_trend:.1f} Hz)",
                                         "drift_max_ppm", peak_ppm))
        else:
            part.findings.append(Finding(OK, f"frequency drift {peak_ppm:.3f} ppm", "drift_max_ppm", peak_ppm))
        if rate is not None and abs(rate) > self.cfg["warn_rate_hz_per_min"]:
            part.findings.append(Finding(WARN, f"drift rate {rate:+.2f} Hz/min", "drift_hz_per_min", rate))
        return part
