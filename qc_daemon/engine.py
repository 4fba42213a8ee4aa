"""Per-scan QC state: coil weights, references, trends; feeds each transient to every check.

One :class:`ScanQC` per scan. ``process(transient)`` returns the results that became final (usually one;
none while coil weights are being calibrated, then all held ones in acquisition order). ``finish()``
returns the rest and the :class:`ScanSummary`. The offline ``mrsqc check`` and the live daemon both drive
this class, so they give identical results for the same transients.

Causality: a transient's result uses only it and earlier transients, with one documented exception: the
first ``coils.calibration_transients`` metabolite transients are held until the last of them arrives; their
unaligned mean is the initial reference of their edit set (0 Hz, 0 deg = the mean frequency and phase of
those transients), and, when no water reference came first, they define the coil weights. A single noisy
transient is no template at per-transient SNR ~4 (its noise would bias every later estimate).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from . import kernels, verdict
from .coils import combination_weights
from .config import Config, load_config
from .freq_model import (
    HAT_MIN_ROWS,
    METAB_AND_WATER,
    METAB_ONLY,
    WATER_ONLY,
    FrameOffset,
    Honesty,
    WaterTemplate,
    coherent_seed,
    frame_shift,
    inverse_variance,
    water_nearer_trend,
)
from .model import (
    METABOLITE,
    RUNNING,
    WATER_REF,
    ScanInfo,
    ScanSummary,
    Transient,
    TransientQC,
)
from .noise import NoiseSD
from .plugin_api import (
    Check,
    CheckResult,
    Contract,
    Finding,
    Registration,
    ScanContext,
    TransientContext,
    active_checks,
)
from .provenance import provenance as make_provenance
from .registration import BandFit, Fit, Reference, WaterWindow
from .spectral import SpectralAxis, decimate, decimated_fft, fftshift, spectrum
from .tracking import FilterParams, FrequencyFilter, Trend
from .water import WATER_PPM, residual_water_model, water_dominance


class Combined(NamedTuple):
    """One transient after coil combination and oversampling removal (ScanQC.combine)."""

    fid: np.ndarray  # complex128, the output rate (after residual-water removal where it is on)
    fft: np.ndarray  # its FFT, FFT order
    raw_fft: np.ndarray  # the FFT before residual-water removal (the water fit's input)


class Acquired(NamedTuple):
    """What the analysts' NIfTI-MRS outputs need of one transient (nifti_out.py)."""

    fft: np.ndarray  # complex64, FFT order: coil-combined, oversampling removed, before residual-water removal
    freq_hz: float  # the reported single-shot shift vs the reference (+ = towards higher ppm)
    freq_sd_hz: float | None  # its SD (None for the held calibration transients: their fit is self-biased)
    phase_rad: float  # the zero-order phase that aligns it: its phase vs the reference + the reference's own


class LatestSpectra(NamedTuple):
    axis: SpectralAxis
    index: int
    set: int
    n_average: int  # accepted transients in the running average
    latest: np.ndarray  # spectrum of the latest metabolite transient, aligned and phased like the reference
    average: np.ndarray  # spectrum of its set's running average, the same frame
    noise_sd: float  # the latest transient's noise SD


class ScanQC:
    """QC of one scan: feed transients in acquisition order, read results as they become final."""

    def __init__(self, scan: ScanInfo, config: Config | None = None, checks: list[Check] | None = None):
        scan.validate()
        self.scan = scan
        self.config = config if config is not None else load_config()
        self.checks: list[Check] = checks if checks is not None else [cls() for cls in active_checks(self.config)]
        self.contract = Contract(self.checks)
        self.provenance = make_provenance(self.config, [c.name for c in self.checks])
        self._field_names = list(self.contract.fields)
        for check in self.checks:
            check.start(scan, self.config)
        self.axis = SpectralAxis.of(scan)
        self.results: list[TransientQC] = []
        self._weights: np.ndarray | None = None
        self._pending: list[Transient] = []
        self._seeded = False  # True once the held first metabolite transients seeded the references
        self._water_removal = False  # set at calibration when residual water dominates (water.py)
        self.water_dominance: float | None = None  # its measure on the calibration mean (water.water_dominance)
        self._refs: dict[tuple[str, int], Reference] = {}
        self._filter_params = FilterParams.from_config(self.config["tracking"])
        self._filters: dict[tuple[str, int], FrequencyFilter] = {}  # causal frequency tracking per (kind, set)
        reg = self.config["registration"]
        self._notes: list[str] = []
        phase = self.config["reference"]
        self.band = BandFit(scan, self.axis, reg, {METABOLITE: phase["metabolite_phase_window_ppm"],
                                                   WATER_REF: phase["water_phase_window_ppm"]})
        # residual-water frequency fit (freq_model.py): its decimated window, the coherent template, the
        # agreement test
        self.water_window = WaterWindow.of(scan, self.axis, reg)
        self._water: WaterTemplate | None = None
        self._water_seed_n = 0  # held transients in the water template's seed (its zero is their mean)
        self.water_fit_snr: float | None = None  # template peak / transient noise SD, set at calibration
        self._agree: dict[int, tuple[FrameOffset, Honesty]] = {}  # per edit set: frame offset, SD honesty
        # edited scans without residual water: each set s >= 1 against set 0's trend (its frame offset)
        self._set_frames: dict[int, FrameOffset] = {}
        self._pending_water: tuple | None = None  # (aligned water band, f_w - f_m, hat row) of this transient
        self._latest: tuple[Transient, np.ndarray, float] | None = None  # last metabolite transient, for display
        self.acquired: dict[int, Acquired] = {}  # per transient index, for the NIfTI-MRS outputs
        self.noise = NoiseSD(self.axis, self.config["noise"])
        self.noise_window_label = self.noise.label
        if self.noise.note:
            self._notes.append(self.noise.note)
        if scan.combined:
            self._notes.append("data were averaged on the scanner: per-transient checks need per-transient data")

    # ------------------------------------------------------------------ public
    @staticmethod
    def warm_up(config: Config | None = None) -> None:
        """Run a tiny synthetic scan (:func:`warm_up_scan`) through every code path (kernels, FFT plans, the
        checks) so the first real transient of a live scan is as fast as the rest."""
        scan, transients = warm_up_scan()
        qc = ScanQC(scan, config)
        for t in transients:
            qc.process(t)
        qc.finish()

    def process(self, transient: Transient) -> list[TransientQC]:
        """Run every check on one transient; return the results that are now final (acquisition order)."""
        data = np.asarray(transient.data)
        if data.shape != (self.scan.n_coils, self.scan.samples_per_transient):
            raise ValueError(
                f"transient {transient.index}: shape {data.shape} != (coils, samples) = "
                f"({self.scan.n_coils}, {self.scan.samples_per_transient}) from scan_start")
        if self._weights is None and transient.kind == WATER_REF:
            self._set_weights(transient.data[None])
        if transient.kind == METABOLITE and not self._seeded:
            self._pending.append(transient)
            if len(self._pending) < int(self.config["coils"]["calibration_transients"]):
                return []
            return self._release()
        out = self._release() if self._pending else []
        out.append(self._run(transient))
        return out

    def _release(self) -> list[TransientQC]:
        """Calibrate on the held metabolite transients (coil weights if still unset; initial reference per
        edit set = their unaligned mean) and process them in acquisition order."""
        held, self._pending = self._pending, []
        if not held:
            return []
        if self._weights is None:
            self._set_weights(np.stack([t.data for t in held]))
        self._seeded = True
        self._decide_water_removal(held)
        for s in sorted({t.set for t in held}):
            members = [t for t in held if t.set == s]
            fids = [self.combine(t).fid for t in members]
            self._seed_reference(self._refs.setdefault((METABOLITE, s), Reference()), fids)
        self._seed_water(held)
        last_of_set = {t.set: t.index for t in held}
        return [self._run(t, seeded_member=True, seed_complete=last_of_set[t.set] == t.index) for t in held]

    def _seed_water(self, held: list[Transient]) -> None:
        """Coherent water template from the held transients (before any water removal; one for all edit sets,
        so every set's water frequency shares one zero); used only when its peak stands
        ``water_fit_min_snr`` noise SDs above a transient's noise."""
        window = self.water_window
        if window is None:
            return
        reg = self.config["registration"]
        bands, noise = [], []
        for t in held:
            c = self.combine(t)
            sd = self.noise.sd(fftshift(c.fft), c.fid)
            bands.append(window.band(c.raw_fft))
            noise.append(2.0 * sd ** 2 / self.scan.n_points)
        total = coherent_seed(bands)
        n = len(bands)
        size = window.size
        peak = float(np.abs(np.fft.fft(total / n, size)).max()) * self.scan.n_points / size
        self.water_fit_snr = peak / math.sqrt(np.mean(noise) * self.scan.n_points / 2.0)
        if self.water_fit_snr >= float(reg["water_fit_min_snr"]):
            self._water = WaterTemplate(total, n, sum(noise) * window.power)
            self._water_seed_n = n

    def _seed_reference(self, ref: Reference, fids: list[np.ndarray]) -> None:
        """Initial reference = the unaligned mean of the held transients: its frequency is exactly their mean
        true frequency, the scan's 0 Hz. (Aligning the members to their own mean first was measured: it moves
        that zero point by the members' estimation noise and made the frequency RMSE worse at SNR 3-5.)"""
        noise_vars = [2.0 * self.noise.sd(spectrum(f), f) ** 2 / self.scan.n_points for f in fids]
        self.band.seed(ref, fids, noise_vars, METABOLITE)


    def finish(self, status: str = "complete") -> tuple[list[TransientQC], ScanSummary]:
        """Flush held transients and build the summary. ``status``: complete | incomplete | interrupted."""
        out = self._release() if self._pending else []
        return out, self.summary(status)

    def summary(self, status: str = "complete") -> ScanSummary:
        """The summary of everything processed so far. ``status`` "running" gives the live (mid-scan) summary:
        no end-of-scan work (non-causal pass), no "scan incomplete" finding, and no effect on later results."""
        ctx = ScanContext(self.scan, self.config, self.results, final=status != RUNNING)
        fields: dict = {name: None for name in self.contract.summary}
        findings: list[Finding] = []
        details: dict = {}
        unmeasured: dict[str, str] = {}
        for check in self.checks:
            part = check.finish(ctx)
            self.contract.check_summary(check, part)
            fields.update(part.fields)
            findings.extend(part.findings)
            details[check.name] = part.details
            unmeasured.update(part.unmeasured)
        metab = [r for r in self.results if r.kind == METABOLITE]
        flagged = [r.index for r in self.results if not r.accepted]
        found = verdict.flagged_finding(self.results, self.config["verdict"])
        findings += ([found] if found else []) + verdict.status_findings(
            status, len(self.results), len(metab), self.scan.planned_averages)
        # a live summary may only have seen the water references that precede the metabolite transients
        water_only = bool(self.results) and not metab and status != RUNNING
        decided, reasons = verdict.decide(findings)
        details["findings"] = verdict.as_records(findings)
        details["noise_window"] = self.noise_window_label
        return ScanSummary(
            scan_id=self.scan.scan_id,
            n_transients=len(self.results),
            n_metabolite=len(metab),
            n_water_ref=sum(1 for r in self.results if r.kind == WATER_REF),
            n_flagged=len(flagged),
            flagged_indices=flagged,
            verdict=decided,
            reasons=reasons,
            fields=fields,
            status=status,
            notes=list(self.scan.notes) + self._notes,
            details=details,
            unmeasured=unmeasured,
            scan_kind="water-only" if water_only else "metabolite",
            provenance=self.provenance,
        )

    def latest_spectra(self) -> LatestSpectra | None:
        """The latest metabolite transient's aligned spectrum and its set's running average (read-only, for
        display: qc_daemon/display.py shapes them); None before the first metabolite transient."""
        if self._latest is None:
            return None
        transient, spec, noise_sd = self._latest
        ref = self._refs.get((METABOLITE, transient.set))
        if ref is None or ref.mean_spec is None:
            return None
        return LatestSpectra(self.axis, transient.index, transient.set, ref.n, spec, ref.mean_spec, noise_sd)

    # ------------------------------------------------------------------ internals
    def _set_weights(self, data: np.ndarray) -> None:
        """Coil weights from calibration data (transients x coils x samples), after oversampling removal."""
        c = self.config["coils"]
        data = decimate(np.asarray(data, dtype=np.complex128), self.scan.oversampling)
        self._weights = combination_weights(data, self.scan.dwell_s, c["signal_window_s"], c["noise_tail_fraction"])

    def _decide_water_removal(self, held: list[Transient]) -> None:
        """Once, on the held calibration transients: remove the residual water of every metabolite transient
        when it dominates their (unaligned) mean by ``registration.water_removal_dominance`` (see water.py)."""
        reg = self.config["registration"]
        if self._water_removal or not np.any(np.abs(self.axis.ppm() - WATER_PPM) <= 0.3):
            return
        mean_fft = np.mean([self.combine(t).fft for t in held], axis=0)
        d = self.water_dominance = water_dominance(fftshift(mean_fft), self.axis.ppm())
        if d < float(reg["ramp_min_dominance"]):
            self.band.flatten_ramp()
        if d >= float(reg["water_removal_dominance"]):
            self._water_removal = True
            self._notes.append(
                f"residual water {d:.0f}x the metabolite peaks (max |S|, calibration mean): modelled (ESPRIT, up "
                f"to {int(reg['water_removal_poles'])} poles within {reg['water_removal_keep_ppm']:g} ppm of "
                f"{WATER_PPM} ppm) and removed from every metabolite transient before the checks")

    @property
    def coil_weights(self) -> np.ndarray | None:
        """The coil-combination weights (coils; None before calibration): the FID is sum_c w_c x data_c."""
        return self._weights

    def combine(self, transient: Transient) -> Combined:
        """(FID, its FFT in FFT order, the FFT before residual-water removal) after coil combination and
        oversampling removal. Both are linear, so one FID is decimated instead of every coil, and the
        decimated spectrum comes out of that FFT. Needs the coil weights (after calibration)."""
        fid_os = kernels.combine_coils(self._weights, np.ascontiguousarray(transient.data, dtype=np.complex64))
        fid_fft = decimated_fft(fid_os, self.scan.oversampling)
        fid = np.fft.ifft(fid_fft) if self.scan.oversampling > 1 else fid_os
        raw_fft = fid_fft
        if self._water_removal and transient.kind == METABOLITE:
            reg = self.config["registration"]
            fid = fid - residual_water_model(fid, self.scan.dwell_s, self.scan.f0_mhz, self.scan.centre_ppm,
                                             reg["water_removal_band_ppm"], reg["water_removal_keep_ppm"],
                                             int(reg["water_removal_poles"]))
            fid_fft = np.fft.fft(fid)
        return Combined(fid, fid_fft, raw_fft)

    def _run(self, transient: Transient, seeded_member: bool = False, seed_complete: bool = True) -> TransientQC:
        scan = self.scan
        dt = scan.dwell_s
        fid, fid_fft, raw_fft = self.combine(transient)
        key = (transient.kind, transient.set)
        ref = self._refs.setdefault(key, Reference())
        filt = self._filters.setdefault(key, FrequencyFilter(self._filter_params))
        pred = filt.predict(transient.time_s)
        # the search centre and the reference of the frequency-jump test: the least-squares trend of the last
        # 60 s (no prior to tune, robust to lost fits on weak in-vivo data); the filter gives freq_causal_hz
        seed, seed_var = ref.predict(transient.time_s)
        raw_spec = fftshift(fid_fft)
        noise_sd = self.noise.sd(raw_spec, fid)
        self._pending_water = None
        raw_freq = math.nan  # an edited set's single shot in its own reference's frame (no residual water)
        align: Registration | None = None  # what the transient joins its reference at, if not ``reg``
        if ref.n == 0:
            reg = Registration(0.0, 0.0, 1.0, 0.0, is_reference=True)
            ref.phase_rad = self.band.peak_phase(raw_spec, transient.kind)
        else:
            with_water = transient.kind == METABOLITE and self._water is not None
            reg, fit = self.band.register(fid_fft, ref, seed, transient.kind, noise_sd, phase_sd=not with_water)
            if with_water:
                align = reg if self._agreement(transient.set)[1].n_rows < HAT_MIN_ROWS else None
                reg = self._with_water(reg, fit, raw_fft, seed, seed_var, noise_sd, transient.set)
            elif transient.kind == METABOLITE and self.scan.n_sets > 1:
                if transient.set > 0:
                    raw_freq = reg.freq_hz
                reg = self._on_scan_frame(reg, self._set_offset(transient.set) + self._sets_zero())
        # the transient joins its reference at its frequency and phase; until the three-cornered hat has tested
        # the water (HAT_MIN_ROWS transients), at the metabolites' own: a distorted line's early errors would
        # otherwise move the reference's frame for good (each member's misalignment stays in the mean)
        align = align or reg
        corrected = kernels.correct_fid(fid, dt, align.freq_hz, math.radians(align.phase_deg) + ref.phase_rad)
        corrected_fft = np.fft.fft(corrected)
        spec = fftshift(corrected_fft)
        ctx = TransientContext(
            transient=transient, axis=self.axis, fid=fid, reg=reg, freq_pred_hz=seed, freq_pred_var_hz2=seed_var,
            prediction=pred, spec=spec, ref_spec=ref.mean_spec, noise_sd=noise_sd, calibration=seeded_member)
        qc = TransientQC(index=transient.index, average=transient.average, set=transient.set,
                         kind=transient.kind, time_s=transient.time_s, fields=dict.fromkeys(self._field_names))
        measured = [self._merge(check, check.measure(ctx), qc, True) for check in self.checks]
        qc.accepted = not qc.flags
        # the held calibration transients are fitted against a mean of themselves (shrunk towards 0 Hz): they
        # neither teach the filter a slope nor test the water's agreement
        if not seeded_member and (qc.accepted or not self.contract.frequency_outliers.isdisjoint(qc.flags)):
            filt.observe(transient.time_s, reg.freq_hz, reg.freq_sd_hz, qc.accepted, pred)
        if seeded_member and qc.accepted:  # already inside the seed mean: only its frequency enters the trend
            self._trend(ref).add(transient.time_s, reg.freq_hz)
        if not seeded_member and (qc.accepted or ref.n == 0):
            ref.noise_var_sum += 2.0 * noise_sd ** 2 / scan.n_points
            self.band.add(ref, corrected, corrected_fft, transient.kind)
            self._trend(ref).add(transient.time_s, reg.freq_hz)
        if qc.accepted and not seeded_member and math.isfinite(raw_freq):
            base = self._refs.get((METABOLITE, 0))
            # set 0's trend in its own frame (its results carry the scan's zero shift)
            trend0 = base.predict(transient.time_s)[0] - self._sets_zero() if base is not None else math.nan
            if base is not None and base.trend is not None and len(base.trend) and math.isfinite(trend0):
                window = int(self.config["registration"]["water_fit_agreement_window"])
                self._set_frames.setdefault(transient.set, FrameOffset(window)).add(raw_freq - trend0)
        if qc.accepted and self._pending_water is not None:
            aligned, diff, hat = self._pending_water
            frame, honesty = self._agreement(transient.set)
            if seeded_member:  # in the template already; its fits say only whether water and metabolites agree
                honesty.add_calibration(*hat)
            else:  # the rest join the template aligned
                if math.isfinite(diff):
                    frame.add(diff)
                honesty.add(*hat)
                if aligned is not None:
                    self._water.add(aligned, self.water_window.noise_var(noise_sd))
        if transient.kind == METABOLITE:
            self._latest = (transient, spec, noise_sd)
        sd = reg.freq_sd_hz if reg.freq_sd_hz is not None and math.isfinite(reg.freq_sd_hz) else None
        self.acquired[transient.index] = Acquired(raw_fft.astype(np.complex64), reg.freq_hz, sd,
                                                  math.radians(reg.phase_deg) + ref.phase_rad)
        if seeded_member and not seed_complete:
            # the seed mean holds later transients too: no running value is honest before its last member
            n_cal = int(self.config["coils"]["calibration_transients"])
            ctx.running_unavailable = (f"calibration: the first {n_cal} metabolite transients form the reference "
                                       "together; running values start with the last of them")
        else:
            ctx.running_fid = ref.mean
            ctx.running_spec = ref.mean_spec
            ctx.running_noise_sd = self.noise.sd(ref.mean_spec, ref.mean) if ref.mean_spec is not None else None
        ctx.n_accepted = ref.n
        for check, own in zip(self.checks, measured):
            self._merge(check, check.update(ctx, qc.accepted, own), qc, False)
        self.results.append(qc)
        return qc

    def _merge(self, check: Check, res: CheckResult, qc: TransientQC, measuring: bool) -> CheckResult:
        """A check's result into the transient's record, after checking it declared every name it returns."""
        self.contract.check_result(check, res, measuring)
        if res.fields:
            qc.fields.update(res.fields)
        if res.metrics:
            qc.metrics.update(res.metrics)
        if res.flags:
            qc.flags.extend(res.flags)
        if res.unmeasured:
            qc.unmeasured.update(res.unmeasured)
        return res

    def _agreement(self, s: int) -> tuple[FrameOffset, Honesty]:
        if s not in self._agree:
            w = int(self.config["registration"]["water_fit_agreement_window"])
            self._agree[s] = (FrameOffset(w), Honesty(w))
        return self._agree[s]

    def _set_offset(self, s: int) -> float:
        """Edited scan without residual water: the offset (Hz) that moves set s's reference frame onto the
        scan's (set 0's): minus the mean, over the last ``water_fit_agreement_window`` accepted transients of
        the set, of their single shot (own frame) less set 0's trend at their time. Interleaved sets share the
        drift, so the difference is the frames' offset plus noise that averages out. 0 for set 0 and before 4."""
        frame = self._set_frames.get(s)
        return -frame.offset() if frame is not None else 0.0

    def _sets_zero(self) -> float:
        """Edited scan without residual water: Hz added to every set's result (set 0's frame moved by it) so
        that 0 Hz is the mean of all the sets' zeros, i.e. of all the held transients (each set's alone is the
        mean of a few, and its reference's frame moves by each early member's misalignment / n for good)."""
        return -sum(self._set_offset(s) for s in range(1, self.scan.n_sets)) / self.scan.n_sets

    @staticmethod
    def _on_scan_frame(reg: Registration, offset: float) -> Registration:
        """The metabolite registration's frequency moved by its set's frame offset (Hz) onto the scan's frame
        (phase and amplitude are the fit's: at t = 0 the frames agree)."""
        if offset == 0.0:
            return reg
        return replace(reg, freq_hz=reg.freq_hz + offset, freq_metab_hz=reg.freq_metab_hz + offset)

    def _water_frame_offset(self) -> float:
        """Hz to subtract to move the water template's frame onto set 0's metabolite frame (``frame_shift``)."""
        frame0, honesty0 = self._agreement(0)
        return frame_shift(frame0, honesty0, self._water_seed_n)

    def _with_water(self, reg: Registration, fit: Fit, raw_fft: np.ndarray, trend: float, trend_var: float,
                    noise_sd: float, edit_set: int) -> Registration:
        """Add the residual water's frequency to the metabolites' (freq_model.py: fit, rules, combination).
        The fit and the combination run in the water template's frame; the result is reported in set 0's
        metabolite frame (the scan's zero: the held transients' mean). The two agree for water that follows
        B0; the zero of a water line that does not is its held transients' mean apparent frequency, off by
        their distortion, and is moved by set 0's frame offset (``FrameOffset``).
        The water band is cut with the mask moved by the seed (in 1/8-bin steps) and brought back by it: the
        water's tails at the band edges are then cut where the template's were, to a sixteenth of a bin."""
        r = self.config["registration"]
        window, tpl = self.water_window, self._water
        to_scan = self._water_frame_offset()
        seed = trend + to_scan  # the trend in the water template's frame
        if abs(seed) > window.reach_hz:
            return replace(reg, freq_model=f"{METAB_ONLY} (trend {seed:+.0f} Hz: water band outside its window)")
        band = window.band(raw_fft, window.mask_at(seed), seed)
        water = window.fit(band, tpl, noise_sd)
        if water is None:  # an all-zero transient: nothing to fit
            return reg
        f_w = water.freq_hz + seed  # the band was cut from the transient shifted by the seed
        v_w, misfit = water.var_hz2, water.misfit
        frame, honesty = self._agreement(edit_set)
        off = frame.offset()  # this set's metabolite frame -> the water template's (the scan's) frame
        f_m, v_m = reg.freq_metab_hz + off, reg.freq_metab_sd_hz ** 2
        k_w2, k_m2 = honesty.scales2()  # each component's SD made as honest as its recent scatter
        why = None
        if not water.found or not math.isfinite(v_w):
            why = "water fit found no optimum"
        elif misfit > r["water_fit_max_misfit"]:
            why = f"water misfit {misfit:.1f}"
        elif abs(f_w - f_m) > r["water_fit_max_z"] * math.sqrt(k_w2 * v_w + k_m2 * v_m):
            why = "water disagrees"
        if why is None:
            f, v = inverse_variance(f_m, k_m2 * v_m, f_w, k_w2 * v_w)
            model = METAB_AND_WATER
        elif why == "water disagrees" and water_nearer_trend(f_w, k_w2 * v_w, f_m, k_m2 * v_m, seed,
                                                             trend_var, self._filter_params.jitter_hz):
            # the two disagree and the water is the likelier given the independent trend: a lost metabolite fit
            f, v = f_w, k_w2 * v_w
            model = WATER_ONLY
        else:
            f, v = f_m, k_m2 * v_m
            model = f"{METAB_ONLY} ({why})"
        # the metabolite amplitude (phase) at the combined frequency; the water's phase there normalises
        # this transient's water before it joins the template
        cr, ci = self.band.amplitude_at(fit, f - off, reg.damping_hz)
        # the water joins its template at the frequency it was counted at: f where it was used, else its own
        # fit (an excluded water line aligned at the metabolites' f would move the template's frame by its
        # error / n for good); a lost fit (no optimum, misfit) does not join
        f_join = f if model in (METAB_AND_WATER, WATER_ONLY) else f_w
        # the band (cut at the seed) moved on to f_join and the water's phase: the mask edges then sit
        # (f_join - seed), a fraction of a hertz, from the template's, and no second FFT is needed
        aligned = None if why not in (None, "water disagrees") else \
            kernels.correct_fid(band, window.dt, f_join - seed, window.phase_at(water, tpl, f_join - seed))
        self._pending_water = (aligned, f_w - reg.freq_metab_hz if why is None else math.nan,
                               (f_w, f_m, seed, v_w, v_m))
        amp = math.hypot(cr, ci)
        sd = math.sqrt(v)
        phase_sd = math.degrees(self.band.phase_sd(fit.s2, amp, fit.ref_abs2, sd)) if amp > 0 else math.nan
        return Registration(freq_hz=f - to_scan, phase_deg=math.degrees(math.atan2(ci, cr)), amplitude=amp,
                            damping_hz=reg.damping_hz, residual_norm=reg.residual_norm,
                            matched_amplitude=reg.matched_amplitude, freq_sd_hz=sd, phase_sd_deg=phase_sd,
                            freq_metab_hz=f_m - to_scan, freq_metab_sd_hz=reg.freq_metab_sd_hz,
                            freq_water_hz=f_w - to_scan,
                            freq_water_sd_hz=math.sqrt(v_w), water_misfit=misfit, freq_model=model)

    def _trend(self, ref: Reference) -> Trend:
        if ref.trend is None:
            ref.trend = Trend(self.config["tracking"]["trend_window_s"])
        return ref.trend


def warm_up_scan() -> tuple[ScanInfo, list[Transient]]:
    """Two water references and 12 metabolite transients (NAA, Cr, Cho and residual water, 2 coils, 256
    points at 2x oversampling), deterministic: the paths a real scan takes, water fit included."""
    rng = np.random.default_rng(0)
    scan = ScanInfo("warm-up", 123.2e6, 0.5e-3, 256, 2, 12, oversampling=2, source="warm-up")
    t = np.arange(scan.samples_per_transient) * scan.dwell_s / scan.oversampling
    sens = np.array([1.0, 0.6j])

    def fid(lines) -> np.ndarray:
        sig = sum(a * np.exp(2j * np.pi * (ppm - scan.centre_ppm) * scan.f0_mhz * t - np.pi * 6.0 * t)
                  for ppm, a in lines)
        noise = (rng.normal(size=(2, t.size)) + 1j * rng.normal(size=(2, t.size))) * 0.02
        return (sens[:, None] * sig[None, :] + noise).astype(np.complex64)

    metabolites = ((2.01, 1.0), (3.03, 0.8), (3.21, 0.6), (4.65, 5.0))
    out = [Transient(i, i, 0, WATER_REF, 2.0 * i, fid(((4.65, 300.0),))) for i in range(2)]
    out += [Transient(2 + i, i, 0, METABOLITE, 4.0 + 2.0 * i, fid(metabolites)) for i in range(12)]
    return scan, out
