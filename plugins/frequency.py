"""Frequency and phase: single-shot shift vs the scan reference, a causal trend, drift rate and total drift.

Definitions (docs/results.md):
- ``freq_hz``: measured shift of this transient vs the reference of its (kind, edit set), Hz, + = towards
  higher ppm (the correction to apply is the negative). From spectral registration in the metabolite band
  1.85..4.05 ppm (water band 3.7..5.7 ppm for water references), seeded by the trend prediction.
- ``phase_deg``: zero-order phase vs the reference (degrees, -180..180).
- ``freq_trend_hz``: the engine's trend rule (``tracking.Trend``: least-squares line through the accepted
  metabolite transients of the last ``tracking.trend_window_s``, at least 4 points spanning 5 s, else their
  median), this one included, evaluated at this transient's time.
- ``drift_rate_hz_per_min``: slope of that line (Hz/min).
Summary: ``drift_hz_per_min`` = slope of a least-squares line through all accepted metabolite frequencies
vs time; ``drift_total_hz`` = trend at the last accepted metabolite transient (the reference is at 0 Hz).
Minimum evidence: drift rate, drift total and the per-transient ``drift_state`` need ``min_drift_transients``
accepted metabolite transients spanning ``min_drift_span_s``; before that they are null ("collecting", the
reason in ``unmeasured``) and raise no finding. The summary drift rate is also null until its standard error
(scatter about the line) is below ``max_rate_se_fraction`` x ``warn_rate_hz_per_min``. The trend itself
still seeds the registration.
"""

from __future__ import annotations

import math

import numpy as np

from qc_daemon.config import toml_section
from qc_daemon.model import METABOLITE
from qc_daemon.plugin_api import (
    FAIL,
    OK,
    WARN,
    CheckResult,
    ConfigSpec,
    Declaration,
    Display,
    Finding,
    FindingKind,
    Limit,
    Metric,
    PanelRow,
    Recovered,
    ScanContext,
    SummaryField,
    SummaryLine,
    SummaryPart,
    TracePlot,
    TransientContext,
    grade,
)
from qc_daemon.plugin_api import Column as Col
from qc_daemon.tracking import FilterParams, Trend, smooth

_FREQ = "Hz, + = towards higher ppm: measured shift vs the scan reference (the correction is the negative)"
DECLARATION = Declaration(
    fields=(Metric("freq_hz", "Hz", "single-shot shift vs the reference of its (kind, edit set), " + _FREQ,
                   "frequency"),
            Metric("phase_deg", "deg", "zero-order phase vs the reference, -180..180", "phase")),
    metrics=(
        Metric("freq_pred_hz", "Hz", "the causal trend's prediction for this transient, before it was measured"),
        Metric("freq_pred_sd_hz", "Hz", "SD of freq_pred_hz from the trend's scatter"),
        Metric("freq_sd_hz", "Hz", "SD of freq_hz from the curvature of the fit quality, made honest"),
        Metric("phase_sd_deg", "deg", "SD of phase_deg"),
        Metric("freq_metab_hz", "Hz", "the metabolite band's own estimate"),
        Metric("freq_metab_sd_hz", "Hz", "its SD"),
        Metric("freq_water_hz", "Hz", "the residual water's own estimate (null: no water fit, reason given)"),
        Metric("freq_water_sd_hz", "Hz", "its SD"),
        Metric("water_misfit", "1", "water fit residual / expected noise energy (1 = template shape)"),
        Metric("freq_model", "", "which components made freq_hz"),
        Metric("amplitude_rel", "1", "|c| of the registration (1 = as strong as the reference mean)"),
        Metric("amplitude_matched", "1", "|c| at no extra damping: a peak-height-like ratio"),
        Metric("damping_hz", "Hz", "extra Lorentzian FWHM vs the reference"),
        Metric("is_reference", "", "true for the first transient of a set: it is the reference"),
        Metric("freq_causal_hz", "Hz", "the causal Kalman filter's best estimate of this transient's frequency"),
        Metric("freq_causal_sd_hz", "Hz", "its SD"),
        Metric("freq_trend_hz", "Hz", "the causal trend at this transient (module docstring)", "trend"),
        Metric("freq_trend_ppm", "ppm", "freq_trend_hz / f0"),
        Metric("drift_rate_hz_per_min", "Hz/min", "slope of that trend (null while collecting)", "drift rate"),
        Metric("drift_state", "", "ok | warn | fail for |freq_trend_ppm| against the limits; collecting before"),
    ),
    summary=(
        SummaryField("drift_hz_per_min", "Hz/min", "slope of a least-squares line through all accepted "
                     "metabolite frequencies vs time; null until its SE is small enough", "drift rate",
                     Recovered("drift_rate_hz_per_min", METABOLITE)),
        SummaryField("drift_total_hz", "Hz", "the trend at the last accepted metabolite transient",
                     "drift total", Recovered("freq_trend_hz", METABOLITE)),
    ),
    findings=(FindingKind("drift_max_ppm", (OK, WARN, FAIL), "largest |trend| (ppm) against warn_band_ppm / "
                          "fail_ppm"),
              FindingKind("drift_hz_per_min", (WARN,), "|drift rate| above warn_rate_hz_per_min")),
    config=ConfigSpec(toml_section("plugins", "frequency.toml"),
                      integers=frozenset({"min_drift_transients"}),
                      ranges={"min_drift_span_s": (0.0, math.inf, True), "max_rate_se_fraction": (0.0, 1.0, False)},
                      warn_before_fail=(("warn_band_ppm", "fail_ppm"),)),
    display=Display(
        panel=(PanelRow("phase", "phase_deg", METABOLITE, 40, fmt="+.1f", suffix="°", note="  latest vs reference"),),
        columns=(Col("freq", "Hz", "freq_hz", 10, ".2f", 8, table_fmt="+.2f"),
                 Col("trend", "Hz", "freq_trend_hz", 11, ".2f", 8),
                 Col("phase", "deg", "phase_deg", 12, ".1f", 9, table_fmt="+.1f")),
        trace=TracePlot("freq_hz", "freq_trend_hz", "freq_warn_hz", "drift_rate_hz_per_min", "drift_hz_per_min",
                        ("Frequency shift, Hz (+ = higher ppm){band}", "Frequency, Hz{band} (+ = higher ppm)",
                         "Freq, Hz (+ ↑ppm){band}", "Freq, Hz{band}")),
        summary_lines=(SummaryLine("drift: {drift_hz_per_min:.2f|Hz/min}, total {drift_total_hz:.2f|Hz} "
                                   "(+ = towards higher ppm)", 10),)),
)


def _num(x: float) -> float | None:
    """A finite number, or None (JSON null) for NaN / inf."""
    return float(x) if math.isfinite(x) else None


class FrequencyCheck:
    name = "frequency"
    declaration = DECLARATION

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["frequency"]
        self.params = FilterParams.from_config(config["tracking"])
        self.trend = Trend(config["tracking"]["trend_window_s"])  # accepted metabolites, this one included
        self.sums = np.zeros(5)  # n, sum t, sum f, sum t^2, sum t f over all accepted metabolites (O(1) slope)
        self.last_trend: float | None = None
        self.min_trend = math.inf
        self.max_trend = -math.inf
        self.max_abs_trend = 0.0
        self.first_t = self.last_t = 0.0
        self.sff = 0.0  # sum of f^2 over all accepted metabolites (for the slope's standard error)

    def limits(self, scan, config) -> list[Limit]:
        f0, cfg = scan.f0_mhz, config["frequency"]
        return [Limit("freq_warn_hz", "freq_trend_hz", WARN, cfg["warn_band_ppm"] * f0, "Hz"),
                Limit("freq_fail_hz", "freq_trend_hz", FAIL, cfg["fail_ppm"] * f0, "Hz"),
                Limit("drift_warn_hz_per_min", "drift_rate_hz_per_min", WARN, cfg["warn_rate_hz_per_min"],
                      "Hz/min")]

    def measure(self, ctx: TransientContext) -> CheckResult:
        reg = ctx.reg
        pred = ctx.prediction
        sds = {"freq_sd_hz": _num(reg.freq_sd_hz), "phase_sd_deg": _num(reg.phase_sd_deg),
               "freq_metab_sd_hz": _num(reg.freq_metab_sd_hz), "freq_water_sd_hz": _num(reg.freq_water_sd_hz)}
        unmeasured: dict[str, str] = {}
        if ctx.calibration:  # its fit is biased towards a mean it is part of: an SD from it would claim too much
            for key in sds:
                sds[key] = None
                unmeasured[key] = "calibration transient: fitted against the mean of the held transients it is in"
        tracked: dict = {"freq_pred_sd_hz": _num(math.sqrt(ctx.freq_pred_var_hz2)) if ctx.freq_pred_var_hz2 >= 0
                         else None, "freq_causal_hz": None, "freq_causal_sd_hz": None}
        if tracked["freq_pred_sd_hz"] is None:
            unmeasured["freq_pred_sd_hz"] = "the trend has fewer than 3 accepted transients"
        if pred is not None and not reg.is_reference and math.isfinite(reg.freq_sd_hz) and not ctx.calibration:
            causal, causal_sd = pred.causal(reg.freq_hz, reg.freq_sd_hz)
            tracked.update({"freq_causal_hz": causal, "freq_causal_sd_hz": causal_sd})
        elif not reg.is_reference:
            unmeasured["freq_causal_hz"] = ("calibration transient" if ctx.calibration else
                                            "the frequency filter starts with the first accepted transient after "
                                            "calibration")
        water = _num(reg.freq_water_hz)
        if water is None and ctx.transient.kind == METABOLITE and not reg.is_reference:
            unmeasured["freq_water_hz"] = (reg.freq_model.partition("(")[2].rstrip(")") or
                                           "no residual water to fit (its template is below water_fit_min_snr)")
        res = CheckResult(
            fields={"freq_hz": reg.freq_hz, "phase_deg": reg.phase_deg},
            metrics={"freq_pred_hz": ctx.freq_pred_hz, **sds, "freq_metab_hz": _num(reg.freq_metab_hz),
                     "freq_water_hz": water, "water_misfit": _num(reg.water_misfit),
                     "freq_model": reg.freq_model or None, "amplitude_rel": reg.amplitude,
                     "amplitude_matched": reg.matched_amplitude,
                     "damping_hz": reg.damping_hz, "is_reference": reg.is_reference},
            unmeasured=unmeasured)
        res.metrics.update(tracked)
        return res

    def update(self, ctx: TransientContext, accepted: bool, measured: CheckResult) -> CheckResult:
        if ctx.transient.kind != METABOLITE or not accepted:
            return CheckResult()
        t, f = ctx.transient.time_s, measured.fields["freq_hz"]
        if self.sums[0] == 0:
            self.first_t = t
        self.last_t = t
        self.sums += (1.0, t, f, t * t, t * f)
        self.sff += f * f
        self.trend.add(t, f)
        trend, _, slope = self.trend.at(t)
        rate = slope * 60.0
        self.last_trend = trend
        self.min_trend, self.max_trend = min(self.min_trend, trend), max(self.max_trend, trend)
        ppm = trend / self.scan.f0_mhz
        out = CheckResult()
        short = self._too_little()
        if short:
            state, rate = "collecting", None
            out.unmeasured["drift_rate_hz_per_min"] = short
        else:
            self.max_abs_trend = max(self.max_abs_trend, abs(trend))
            state = {OK: "ok"}.get(g := grade(abs(ppm), self.cfg["warn_band_ppm"], self.cfg["fail_ppm"]), g)
        out.metrics = {"freq_trend_hz": trend, "freq_trend_ppm": ppm, "drift_rate_hz_per_min": rate,
                       "drift_state": state}
        return out

    def _too_little(self) -> str | None:
        """Why there is not yet enough evidence for a drift rate (None = enough)."""
        n = int(self.sums[0])
        need, span_s = int(self.cfg["min_drift_transients"]), float(self.cfg["min_drift_span_s"])
        span = (self.last_t - self.first_t) if n else 0.0
        if n < need or span < span_s:
            return (f"collecting: {n} accepted metabolite transient{'s' if n != 1 else ''} over {span:.0f} s, "
                    f"a drift needs {need} over {span_s:g} s")
        return None

    def _smoothed(self, ctx: ScanContext) -> tuple[dict, dict]:
        """End of scan: the smoothed frequency of every accepted metabolite transient (tracking.smooth, per
        edit set), keyed by index, and per-set statistics of the single shots."""
        params = self.params
        out: dict[str, float] = {}
        per_set: dict[str, dict] = {}
        for s in sorted({r.set for r in ctx.results if r.kind == METABOLITE}):
            rows = [r for r in ctx.results if r.kind == METABOLITE and r.set == s and r.accepted
                    and r.freq_hz is not None]
            known = [r.metrics["freq_sd_hz"] for r in rows if r.metrics.get("freq_sd_hz") is not None]
            if not known:
                continue
            # the held calibration transients have no SD of their own (their fit is self-biased): the median
            z = np.array([r.freq_hz for r in rows])
            sd = np.array([r.metrics.get("freq_sd_hz") or float(np.median(known)) for r in rows])
            sm = smooth(np.array([r.time_s for r in rows]), z, sd, params)
            out.update({str(r.index): float(v) for r, v in zip(rows, sm)})
            per_set[str(s)] = {"n_accepted": len(rows), "freq_mean_hz": float(z.mean()),
                               "freq_sd_hz": float(z.std()), "freq_sd_median_single_shot_hz": float(np.median(known)),
                               "freq_smoothed_range_hz": float(sm.max() - sm.min())}
        return out, per_set

    def finish(self, ctx: ScanContext) -> SummaryPart:
        part = SummaryPart()
        if ctx.final:
            smoothed, per_set = self._smoothed(ctx)
            part.details.update({"freq_smoothed_hz": smoothed, "per_set": per_set})
        n, st, sf, stt, stf = self.sums
        short = "no accepted metabolite transients" if self.last_trend is None else self._too_little()
        if short:
            part.unmeasured = {"drift_hz_per_min": short, "drift_total_hz": short}
            return part
        sxx = stt - st * st / n
        rate = float((stf - st * sf / n) / sxx * 60.0) if sxx > 0 else None
        se = None
        if rate is not None and n > 2:
            sff = self.sff - sf * sf / n  # scatter of the frequencies about the line -> SE of the slope
            resid = max(sff - (stf - st * sf / n) ** 2 / sxx, 0.0)
            se = math.sqrt(resid / (n - 2) / sxx) * 60.0
        limit = self.cfg["warn_rate_hz_per_min"] * self.cfg["max_rate_se_fraction"]
        if rate is not None and (se is None or se > limit):
            part.unmeasured["drift_hz_per_min"] = (
                f"collecting: drift rate {rate:+.2f} Hz/min known only to +-{se or math.inf:.2f} Hz/min; it is "
                f"judged once that is below {limit:.2f} Hz/min")
            part.details["drift_rate_uncertain_hz_per_min"] = rate
            rate = None
        part.fields = {"drift_hz_per_min": rate, "drift_total_hz": self.last_trend}
        part.details["drift_rate_se_hz_per_min"] = se
        f0 = self.scan.f0_mhz
        peak_ppm = self.max_abs_trend / f0
        part.details.update({"max_abs_trend_hz": self.max_abs_trend,
                             "trend_range_hz": self.max_trend - self.min_trend})
        text = f"frequency drift {peak_ppm:.3f} ppm ({self.max_abs_trend:.1f} Hz)"
        part.findings.append(Finding(grade(peak_ppm, self.cfg["warn_band_ppm"], self.cfg["fail_ppm"]), text,
                                     "drift_max_ppm", peak_ppm))
        if rate is not None and abs(rate) > self.cfg["warn_rate_hz_per_min"]:
            part.findings.append(Finding(WARN, f"drift rate {rate:+.2f} Hz/min", "drift_hz_per_min", rate))
        return part
