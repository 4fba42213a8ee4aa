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
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from . import kernels
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
    FAIL,
    METABOLITE,
    OK,
    RUNNING,
    SEVERITY_RANK,
    WARN,
    WATER_REF,
    ScanInfo,
    ScanSummary,
    Transient,
    TransientQC,
    grade,
    interruption_text,
    worst,
)
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
from .spectral import SpectralAxis, band_limited, band_mask, decimate, decimated_fft, fftshift, ifftshift, spectrum
from .tracking import FilterParams, FrequencyFilter, Trend
from .water import WATER_PPM, residual_water_model, water_dominance

SD_STEP_HZ = 0.05  # finite-difference step for the fit's curvature (lines are >= 2 Hz wide)
WATER_MASK_STEPS = 8  # the water band's mask follows the seed in 1/8-bin steps (edges within 1/16 bin)
WATER_WINDOW_MARGIN_PPM = 0.4  # the decimated water window reaches this beyond the band on each side


@dataclass
class _Reference:
    """Running aligned mean of the accepted transients of one (kind, set) and its band-limited copy."""

    n: int = 0
    total: np.ndarray | None = None  # sum of aligned member FIDs (raw phase frame)
    total_fft: np.ndarray | None = None  # fft of total (FFT order), kept in step without extra FFTs
    mean: np.ndarray | None = None
    mean_spec: np.ndarray | None = None  # spectrum of the mean in the phase frame of the reference
    band: np.ndarray | None = None  # first m points of the band-limited mean
    band_abs2: np.ndarray | None = None
    phase_rad: float = 0.0  # phase that makes the reference's main peak absorptive
    noise_var_sum: float = 0.0  # sum over members of their complex noise variance per time point
    trend: Trend | None = None  # the accepted members' frequencies: the registration's seed


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
        self._refs: dict[tuple[str, int], _Reference] = {}
        self._filter_params = FilterParams.from_config(self.config["tracking"])
        self._filters: dict[tuple[str, int], FrequencyFilter] = {}  # causal frequency tracking per (kind, set)
        reg = self.config["registration"]
        self._m = max(8, min(scan.n_points, int(reg["fit_window_s"] / scan.dwell_s)))
        self._notes: list[str] = []
        # band masks in FFT (unshifted) order, and their mean power (the band's share of white noise)
        self._masks = {kind: ifftshift(band_mask(self.axis, *self._band(kind), *reg["band_taper_ppm"]))
                       for kind in (METABOLITE, WATER_REF)}
        self._mask_power = {kind: float(np.mean(m ** 2)) for kind, m in self._masks.items()}
        self._rolled: dict[tuple[str, int], np.ndarray] = {}
        # residual-water frequency fit (freq_model.py): its band, the coherent template, the agreement test
        wlo, whi = reg["water_fit_band_ppm"]
        self._wmask: np.ndarray | None = None
        if self.axis.ppm_min < wlo and self.axis.ppm_max > whi:
            self._wmask = ifftshift(band_mask(self.axis, wlo, whi, *reg["water_fit_taper_ppm"]))
            self._wpower = float(np.mean(self._wmask ** 2))
            # the band moved by a fraction of a bin (1/8 steps): with an integer roll, a mask for any seed
            ppm_step = self.axis.hz_per_point / scan.f0_mhz
            self._wmask_frac = [ifftshift(band_mask(self.axis, wlo + k * ppm_step / WATER_MASK_STEPS,
                                                    whi + k * ppm_step / WATER_MASK_STEPS,
                                                    *reg["water_fit_taper_ppm"])) for k in range(WATER_MASK_STEPS)]
            # the fit runs on the band alone, decimated: the bins of a window around it (the band +- 0.4 ppm,
            # room for the seed to move the mask; a power of 2) hold everything the masked band has, and their
            # inverse FFT samples its FID every N dt / L s (exactly: a unitary change of basis, not a filter)
            n, hz = scan.n_points, self.axis.hz_per_point
            lo_hz, hi_hz = ((wlo - WATER_WINDOW_MARGIN_PPM - scan.centre_ppm) * scan.f0_mhz,
                            (whi + WATER_WINDOW_MARGIN_PPM - scan.centre_ppm) * scan.f0_mhz)
            size = min(n, 1 << max(3, math.ceil(math.log2((hi_hz - lo_hz) / hz + 1))))
            first = int(math.floor(lo_hz / hz))
            self._widx = (first + np.arange(size)) % n
            self._wfirst = first % n
            self._wtwiddle = np.exp(2j * np.pi * np.arange(size) / size)
            self._wdt = n * scan.dwell_s / size
            self._wm = max(8, min(size, int(reg["fit_window_s"] / self._wdt)))
            self._wt_reach_hz = WATER_WINDOW_MARGIN_PPM * scan.f0_mhz  # a seed beyond moves the band out
        self._wrolled: dict[int, np.ndarray] = {}
        self._water: WaterTemplate | None = None
        self._water_seed_n = 0  # held transients in the water template's seed (its zero is their mean)
        self.water_fit_snr: float | None = None  # template peak / transient noise SD, set at calibration
        self._agree: dict[int, tuple[FrameOffset, Honesty]] = {}  # per edit set: frame offset, SD honesty
        # edited scans without residual water: each set s >= 1 against set 0's trend (its frame offset)
        self._set_frames: dict[int, FrameOffset] = {}
        self._pending_water: tuple | None = None  # (aligned water band, f_w - f_m, hat row) of this transient
        # raised-cosine ramp over the first baseline_skip_s: broad in-band features (tails of residual water,
        # macromolecules) live in the first few ms of the band-limited FID; narrow metabolite lines last longer
        t = np.arange(self._m) * scan.dwell_s
        skip = float(reg["baseline_skip_s"])
        self._ramp = np.where(t < skip, 0.5 - 0.5 * np.cos(np.pi * t / max(skip, 1e-12)), 1.0) if skip > 0 \
            else np.ones(self._m)
        self._latest: tuple[Transient, np.ndarray, float] | None = None  # last metabolite transient, for display
        self._ramp2 = self._ramp ** 2
        self._ramp2_sum = float(self._ramp2.sum())
        snr = self.config["noise"]
        self._noise_win = self.axis.window(*snr["window_ppm"])
        self._edge_wins: list[tuple[int, int]] = []
        if self._noise_win is None:
            frac = snr["fallback_tail_fraction"]
            lo_hi, hi_lo = snr["fallback_edges_ppm"]
            for lo, hi in ((self.axis.ppm_min, lo_hi), (hi_lo, self.axis.ppm_max)):
                win = self.axis.clipped_window(lo, hi)
                if win is not None and win[1] - win[0] >= 32:
                    self._edge_wins.append(win)
            edges = [f"{self.axis.ppm_of_index(a):.2f}..{self.axis.ppm_of_index(b - 1):.2f} ppm"
                     for a, b in self._edge_wins]
            self.noise_window_label = " / ".join(["quietest of " + ", ".join(edges)] if edges else []) + \
                (" and " if edges else "") + f"FID tail (last {frac:.0%} of points)"
            self._notes.append(
                f"noise window {snr['window_ppm'][0]}..{snr['window_ppm'][1]} ppm lies outside the "
                f"spectral width ({self.axis.ppm_min:.2f}..{self.axis.ppm_max:.2f} ppm): SNR noise from the "
                f"{self.noise_window_label}")
        else:
            lo, hi = snr["window_ppm"]
            self.noise_window_label = f"{lo:g}..{hi:g} ppm"
        if scan.combined:
            self._notes.append("data were averaged on the scanner: per-transient checks need per-transient data")

    # ------------------------------------------------------------------ public
    @staticmethod
    def warm_up(config: Config | None = None) -> None:
        """Run a tiny simulated scan through every code path (kernels, FFT plans, plugins) so the first real
        transient of a live scan is as fast as the rest."""
        from .sources.simulate import SimulationParams, simulate_scan

        sim = simulate_scan(SimulationParams(n_coils=2, n_points=256, averages=12, seed=0, events=[]))
        qc = ScanQC(sim.scan, config)
        for t in sim.transients:
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
            fids = [self._combine(t) for t in members]
            self._seed_reference(self._refs.setdefault((METABOLITE, s), _Reference()), fids)
        self._seed_water(held)
        last_of_set = {t.set: t.index for t in held}
        return [self._run(t, seeded_member=True, seed_complete=last_of_set[t.set] == t.index) for t in held]

    def _seed_water(self, held: list[Transient]) -> None:
        """Coherent water template from the held transients (before any water removal; one for all edit sets,
        so every set's water frequency shares one zero); used only when its peak stands
        ``water_fit_min_snr`` noise SDs above a transient's noise."""
        if self._wmask is None:
            return
        reg = self.config["registration"]
        bands, noise = [], []
        for t in held:
            fid, fid_fft, raw_fft = self._combine_fft(t)
            sd = self._noise_sd(fftshift(fid_fft), fid)
            bands.append(self._water_band(raw_fft, self._wmask[self._widx]))
            noise.append(2.0 * sd ** 2 / self.scan.n_points)
        total = coherent_seed(bands)
        n = len(bands)
        size = self._widx.shape[0]
        peak = float(np.abs(np.fft.fft(total / n, size)).max()) * self.scan.n_points / size
        self.water_fit_snr = peak / math.sqrt(np.mean(noise) * self.scan.n_points / 2.0)
        if self.water_fit_snr >= float(reg["water_fit_min_snr"]):
            self._water = WaterTemplate(total, n, sum(noise) * self._wpower)
            self._water_seed_n = n

    def _water_band(self, fft: np.ndarray, window_mask: np.ndarray, shift_hz: float = 0.0) -> np.ndarray:
        """The first ``_wm`` samples (every ``_wdt`` s) of the FID of ``fft * mask`` (FFT order), from the
        decimation window's bins (``window_mask`` = the mask on them): (L / N) ifft_L, so each sample is the
        full-rate band-limited FID's value there (the window's base frequency is left out: common to
        transient and template, it cancels); shifted by -``shift_hz``."""
        return kernels.decimated_band(fft, self._wfirst, window_mask, self._wtwiddle, self._wm, self._wdt,
                                      shift_hz)

    def _seed_reference(self, ref: _Reference, fids: list[np.ndarray]) -> None:
        """Initial reference = the unaligned mean of the held transients: its frequency is exactly their mean
        true frequency, the scan's 0 Hz. (Aligning the members to their own mean first was measured: it moves
        that zero point by the members' estimation noise and made the frequency RMSE worse at SNR 3-5.)"""
        ref.n = len(fids)
        ref.noise_var_sum = sum(2.0 * self._noise_sd(spectrum(f), f) ** 2 / self.scan.n_points for f in fids)
        ref.total = np.sum(fids, axis=0).astype(np.complex128)
        ref.total_fft = np.fft.fft(ref.total)
        self._derive(ref, METABOLITE)
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
        n_flagged = len(flagged)
        vcfg = self.config["verdict"]
        if metab:
            frac = sum(1 for r in metab if not r.accepted) / len(metab)
            flagged_text = f"{n_flagged} motion-corrupted average{'s' if n_flagged != 1 else ''} ({frac:.0%})"
            severity = grade(frac, vcfg["flagged_warn_fraction"], vcfg["flagged_fail_fraction"])
            if severity != OK or n_flagged:
                findings.append(Finding(severity, flagged_text, "flagged_fraction", frac))
        if status not in ("complete", RUNNING):
            findings.append(Finding(WARN, interruption_text(status, len(metab), self.scan.planned_averages),
                                    "status", status))
        if not self.results and status != RUNNING:
            findings.append(Finding(FAIL, "no transients", "n_transients", 0))
        # a live summary may only have seen the water references that precede the metabolite transients
        water_only = bool(self.results) and not metab and status != RUNNING
        ranked = sorted((f for f in findings if f.severity != OK), key=lambda f: -SEVERITY_RANK[f.severity])
        details["findings"] = [{"severity": f.severity, "text": f.text, "key": f.key, "value": f.value}
                               for f in findings]
        details["noise_window"] = self.noise_window_label
        return ScanSummary(
            scan_id=self.scan.scan_id,
            n_transients=len(self.results),
            n_metabolite=len(metab),
            n_water_ref=sum(1 for r in self.results if r.kind == WATER_REF),
            n_flagged=n_flagged,
            flagged_indices=flagged,
            verdict=worst(f.severity for f in findings),
            reasons=[f.text for f in ranked],
            fields=fields,
            status=status,
            notes=list(self._notes),
            details=details,
            unmeasured=unmeasured,
            scan_kind="water-only" if water_only else "metabolite",
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
        mean_fft = np.mean([self._combine_fft(t)[1] for t in held], axis=0)
        d = self.water_dominance = water_dominance(fftshift(mean_fft), self.axis.ppm())
        if d < float(reg["ramp_min_dominance"]):
            # no residual water whose wandering tail the ramp has to keep out: every early point counts
            self._ramp = np.ones(self._m)
            self._ramp2 = self._ramp ** 2
            self._ramp2_sum = float(self._ramp2.sum())
        if d >= float(reg["water_removal_dominance"]):
            self._water_removal = True
            self._notes.append(
                f"residual water {d:.0f}x the metabolite peaks (max |S|, calibration mean): modelled (ESPRIT, up "
                f"to {int(reg['water_removal_poles'])} poles within {reg['water_removal_keep_ppm']:g} ppm of "
                f"{WATER_PPM} ppm) and removed from every metabolite transient before the checks")

    def _combine(self, transient: Transient) -> np.ndarray:
        """Coil-combined FID at the output rate (see :meth:`_combine_fft`)."""
        return self._combine_fft(transient)[0]

    def _combine_fft(self, transient: Transient) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(FID, its FFT in FFT order, the FFT before residual-water removal) after coil combination and
        oversampling removal. Both are linear, so one FID is decimated instead of every coil, and the
        decimated spectrum comes out of that FFT."""
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
        return fid, fid_fft, raw_fft

    def _band(self, kind: str) -> tuple[float, float]:
        reg = self.config["registration"]
        return tuple(reg["water_band_ppm"] if kind == WATER_REF else reg["band_ppm"])  # type: ignore[return-value]

    def _run(self, transient: Transient, seeded_member: bool = False, seed_complete: bool = True) -> TransientQC:
        scan, cfg = self.scan, self.config
        dt = scan.dwell_s
        fid, fid_fft, raw_fft = self._combine_fft(transient)
        key = (transient.kind, transient.set)
        ref = self._refs.setdefault(key, _Reference())
        filt = self._filters.setdefault(key, FrequencyFilter(self._filter_params))
        pred = filt.predict(transient.time_s)
        # the search centre and the reference of the frequency-jump test: the least-squares trend of the last
        # 60 s (no prior to tune, robust to lost fits on weak in-vivo data); the filter gives freq_causal_hz
        seed, seed_var = self._predict(ref, transient.time_s)
        raw_spec = fftshift(fid_fft)
        noise_sd = self._noise_sd(raw_spec, fid)
        self._pending_water = None
        raw_freq = math.nan  # an edited set's single shot in its own reference's frame (no residual water)
        align: Registration | None = None  # what the transient joins its reference at, if not ``reg``
        if ref.n == 0:
            reg = Registration(0.0, 0.0, 1.0, 0.0, is_reference=True)
            ref.phase_rad = self._peak_phase(raw_spec, transient.kind)
        else:
            with_water = transient.kind == METABOLITE and self._water is not None
            reg, fit = self._register(fid_fft, ref, seed, transient.kind, noise_sd, phase_sd=not with_water)
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
            scan=scan, config=cfg, transient=transient, axis=self.axis, fid=fid, reg=reg, freq_pred_hz=seed,
            freq_pred_var_hz2=seed_var, prediction=pred, spec=spec, ref_spec=ref.mean_spec, noise_sd=noise_sd,
            noise_window=self.noise_window_label, calibration=seeded_member)
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
            self._add_to_reference(ref, transient, corrected, corrected_fft, reg)
        if qc.accepted and not seeded_member and math.isfinite(raw_freq):
            base = self._refs.get((METABOLITE, 0))
            # set 0's trend in its own frame (its results carry the scan's zero shift)
            trend0 = self._predict(base, transient.time_s)[0] - self._sets_zero() if base is not None else math.nan
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
                    self._water.add(aligned, 2.0 * noise_sd ** 2 / scan.n_points * self._wpower)
        if transient.kind == METABOLITE:
            self._latest = (transient, spec, noise_sd)
        if seeded_member and not seed_complete:
            # the seed mean holds later transients too: no running value is honest before its last member
            n_cal = int(self.config["coils"]["calibration_transients"])
            ctx.running_unavailable = (f"calibration: the first {n_cal} metabolite transients form the reference "
                                       "together; running values start with the last of them")
        else:
            ctx.running_fid = ref.mean
            ctx.running_spec = ref.mean_spec
            ctx.running_noise_sd = self._noise_sd(ref.mean_spec, ref.mean) if ref.mean_spec is not None else None
        ctx.n_accepted = ref.n
        for check, own in zip(self.checks, measured):
            self._merge(check, check.update(ctx, qc.accepted, own), qc, False)
        self.results.append(qc)
        return qc

    def _merge(self, check: Check, res: CheckResult, qc: TransientQC, measuring: bool) -> CheckResult:
        """A check's result into the transient's record, after checking it declared every name it returns."""
        self.contract.check_result(check, res, measuring)
        qc.fields.update(res.fields)
        qc.metrics.update(res.metrics)
        qc.flags.extend(res.flags)
        qc.unmeasured.update(res.unmeasured)
        return res

    def _register(self, fid_fft: np.ndarray, ref: _Reference, seed: float, kind: str,
                  noise_sd: float, phase_sd: bool = True) -> tuple[Registration, tuple]:
        """Register one transient (its FFT, FFT order) to the reference of its (kind, set). Returns the
        registration and what re-evaluating the fit at another frequency needs (z, noise, damping);
        ``phase_sd`` False leaves the phase SD to the caller (the water fit moves the frequency)."""
        r = self.config["registration"]
        # mask the transient in its own (seed-shifted) frame, so the tapers cut it where they cut the reference
        shift = int(round(seed / self.axis.hz_per_point))
        mask = self._rolled.get((kind, shift))
        if mask is None:
            mask = self._rolled[(kind, shift)] = np.roll(self._masks[kind], shift)
        band = band_limited(fid_fft, mask, self._m) * self._ramp
        z = kernels.cross_product(band, ref.band, self._m)
        # expected noise energy per point of the band-limited, ramped reference mean
        power = self._mask_power[kind]
        ref_noise = (ref.noise_var_sum / ref.n) * power / ref.n * self._ramp2
        white = 2.0 * noise_sd ** 2 / self.scan.n_points  # complex noise variance per time point
        v_point = white * power
        trans_noise = v_point * self._ramp2
        d_lo, d_hi = r["damping_range_hz"]
        out = kernels.register(z, ref.band_abs2, ref_noise, trans_noise, self.scan.dwell_s, seed,
                               r["search_half_width_hz"], r["grid_step_hz"], d_lo, d_hi)
        if out[5] > 0.0:  # optimum outside the seeded window: search three times wider around the seed
            out = kernels.register(z, ref.band_abs2, ref_noise, trans_noise, self.scan.dwell_s, seed,
                                   3.0 * r["search_half_width_hz"], r["grid_step_hz"], d_lo, d_hi)
        f, cr, ci, d, j_best, _, c0r, c0i = out
        # misfit of the model: ||b||^2 - J, over the noise energy expected in b (band-limited, ramped) plus
        # the reference's noise carried through the fit; ~1 for a transient that matches the reference
        expected = v_point * self._ramp2_sum * (1.0 + 1.0 / ref.n)
        resid = (float(np.vdot(band, band).real) - j_best) / expected if expected > 0 else math.nan
        s2 = white * (1.0 + 1.0 / ref.n)  # the template's own noise adds 1/n of the transient's
        _, _, curv = kernels.fit_at(z, ref.band_abs2, ref_noise, self.scan.dwell_s, f, d, SD_STEP_HZ)
        sd = math.sqrt(s2 / curv * max(1.0, resid)) if curv > 0 and math.isfinite(resid) else math.inf
        amp = math.hypot(cr, ci)
        phase_sd = math.degrees(self._phase_sd(s2, amp, ref.band_abs2, sd)) if amp > 0 and phase_sd else math.nan
        reg = Registration(freq_hz=f, phase_deg=math.degrees(math.atan2(ci, cr)), amplitude=amp,
                           damping_hz=d, residual_norm=resid, matched_amplitude=math.hypot(c0r, c0i),
                           freq_sd_hz=sd, phase_sd_deg=phase_sd, freq_metab_hz=f, freq_metab_sd_hz=sd,
                           freq_model=METAB_ONLY)
        return reg, (z, ref.band_abs2, ref_noise, s2)

    def _phase_sd(self, s2: float, amp: float, ref_abs2: np.ndarray, f_sd: float) -> float:
        """SD (rad) of the zero-order phase angle(c) at the fitted frequency: the amplitude's own noise,
        s2 / (2 |c|^2 E), plus the frequency's error carried to t = 0 from the energy-weighted mean time."""
        e, t_mean = kernels.energy_moments(ref_abs2, self.scan.dwell_s)
        return math.sqrt(s2 / (2.0 * amp * amp * e) + (2.0 * math.pi * t_mean * f_sd) ** 2)

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

    def _with_water(self, reg: Registration, fit: tuple, raw_fft: np.ndarray, trend: float, trend_var: float,
                    noise_sd: float, edit_set: int) -> Registration:
        """Add the residual water's frequency to the metabolites' (freq_model.py: fit, rules, combination).
        The fit and the combination run in the water template's frame; the result is reported in set 0's
        metabolite frame (the scan's zero: the held transients' mean). The two agree for water that follows
        B0; the zero of a water line that does not is its held transients' mean apparent frequency, off by
        their distortion, and is moved by set 0's frame offset (``FrameOffset``).
        The water band is cut with the mask moved by the seed (in 1/8-bin steps) and brought back by it: the
        water's tails at the band edges are then cut where the template's were, to a sixteenth of a bin."""
        r = self.config["registration"]
        to_scan = self._water_frame_offset()
        seed = trend + to_scan  # the trend in the water template's frame
        if abs(seed) > self._wt_reach_hz:
            return replace(reg, freq_model=f"{METAB_ONLY} (trend {seed:+.0f} Hz: water band outside its window)")
        dt = self._wdt
        pos = seed / self.axis.hz_per_point * WATER_MASK_STEPS
        key = int(math.floor(pos + 0.5))
        mask = self._wrolled.get(key)
        if mask is None:
            if len(self._wrolled) >= 256:  # a long drift: keep the memory bounded
                self._wrolled.clear()
            whole, frac = divmod(key, WATER_MASK_STEPS)
            mask = self._wrolled[key] = np.roll(self._wmask_frac[frac], whole)[self._widx]
        band = self._water_band(raw_fft, mask, seed)
        tpl = self._water
        m = self._wm
        z = kernels.cross_product(band, tpl.band, m)
        white = 2.0 * noise_sd ** 2 / self.scan.n_points
        v_point = white * self._wpower  # noise variance of one decimated sample
        if not v_point > 0:  # an all-zero transient: nothing to fit
            return reg
        ref_noise = tpl.noise
        trans_noise = tpl.noise  # (unused: the damping is fixed)
        half = r["search_half_width_hz"]
        out = kernels.register(z, tpl.abs2, ref_noise, trans_noise, dt, 0.0, half, r["grid_step_hz"], 0.0, 0.0)
        if out[5] > 0.0:
            out = kernels.register(z, tpl.abs2, ref_noise, trans_noise, dt, 0.0, 3.0 * half, r["grid_step_hz"],
                                   0.0, 0.0)
        f_w, _, _, _, j_w, edge = out[:6]
        misfit = (float(np.vdot(band, band).real) - j_w) / (v_point * m * (1.0 + 1.0 / tpl.n))
        # the sum over samples every _wdt s is (L / N) times the full-rate one: so is the curvature
        s2_w = white * (1.0 + 1.0 / tpl.n) * self._widx.shape[0] / self.scan.n_points
        _, _, curv = kernels.fit_at(z, tpl.abs2, ref_noise, dt, f_w, 0.0, SD_STEP_HZ)
        f_w += seed  # the band was cut from the transient shifted by the seed
        # a misfit above the noise (real suppression changes the water's shape a little) is model error: its
        # variance is scaled by it, as a parameter's variance by the reduced chi-square
        v_w = s2_w / curv * max(1.0, misfit) if curv > 0 else math.inf
        frame, honesty = self._agreement(edit_set)
        off = frame.offset()  # this set's metabolite frame -> the water template's (the scan's) frame
        f_m, v_m = reg.freq_metab_hz + off, reg.freq_metab_sd_hz ** 2
        k_w2, k_m2 = honesty.scales2()  # each component's SD made as honest as its recent scatter
        why = None
        if edge > 0.0 or not math.isfinite(v_w):
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
        z_m, abs2_m, noise_m, s2_m = fit
        cr, ci, _ = kernels.fit_at(z_m, abs2_m, noise_m, self.scan.dwell_s, f - off, reg.damping_hz, SD_STEP_HZ)
        # the water joins its template at the frequency it was counted at: f where it was used, else its own
        # fit (an excluded water line aligned at the metabolites' f would move the template's frame by its
        # error / n for good); a lost fit (no optimum, misfit) does not join
        f_join = f if model in (METAB_AND_WATER, WATER_ONLY) else f_w
        wr, wi, _ = kernels.fit_at(z, tpl.abs2, ref_noise, dt, f_join - seed, 0.0, SD_STEP_HZ)
        # the band (cut at the seed) moved on to f_join and the water's phase: the mask edges then sit
        # (f_join - seed), a fraction of a hertz, from the template's, and no second FFT is needed
        aligned = None if why not in (None, "water disagrees") else \
            kernels.correct_fid(band, dt, f_join - seed, math.atan2(wi, wr))
        self._pending_water = (aligned, f_w - reg.freq_metab_hz if why is None else math.nan,
                               (f_w, f_m, seed, v_w, v_m))
        amp = math.hypot(cr, ci)
        sd = math.sqrt(v)
        phase_sd = math.degrees(self._phase_sd(s2_m, amp, abs2_m, sd)) if amp > 0 else math.nan
        return Registration(freq_hz=f - to_scan, phase_deg=math.degrees(math.atan2(ci, cr)), amplitude=amp,
                            damping_hz=reg.damping_hz, residual_norm=reg.residual_norm,
                            matched_amplitude=reg.matched_amplitude, freq_sd_hz=sd, phase_sd_deg=phase_sd,
                            freq_metab_hz=f_m - to_scan, freq_metab_sd_hz=reg.freq_metab_sd_hz,
                            freq_water_hz=f_w - to_scan,
                            freq_water_sd_hz=math.sqrt(v_w), water_misfit=misfit, freq_model=model)

    @staticmethod
    def _predict(ref: _Reference, t: float) -> tuple[float, float]:
        """Causal trend prediction of the frequency at time t (Hz) from the reference's accepted members
        (``tracking.Trend``) and its variance (Hz^2); (0, NaN) before the reference has members."""
        if ref.n == 0 or ref.trend is None:
            return 0.0, math.nan
        return ref.trend.at(t)[:2]

    def _add_to_reference(self, ref: _Reference, transient: Transient, corrected: np.ndarray,
                          corrected_fft: np.ndarray, reg: Registration) -> None:
        # store the transient in the reference frame *without* the reference's display phase
        rot = np.exp(1j * ref.phase_rad)
        if ref.total is None:
            ref.total = np.zeros(corrected.shape[0], dtype=np.complex128)
            ref.total_fft = np.zeros(corrected.shape[0], dtype=np.complex128)
        kernels.accumulate(ref.total, corrected * rot)
        kernels.accumulate(ref.total_fft, corrected_fft * rot)
        ref.n += 1
        self._derive(ref, transient.kind)
        self._trend(ref).add(transient.time_s, reg.freq_hz)

    def _trend(self, ref: _Reference) -> Trend:
        if ref.trend is None:
            ref.trend = Trend(self.config["tracking"]["trend_window_s"])
        return ref.trend

    def _derive(self, ref: _Reference, kind: str) -> None:
        """Recompute the reference's mean, band-limited copy, display phase and spectrum from its total."""
        mean = ref.total / ref.n
        mean_fft = ref.total_fft / ref.n
        ref.band = band_limited(mean_fft, self._masks[kind], self._m) * self._ramp
        ref.band_abs2 = ref.band.real ** 2 + ref.band.imag ** 2
        raw_spec = fftshift(mean_fft)
        ref.phase_rad = self._peak_phase(raw_spec, kind)
        rot = np.exp(-1j * ref.phase_rad)
        ref.mean = mean * rot
        ref.mean_spec = raw_spec * rot

    def _peak_phase(self, spec: np.ndarray, kind: str) -> float:
        """Zero-order phase (rad) that makes the main peak absorptive: NAA for metabolites, water for
        water references; the angle of the spectrum at the largest |S| in that peak's window."""
        ref = self.config["reference"]
        win = self.axis.clipped_window(*(ref["water_phase_window_ppm"] if kind == WATER_REF
                                         else ref["metabolite_phase_window_ppm"]))
        if win is None:
            return 0.0
        return float(np.angle(spec[kernels.argmax_abs(spec, win[0], win[1])]))

    def _noise_sd(self, spec: np.ndarray, fid: np.ndarray) -> float:
        """SD of the noise in Re(spec): detrended SD in the noise window (FID-A). When that window is outside the
        spectral width: the smallest of the detrended SDs of the axis edges (below / above
        ``snr.fallback_edges_ppm``, >= 32 points) and the FID-tail estimate scaled by sqrt(N)."""
        if self._noise_win is not None:
            return float(kernels.detrended_sd(spec.real, self._noise_win[0], self._noise_win[1]))
        frac = self.config["noise"]["fallback_tail_fraction"]
        # the quietest estimate: a tail that still holds signal (long-T2 residual water) or an edge band with a
        # line in it can only raise an SD, never lower it below the noise
        sds = [float(kernels.detrended_sd(spec.real, a, b)) for a, b in self._edge_wins]
        sds.append(float(kernels.tail_sd(fid, frac) * math.sqrt(fid.shape[0])))
        return min(sds)
