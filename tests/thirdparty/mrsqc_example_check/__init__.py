"""A third-party mrsqc check, installed only by the tests (tests/thirdparty is put on the path): the worked
example of docs/plugins.md. It imports nothing of mrsqc but the check contract (qc_daemon.plugin_api).

``residual_water_snr`` (top-level field, metabolite transients): max |S| within 4.4..4.9 ppm of this
transient / its noise SD: how much water the suppression left. Summary ``residual_water_snr_median``: its
median over the metabolite transients; WARN above ``[residual_water] warn_snr``.
"""

from __future__ import annotations

import numpy as np

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
    Limit,
    Metric,
    PanelRow,
    Recovered,
    SummaryField,
    SummaryLine,
    SummaryPart,
)

WINDOW_PPM = (4.4, 4.9)

DECLARATION = Declaration(
    fields=(Metric("residual_water_snr", "1", "max |S| in 4.4..4.9 ppm / noise SD, this transient",
                   "residual water"),),
    summary=(SummaryField("residual_water_snr_median", "1", "median of residual_water_snr over the metabolite "
                          "transients", "residual water", Recovered("residual_water_snr", "metabolite", "median")),),
    findings=(FindingKind("residual_water_snr_median", (OK, WARN), "median above warn_snr"),),
    config=ConfigSpec({"warn_snr": 1000.0}),
    display=Display(
        panel=(PanelRow("res. water", "residual_water_snr", "metabolite", 60, note="  x noise SD, latest"),),
        columns=(Column("water", "", "residual_water_snr", 60, ".0f", 6, kinds=("metabolite",)),),
        summary_lines=(SummaryLine("residual water: median {residual_water_snr_median:.1f} x noise SD", 60),)),
)


class ResidualWaterCheck:
    name = "residual_water"
    declaration = DECLARATION

    def start(self, scan, config) -> None:
        self.warn = float(config[self.name]["warn_snr"])
        self.values: list[float] = []
        self.window = None

    def limits(self, scan, config) -> list[Limit]:
        return [Limit("residual_water_warn", "residual_water_snr_median", WARN, self.warn, "1")]

    def measure(self, ctx) -> CheckResult:
        if ctx.transient.kind != "metabolite":
            return CheckResult()
        if self.window is None:
            self.window = ctx.axis.clipped_window(*WINDOW_PPM)
        if self.window is None or not ctx.noise_sd > 0:
            return CheckResult(unmeasured={"residual_water_snr": "4.4..4.9 ppm is outside the spectral width"})
        lo, hi = self.window
        value = float(np.abs(ctx.spec[lo:hi]).max() / ctx.noise_sd)
        self.values.append(value)
        return CheckResult(fields={"residual_water_snr": value})

    def update(self, ctx, accepted, measured) -> CheckResult:
        return CheckResult()

    def finish(self, ctx) -> SummaryPart:
        if not self.values:
            return SummaryPart(unmeasured={"residual_water_snr_median": "no metabolite transient"})
        median = float(np.median(self.values))
        severity = WARN if median > self.warn else OK
        return SummaryPart(fields={"residual_water_snr_median": median},
                           findings=[Finding(severity, f"residual water {median:.0f} x noise SD",
                                             "residual_water_snr_median", median)])
