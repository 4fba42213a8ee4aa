"""Frequency and phase: single-shot shift vs the scan reference, a causal trend, drift rate and total drift.

Definitions (docs/results.md):
- ``freq_hz``: measured shift of this transient vs the reference of its (kind, edit set), Hz, + = towards
  higher ppm (the correction to apply is the negative). From spectral registration in the metabolite band
  1.85..4.05 ppm (water band 3.7..5.7 ppm for water references), seeded by the trend prediction.
- ``phase_deg``: zero-order phase vs the reference (degrees, -180..180).
- ``freq_trend_hz``: least-squares line through the accepted metabolite transients of the last
  ``trend_window_s`` (this one included; at least 4 points spanning 5 s, else their median), evaluated at this
  transient's time.
- ``drift_rate_hz_per_min``: slope of that line (Hz/min).
Summary: ``drift_hz_per_min`` = slope of a least-squares line through all accepted metabolite frequencies
vs time; ``drift_total_hz`` = trend at the last accepted metabolite transient (the reference is at 0 Hz).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from qc_daemon.model import METABOLITE, TransientQC
from qc_daemon.plugin_api import FAIL, OK, WARN, CheckResult, Finding, ScanContext, SummaryPart, TransientContext


class FrequencyCheck:
    name = "frequency"

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["frequency"]
        self.window: deque[tuple[float, float]] = deque()  # (t, f) of accepted metabolites in the trend window
        self.wsums = np.zeros(5)  # the same five sums over the window (added and removed as points come and go)
        self.sums = np.zeros(5)  # n, sum t, sum f, sum t^2, sum t f over all accepted metabolites (O(1) slope)
        self.last_trend: float | None = None
        self.min_trend = math.inf
        self.max_trend = -math.inf
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
        t, f = qc.time_s, qc.freq_hz
        row = np.array((1.0, t, f, t * t, t * f))
        self.sums += row
        self.window.append((t, f))
        self.wsums += row
        while self.window[0][0] < t - self.cfg["trend_window_s"]:
            t0, f0 = self.window.popleft()
            self.wsums -= (1.0, t0, f0, t0 * t0, t0 * f0)
        n = len(self.window)
        trend, rate = math.nan, math.nan
        if n >= 4 and t - self.window[0][0] >= 5.0:
            _, st, sf, stt, stf = self.wsums
            # centred sums: subtracting the window mean time keeps them well conditioned
            sxx = stt - st * st / n
            if sxx > 1e-9 * max(stt, 1.0):
                b = (stf - st * sf / n) / sxx
                trend, rate = float(sf / n + b * (t - st / n)), float(b * 60.0)
        if not math.isfinite(trend):
            trend = float(np.median([p[1] for p in self.window]))
        self.last_trend = trend
        self.min_trend, self.max_trend = min(self.min_trend, trend), max(self.max_trend, trend)
        self.max_abs_trend = max(self.max_abs_trend, abs(trend))
        ppm = trend / self.scan.f0_mhz
        state = "fail" if abs(ppm) > self.cfg["fail_ppm"] else "warn" if abs(ppm) > self.cfg["warn_band_ppm"] else "ok"
        qc.metrics.update({"freq_trend_hz": trend, "freq_trend_ppm": ppm, "drift_rate_hz_per_min": rate,
                           "drift_state": state})

    def finish(self, ctx: ScanContext) -> SummaryPart:
        part = SummaryPart()
        n, st, sf, stt, stf = self.sums
        if n < 2 or self.last_trend is None:
            return part
        sxx = stt - st * st / n
        rate = float((stf - st * sf / n) / sxx * 60.0) if sxx > 0 else None
        part.fields = {"drift_hz_per_min": rate, "drift_total_hz": self.last_trend}
        f0 = self.scan.f0_mhz
        peak_ppm = self.max_abs_trend / f0
        part.details = {"max_abs_trend_hz": self.max_abs_trend, "trend_range_hz": self.max_trend - self.min_trend}
        text = f"frequency drift {peak_ppm:.3f} ppm ({self.max_abs_trend:.1f} Hz)"
        if peak_ppm > self.cfg["fail_ppm"]:
            part.findings.append(Finding(FAIL, text, "drift_max_ppm", peak_ppm))
        elif peak_ppm > self.cfg["warn_band_ppm"]:
            part.findings.append(Finding(WARN, text, "drift_max_ppm", peak_ppm))
        else:
            part.findings.append(Finding(OK, text, "drift_max_ppm", peak_ppm))
        if rate is not None and abs(rate) > self.cfg["warn_rate_hz_per_min"]:
            part.findings.append(Finding(WARN, f"drift rate {rate:+.2f} Hz/min", "drift_hz_per_min", rate))
        return part
