"""Linewidth (FWHM, Hz): water from unsuppressed reference transients, tCr of the running average otherwise.

Definitions (docs/results.md, "Linewidth"); every peak is measured by :func:`qc_daemon.peaks.measure_peak`:
- water_ref transients: zero-fill x8 (FID-A ``op_getLW``), window 3.7..5.7 ppm, half height of the phased real
  spectrum (one dominant line: no baseline). -> ``fwhm_hz``, metrics ``fwhm_water_hz``.
- metabolite transients: the running mean of the accepted transients of the set (aligned, so drift does not
  broaden it), zero-filled x4 (spant ``peak_info`` interpolates x4); tCr 2.9..3.1 ppm above its local
  baseline -> ``fwhm_hz``; NAA 1.8..2.2 ppm in metrics ``fwhm_naa_hz``. Recomputed after each of the first 8
  accepted transients, then after every ``metab_every``-th; between those the last value is reported.
Null, with the reason in ``unmeasured``, when: the window is outside the spectral width; the maximum lies on
the window edge; the peak stands less than ``min_peak_snr`` noise SDs above its baseline; no half-height point
lies within ``baseline_span_ppm``; the tCr FWHM is below ``min_fraction_of_water`` or above
``max_ratio_to_reference`` x (+ ``ratio_slack_ppm``) the water FWHM of the same scan (without water: the
FWHM of the strongest line in ``strongest_window_ppm``): a noise spike, ringing or a shoulder, not the tCr
singlet; the scan is water-only.
Limits are in ppm (field-independent).
"""

from __future__ import annotations

import numpy as np

from qc_daemon.config import toml_section
from qc_daemon.model import METABOLITE, WATER_REF
from qc_daemon.peaks import Peak, measure_peak
from qc_daemon.plugin_api import (
    FAIL,
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
    ScanContext,
    SummaryField,
    SummaryLine,
    SummaryPart,
    TransientContext,
    grade,
)
from qc_daemon.spectral import SpectralAxis, spectrum

_NON_NEGATIVE = (0.0, float("inf"), True)
DECLARATION = Declaration(
    fields=(Metric("fwhm_hz", "Hz", "water_ref: the water FWHM of this transient; metabolite: the tCr FWHM of the "
                   "running average of its set (module docstring)", "linewidth"),),
    metrics=(Metric("fwhm_water_hz", "Hz", "water FWHM of this water reference (x8 zero-fill, half height)",
                    "water FWHM"),
             Metric("fwhm_metab_hz", "Hz", "tCr FWHM of the running average, above its local baseline", "tCr FWHM"),
             Metric("fwhm_naa_hz", "Hz", "NAA FWHM of the running average, above its local baseline", "NAA FWHM")),
    summary=(SummaryField("fwhm_water_hz", "Hz", "median water FWHM of the water references", "water linewidth",
                          Recovered("fwhm_hz", WATER_REF, "median")),
             SummaryField("fwhm_metab_hz", "Hz", "tCr FWHM of the final running average of edit set 0",
                          "tCr linewidth", Recovered("fwhm_hz", METABOLITE))),
    findings=(FindingKind("water linewidth", (OK, WARN, FAIL), "water FWHM (ppm) against water_warn/fail_ppm"),
              FindingKind("tCr linewidth", (OK, WARN, FAIL), "tCr FWHM (ppm) against metab_warn/fail_ppm")),
    config=ConfigSpec(toml_section("plugins", "linewidth.toml"),
                      integers=frozenset({"zero_fill", "metab_zero_fill", "metab_every"}),
                      ranges={"min_peak_snr": _NON_NEGATIVE, "min_fraction_of_water": (0.0, 1.0, True),
                              "max_ratio_to_reference": (1.0, float("inf"), True)},
                      warn_before_fail=(("water_warn_ppm", "water_fail_ppm"), ("metab_warn_ppm", "metab_fail_ppm"))),
    display=Display(
        panel=(PanelRow("water FWHM", "fwhm_hz", WATER_REF, 10, suffix=" Hz", summary="fwhm_water_hz", ppm=True,
                        warn="water_warn_hz", fail="water_fail_hz", missing_kind="no water reference"),
               PanelRow("tCr FWHM", "fwhm_metab_hz", METABOLITE, 20, suffix=" Hz", ppm=True, warn="metab_warn_hz",
                        fail="metab_fail_hz", missing="n/a (running average)"),
               PanelRow("NAA FWHM", "fwhm_naa_hz", METABOLITE, 30, suffix=" Hz", ppm=True)),
        columns=(Column("tCr", "Hz", "fwhm_hz", 50, ".1f", 6, kinds=(METABOLITE,)),),
        summary_lines=(SummaryLine("linewidth: water {fwhm_water_hz:.1f|Hz}, tCr {fwhm_metab_hz:.1f|Hz} (FWHM)",
                                   20),)),
)


def zero_filled(fid: np.ndarray, axis: SpectralAxis, zero_fill: int) -> tuple[np.ndarray, SpectralAxis]:
    """The spectrum of ``fid`` zero-filled x``zero_fill`` and its axis."""
    n = fid.shape[0] * zero_fill
    return spectrum(fid, n), SpectralAxis(n, axis.dwell_s, axis.f0_mhz, axis.centre_ppm)


def water_peak(fid: np.ndarray, axis: SpectralAxis, cfg: dict, noise_sd: float | None) -> Peak:
    """The water line of one unsuppressed transient (module definition). The peak height of a zero-filled
    spectrum equals that of the unfilled one, so the unfilled noise SD applies."""
    spec, zf = zero_filled(fid, axis, cfg["zero_fill"])
    return measure_peak(spec, zf, cfg["water_window_ppm"], noise_sd, "water", cfg["min_peak_snr"],
                        cfg["baseline_span_ppm"], baseline=False)


def metabolite_peaks(fid: np.ndarray, axis: SpectralAxis, cfg: dict, noise_sd: float | None
                     ) -> tuple[Peak, Peak, Peak]:
    """(tCr, NAA, the strongest line in ``strongest_window_ppm``) of a running mean (module definition)."""
    spec, zf = zero_filled(fid, axis, cfg["metab_zero_fill"])
    found = [measure_peak(spec, zf, cfg[key], noise_sd, label, cfg["min_peak_snr"], cfg["baseline_span_ppm"])
             for key, label in (("metab_window_ppm", "tCr"), ("naa_window_ppm", "NAA"))]
    found.append(measure_peak(spec, zf, cfg["strongest_window_ppm"], noise_sd, "strongest", cfg["min_peak_snr"],
                              cfg["baseline_span_ppm"], baseline=False))
    return tuple(found)  # type: ignore[return-value]


def implausible(fwhm: float, water: float | None, strongest: Peak, cfg: dict, f0_mhz: float) -> str | None:
    """Why a tCr FWHM (Hz) cannot be the tCr singlet of this voxel, or None. Lines of one voxel and one shim
    have similar widths: tCr is compared with the water FWHM of the scan, else with the strongest line."""
    lo, hi = cfg["min_fraction_of_water"], cfg["max_ratio_to_reference"]
    if water is not None:
        ref, what = water, f"the water FWHM {water:.1f} Hz of the same scan"
    elif strongest.fwhm_hz is not None:
        ref, what = strongest.fwhm_hz, f"the {strongest.fwhm_hz:.1f} Hz of the strongest line ({strongest.ppm:.2f} ppm)"
    else:
        return None
    if fwhm < lo * ref:
        return f"tCr FWHM {fwhm:.2f} Hz is below {lo:g} x {what}: a noise spike or artefact, not the tCr line"
    slack = cfg["ratio_slack_ppm"] * f0_mhz
    if fwhm > hi * ref + slack:
        return (f"tCr FWHM {fwhm:.1f} Hz is above {hi:g} x {what} + {slack:.1f} Hz: not a tCr singlet (ringing, "
                "a multiplet or a neighbouring line's shoulder)")
    return None


class LinewidthCheck:
    name = "linewidth"
    declaration = DECLARATION

    def limits(self, scan, config) -> list[Limit]:
        f0, cfg = scan.f0_mhz, config["linewidth"]
        return [Limit("water_warn_hz", "fwhm_water_hz", WARN, cfg["water_warn_ppm"] * f0, "Hz"),
                Limit("water_fail_hz", "fwhm_water_hz", FAIL, cfg["water_fail_ppm"] * f0, "Hz"),
                Limit("metab_warn_hz", "fwhm_metab_hz", WARN, cfg["metab_warn_ppm"] * f0, "Hz"),
                Limit("metab_fail_hz", "fwhm_metab_hz", FAIL, cfg["metab_fail_ppm"] * f0, "Hz")]

    def start(self, scan, config) -> None:
        self.scan = scan
        self.cfg = config["linewidth"]
        self.water: list[float] = []
        self._water_median: tuple[int, float | None] = (0, None)  # (for how many, value)
        self.water_reason: str | None = None
        self.metab: dict[int, tuple[Peak, Peak]] = {}
        self._final = None

    def measure(self, ctx: TransientContext) -> CheckResult:
        if ctx.transient.kind != WATER_REF:
            return CheckResult()
        peak = water_peak(ctx.fid, ctx.axis, self.cfg, ctx.noise_sd)
        if peak.fwhm_hz is not None:
            self.water.append(peak.fwhm_hz)
        else:
            self.water_reason = peak.reason
        return CheckResult(fields={"fwhm_hz": peak.fwhm_hz}, metrics={"fwhm_water_hz": peak.fwhm_hz},
                           unmeasured={"fwhm_hz": peak.reason} if peak.reason else {})

    def update(self, ctx: TransientContext, accepted: bool, measured: CheckResult) -> CheckResult:
        out = CheckResult()
        if ctx.transient.kind != METABOLITE:
            return out
        if ctx.running_fid is None:
            if ctx.running_unavailable:
                out.unmeasured["fwhm_hz"] = ctx.running_unavailable
            return out
        s = ctx.transient.set
        n = ctx.n_accepted
        # the running mean changes slowly: recompute for the first 8 accepted, then every 4th (see docstring)
        due = s not in self.metab or (accepted and (n <= 8 or n % self.cfg["metab_every"] == 0))
        if due:
            self.metab[s] = metabolite_peaks(ctx.running_fid, ctx.axis, self.cfg, ctx.running_noise_sd)
        if s == 0:
            self._final = (ctx.running_fid, ctx.axis, ctx.running_noise_sd)
        tcr, naa, strongest = self.metab[s]
        fwhm = tcr.fwhm_hz
        why = tcr.reason if fwhm is None else implausible(fwhm, self._water(), strongest, self.cfg, self.scan.f0_mhz)
        if why:
            fwhm = None
            out.unmeasured["fwhm_hz"] = why
        out.fields["fwhm_hz"] = fwhm
        out.metrics = {"fwhm_metab_hz": fwhm, "fwhm_naa_hz": naa.fwhm_hz}
        if naa.fwhm_hz is None and naa.reason:
            out.unmeasured["fwhm_naa_hz"] = naa.reason
        return out

    def _water(self) -> float | None:
        """Median water FWHM (Hz) of the water references so far (cached: read once per transient)."""
        if self._water_median[0] != len(self.water):
            self._water_median = (len(self.water), float(np.median(self.water)) if self.water else None)
        return self._water_median[1]

    def finish(self, ctx: ScanContext) -> SummaryPart:
        f0 = self.scan.f0_mhz
        part = SummaryPart()
        water = self._water()
        if water is None:
            has_ref = any(r.kind == WATER_REF for r in ctx.results)
            part.unmeasured["fwhm_water_hz"] = (self.water_reason or "no water line measured") if has_ref else \
                "no unsuppressed water-reference transient (add one, or check a water scan with --water)"
        tcr = naa = None
        if self._final is not None:  # the latest running mean, whatever the update cadence (read-only: a
            fid, axis, noise = self._final  # mid-scan summary must not change later per-transient results)
            tcr, naa, strongest = metabolite_peaks(fid, axis, self.cfg, noise)
        metab = tcr.fwhm_hz if tcr is not None else None
        if tcr is None:
            only_water = bool(ctx.results) and all(r.kind == WATER_REF for r in ctx.results)
            part.unmeasured["fwhm_metab_hz"] = "water-only scan: no metabolite transients" \
                if only_water and ctx.final else "no accepted metabolite average yet" if not ctx.final \
                else "no accepted metabolite average"
        elif metab is None:
            part.unmeasured["fwhm_metab_hz"] = tcr.reason or "not measurable"
        elif why := implausible(metab, water, strongest, self.cfg, f0):
            part.unmeasured["fwhm_metab_hz"] = why
            part.details["fwhm_metab_rejected_hz"] = metab
            metab = None
        part.fields = {"fwhm_water_hz": water, "fwhm_metab_hz": metab}
        part.details.update({"fwhm_water_each_hz": self.water,
                             "fwhm_naa_hz": naa.fwhm_hz if naa is not None else None})
        for value, label, warn, fail in (
                (water, "water linewidth", self.cfg["water_warn_ppm"], self.cfg["water_fail_ppm"]),
                (metab, "tCr linewidth", self.cfg["metab_warn_ppm"], self.cfg["metab_fail_ppm"])):
            if value is None:
                continue
            ppm = value / f0
            text = f"{label} {value:.1f} Hz ({ppm:.3f} ppm)"
            severity = grade(ppm, warn, fail)
            part.findings.append(Finding(severity, text if severity == OK else f"{text}: consider reshim", label,
                                         value))
        return part
