"""SNR of NAA: single-shot and running (FID-A ``op_getSNR`` / Osprey), the same above a local baseline, and a
projection to the planned end of the scan from the measured growth.

Definitions (docs/results.md, "SNR"):
- noise SD: the engine's ([noise] section): SD of Re S in -2..0 ppm after removing a least-squares quadratic;
  when -2..0 ppm lies outside the spectral width (narrow-SW 7T data) the quietest of the axis edges and the
  FID tail.
- ``snr`` (FID-A / Osprey): max Re S in 1.8..2.2 ppm / noise SD, on this transient alone (aligned, phased so
  NAA is absorptive). Null when the running mean shows no NAA peak (below).
- ``snr_running``: the same on the running mean of the accepted transients of the edit set.
- ``snr_peak_running`` (metrics): NAA height above its local baseline (:mod:`qc_daemon.peaks`) / noise SD,
  on the running mean. When the running mean has no NAA peak (maximum on the window edge, or less than
  ``snr.min_peak_snr`` SDs above the baseline within ``snr.baseline_span_ppm``), ``snr``, ``snr_running`` and
  this are null with the reason: a phantom without NAA gets no NAA SNR.
- ``snr_projected`` (metrics): snr_running x (planned / accepted)^b, b the measured growth exponent: the
  least-squares slope of log snr_running against log accepted, over the accepted averages since the reference
  formed, clipped to 0..0.5 (0.5 = white noise averaging down; less when something else limits, e.g. a
  changing lineshape). Needs ``min_growth_points`` values spanning a factor 2 in averages; before that it is
  null ("growth not measured yet") and ``snr_projected_lo``/``_hi`` give the range b = 0..0.5.
  ``snr_projected_lo``/``_hi`` (metrics): the projection at b -+ 2 SE(b), clipped to 0..0.5.
- ``averages_to_target`` (metrics): more accepted averages needed for ``snr.target`` at the measured b.
The first ``coils.calibration_transients`` transients carry no running values except the last of them (they
form the reference together); ``unmeasured`` says so.
"""

from __future__ import annotations

import math

from qc_daemon import kernels
from qc_daemon.config import toml_section
from qc_daemon.model import METABOLITE
from qc_daemon.peaks import measure_peak
from qc_daemon.plugin_api import (
    OK,
    WARN,
    CheckResult,
    Column,
    ConfigSpec,
    Declaration,
    Display,
    Finding,
    FindingKind,
    GrowthPlot,
    Limit,
    Metric,
    PanelRow,
    Recovered,
    ScanContext,
    SummaryField,
    SummaryLine,
    SummaryPart,
    TransientContext,
    grade,
)

_NAA = "max Re S in 1.8..2.2 ppm / noise SD (FID-A op_getSNR)"
DECLARATION = Declaration(
    fields=(Metric("snr", "1", f"single-shot NAA SNR: {_NAA}, this transient alone (aligned, phased)", "SNR"),
            Metric("snr_running", "1", f"NAA SNR of the running mean of the accepted transients of its set: {_NAA}",
                   "running SNR")),
    metrics=(Metric("noise_sd", "1", "noise SD of Re S (the engine's [noise] window), in the data's units"),
             Metric("snr_peak_running", "1", "NAA height above its local baseline / noise SD, running mean"),
             Metric("n_accepted_set", "count", "accepted transients in the running mean of this set"),
             Metric("snr_projected", "1", "snr_running projected to the planned averages at the measured growth"),
             Metric("snr_growth_exponent", "1", "b of log snr_running = a + b log n, clipped to 0..0.5 in use"),
             Metric("snr_projected_lo", "1", "projection at b - 2 SE(b) (b = 0 before the growth is measured)"),
             Metric("snr_projected_hi", "1", "projection at b + 2 SE(b) (b = 0.5 before)"),
             Metric("averages_to_target", "count", "more accepted averages needed for snr.target")),
    summary=(SummaryField("snr_final", "1", f"running NAA SNR of edit set 0 at the end: {_NAA}", "SNR",
                          Recovered("snr_running", METABOLITE)),
             SummaryField("snr_projected", "1", "the running SNR projected to the planned averages",
                          "projected SNR", Recovered("snr_projected", METABOLITE))),
    findings=(FindingKind("snr_final", (OK, WARN), "final SNR against snr.target (when a target is set)"),),
    config=ConfigSpec(toml_section("plugins", "snr.toml"), integers=frozenset({"min_growth_points"}),
                      ranges={"target": (0.0, math.inf, True),
                              "min_peak_snr": (0.0, math.inf, True)}),
    display=Display(
        panel=(PanelRow("SNR 1 shot", "snr", METABOLITE, 50, note="  NAA, latest transient"),),
        columns=(Column("SNR", "", "snr", 40, ".1f", 5), Column("SNRrun", "", "snr_running", 41, ".1f", 6)),
        growth=GrowthPlot("snr_running", "n_accepted_set", "snr_projected", "snr_growth_exponent",
                          "snr_projected_lo", "snr_projected_hi", "averages_to_target", "snr_target",
                          ("Running SNR (NAA peak / noise SD)", "Running SNR (NAA)", "SNR (NAA)")),
        summary_lines=(SummaryLine("SNR (NAA, noise {details[noise_window]}): final {snr_final:.1f}, "
                                   "projected end of scan {snr_projected:.1f}", 30),)),
)


def peak_snr(spec, noise_sd: float, window: tuple[int, int] | None) -> float | None:
    """max(Re spec) in the index window / noise_sd (FID-A / Osprey); None when not computable."""
    if window is None or not (noise_sd > 0) or not math.isfinite(noise_sd):
        return None
    height, _ = kernels.max_real(spec, window[0], window[1])
    return float(height / noise_sd)


class GrowthFit:
    """Least squares of log snr = a + b log n over the latest running SNR at each accepted count n, kept as
    running sums (a count seen again replaces its earlier value), so each update costs the same at any n."""

    def __init__(self) -> None:
        self.points: dict[int, float] = {}
        self._sums = [0, 0.0, 0.0, 0.0, 0.0, 0.0]  # k, sum x, sum y, sum x^2, sum x y, sum y^2 (x = log n)

    def add(self, n: int, snr: float) -> None:
        old = self.points.get(n)
        if old is not None:
            self._accumulate(n, old, -1)
        self.points[n] = snr
        self._accumulate(n, snr, 1)

    def _accumulate(self, n: int, snr: float, sign: int) -> None:
        if n > 0 and snr > 0:
            x, y = math.log(n), math.log(snr)
            for i, v in enumerate((1, x, y, x * x, x * y, y * y)):
                self._sums[i] += sign * v

    def exponent(self) -> tuple[float, float] | None:
        """(b, SE of b); None with fewer than 3 usable points."""
        k, sx, sy, sxx, sxy, syy = self._sums
        if k < 3:
            return None
        cxx = sxx - sx * sx / k
        if cxx <= 0:
            return None
        b = (sxy - sx * sy / k) / cxx
        rss = max(syy - sy * sy / k - b * b * cxx, 0.0)
        return b, math.sqrt(rss / max(k - 2, 1) / cxx)


def project(snr: float, n: int, planned: int, b: float) -> float:
    return snr * (max(planned, n) / n) ** min(max(b, 0.0), 0.5)


class SnrCheck:
    name = "snr"
    declaration = DECLARATION

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["snr"]
        self.per_set_planned = max(1, scan.planned_averages // max(1, scan.n_sets))
        self.running: dict[int, dict] = {}
        self.history: dict[int, GrowthFit] = {}  # set -> running SNR by accepted count, and its growth fit
        self.window = None

    def limits(self, scan, config) -> list[Limit]:
        return [Limit("snr_target", "snr_running", "target", float(config["snr"]["target"]), "1")]

    def measure(self, ctx: TransientContext) -> CheckResult:
        if ctx.transient.kind != METABOLITE:
            return CheckResult()
        if self.window is None:
            self.window = ctx.axis.window(*self.cfg["signal_window_ppm"])
        return CheckResult(fields={"snr": peak_snr(ctx.spec, ctx.noise_sd, self.window)},
                           metrics={"noise_sd": ctx.noise_sd})

    def update(self, ctx: TransientContext, accepted: bool, measured: CheckResult) -> CheckResult:
        out = CheckResult()
        if ctx.transient.kind != METABOLITE:
            return out
        if ctx.running_spec is None:
            if ctx.running_unavailable:
                out.unmeasured["snr_running"] = ctx.running_unavailable
            return out
        s = ctx.transient.set
        noise = ctx.running_noise_sd or math.nan
        naa = measure_peak(ctx.running_spec, ctx.axis, self.cfg["signal_window_ppm"], noise, "NAA",
                           self.cfg["min_peak_snr"], self.cfg["baseline_span_ppm"])
        n = ctx.n_accepted
        state = {"snr": None, "projected": None, "n": n, "reason": naa.reason}
        if naa.height is None:
            for key in ("snr", "snr_running"):
                out.unmeasured[key] = naa.reason or "no NAA peak"
            out.fields["snr"] = None
            self.running[s] = state
            return out
        snr = peak_snr(ctx.running_spec, noise, self.window)
        out.fields["snr_running"] = snr
        out.metrics["snr_peak_running"] = naa.height / noise
        out.metrics["n_accepted_set"] = n
        state["snr"] = snr
        if snr is not None and snr > 0:
            hist = self.history.setdefault(s, GrowthFit())
            hist.add(n, snr)
            state.update(self._projection(out, hist, snr, n))
        self.running[s] = state
        return out

    def _projection(self, out: CheckResult, hist: GrowthFit, snr: float, n: int) -> dict:
        planned = self.per_set_planned
        n_lo, n_hi, count = min(hist.points), max(hist.points), len(hist.points)
        fit = None
        if count >= self.cfg["min_growth_points"] and n_hi >= 2.0 * n_lo:
            fit = hist.exponent()
        if fit is None:
            out.metrics["snr_projected"] = None
            out.metrics["snr_projected_lo"] = project(snr, n, planned, 0.0)
            out.metrics["snr_projected_hi"] = project(snr, n, planned, 0.5)
            out.unmeasured["snr_projected"] = (f"growth not measured yet ({count} running values over "
                                               f"{n_lo}..{n_hi} averages); the range assumes 0..sqrt(n)")
            return {"projected": None}
        b, se = fit
        projected = project(snr, n, planned, b)
        out.metrics.update({"snr_projected": projected, "snr_growth_exponent": b,
                            "snr_projected_lo": project(snr, n, planned, b - 2 * se),
                            "snr_projected_hi": project(snr, n, planned, b + 2 * se)})
        target = self.cfg["target"]
        if target > 0:
            be = min(max(b, 0.0), 0.5)
            if snr >= target:
                out.metrics["averages_to_target"] = 0
            elif be > 0.02:
                out.metrics["averages_to_target"] = max(0, math.ceil(n * (target / snr) ** (1.0 / be)) - n)
            else:
                out.unmeasured["averages_to_target"] = "the running SNR is not growing: more averages will not help"
        return {"projected": projected}

    def finish(self, ctx: ScanContext) -> SummaryPart:
        part = SummaryPart()
        if not self.running:
            metab = any(r.kind == METABOLITE for r in ctx.results)
            if ctx.results and not metab and ctx.final:
                part.unmeasured["snr_final"] = "water-only scan: no metabolite transients"
            elif not metab:
                part.unmeasured["snr_final"] = "no metabolite transient yet"
            return part
        state = self.running.get(0, next(iter(self.running.values())))
        part.fields = {"snr_final": state["snr"], "snr_projected": state["projected"]}
        if state["snr"] is None:
            part.unmeasured["snr_final"] = state["reason"] or "no NAA peak"
        if state["projected"] is None:
            part.unmeasured["snr_projected"] = state["reason"] or "growth not measured yet"
        part.details = {"per_set": {str(k): {"snr": v["snr"], "n_accepted": v["n"]} for k, v in self.running.items()},
                        "definition": "NAA max Re S 1.8-2.2 ppm / detrended noise SD (FID-A op_getSNR)"}
        target = self.cfg["target"]
        if target > 0 and state["snr"] is not None:
            snr = state["snr"]
            sev = grade(-snr, -target)  # below the target warns (low is bad: the ladder on the negative)
            part.findings.append(Finding(sev, f"SNR {snr:.1f} (target {target:g})", "snr_final", snr))
        return part
