"""SNR: single-shot and running, NAA peak, FID-A ``op_getSNR`` / Osprey definition.

Definition: SNR = max(Re S) in the NAA window 1.8..2.2 ppm / SD(Re S) in the noise window -2..0 ppm after
removing a least-squares quadratic; S is the spectrum (no zero-fill, no apodisation) phased so NAA is
absorptive. When -2..0 ppm lies outside the spectral width (narrow-SW 7T data) the noise SD is taken from the
FID tail instead (SD of the real part of the last 25 % of points x sqrt(N)); the summary says which.
- ``snr``: this transient alone (aligned to the reference).
- ``snr_running``: the running mean of the accepted transients of this edit set.
- ``snr_projected`` (metrics): snr_running x sqrt(planned per set / accepted so far): white noise averages
  down as sqrt(n).
- ``averages_to_target`` (metrics): accepted averages needed for ``snr.target`` (when > 0).
"""

from __future__ import annotations

import math

from qc_daemon import kernels
from qc_daemon.model import METABOLITE, TransientQC
from qc_daemon.plugin_api import OK, WARN, CheckResult, Finding, ScanContext, SummaryPart, TransientContext


def peak_snr(spec, noise_sd: float, window: tuple[int, int] | None) -> float | None:
    """max(Re spec) in the index window / noise_sd; None when not computable."""
    if window is None or not (noise_sd > 0) or not math.isfinite(noise_sd):
        return None
    height, _ = kernels.max_real(spec, window[0], window[1])
    return float(height / noise_sd)


class SnrCheck:
    name = "snr"

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["snr"]
        self.per_set_planned = max(1, scan.planned_averages // max(1, scan.n_sets))
        self.running: dict[int, tuple[float | None, float | None, int]] = {}
        self.window = None

    def measure(self, ctx: TransientContext) -> CheckResult:
        if ctx.transient.kind != METABOLITE:
            return CheckResult()
        if self.window is None:
            self.window = ctx.axis.window(*self.cfg["signal_window_ppm"])
        return CheckResult(fields={"snr": peak_snr(ctx.spec, ctx.noise_sd, self.window)},
                           metrics={"noise_sd": ctx.noise_sd})

    def update(self, ctx: TransientContext, qc: TransientQC) -> None:
        if qc.kind != METABOLITE or ctx.running_spec is None:
            return
        snr = peak_snr(ctx.running_spec, ctx.running_noise_sd or math.nan, self.window)
        n = ctx.n_accepted
        projected = snr * math.sqrt(self.per_set_planned / n) if (snr is not None and n > 0) else None
        qc.snr_running = snr
        qc.metrics["snr_projected"] = projected
        qc.metrics["n_accepted_set"] = n
        target = self.cfg["target"]
        if target > 0 and snr:
            qc.metrics["averages_to_target"] = max(0, math.ceil(n * (target / snr) ** 2) - n)
        self.running[qc.set] = (snr, projected, n)

    def finish(self, ctx: ScanContext) -> SummaryPart:
        if not self.running:
            return SummaryPart()
        snr, projected, n = self.running.get(0, next(iter(self.running.values())))
        part = SummaryPart(fields={"snr_final": snr, "snr_projected": projected},
                           details={"per_set": {str(k): {"snr": v[0], "n_accepted": v[2]}
                                                for k, v in self.running.items()},
                                    "definition": "NAA max Re S 1.8-2.2 ppm / detrended noise SD"})
        target = self.cfg["target"]
        if target > 0 and snr is not None:
            sev = OK if snr >= target else WARN
            part.findings.append(Finding(sev, f"SNR {snr:.1f} (target {target:g})", "snr_final", snr))
        return part
