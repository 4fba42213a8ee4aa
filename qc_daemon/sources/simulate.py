"""Simulated SVS scans with ground truth: a 3T brainstem-like spectrum, coils, noise, drift, motion events.

The spectrum is a sum of Voigt lines at literature chemical shifts (NAA, NAAG, Cr, Cho, mI, Glu, Gln, GABA,
macromolecules, residual water); J-coupled multiplets are approximated by broadened singlets, which is
enough for QC (not a basis set for quantification). Noise is complex Gaussian, correlated across coils.

Truth conventions match the engine's: frequency (Hz, + = towards higher ppm) and phase (deg) of each
transient relative to the engine's reference (water: the first water reference; metabolites: one frequency
zero for the scan, the mean of its first ``reference_transients`` metabolite transients of every edit set,
and the phase of that set's among them); ``naa_snr`` is the per-transient NAA SNR of the optimally
combined metabolite signal by the FID-A definition (NAA max Re S 1.8..2.2 ppm / noise SD of Re S). The
running SNR of n clean transients by that definition is ``naa_snr * snr_running_truth_factor * sqrt(n)``:
the factor applies the definition to the noise-free average, whose residual-water tails sit under NAA.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..model import METABOLITE, WATER_REF, ScanInfo, Transient

# (ppm, amplitude [a.u. ~ protons x mM], Lorentzian FWHM added to the base linewidth [Hz])
METABOLITE_LINES: tuple[tuple[float, float, float], ...] = (
    (2.008, 30.0, 0.0), (2.49, 3.0, 6.0), (2.67, 3.0, 6.0),            # NAA
    (2.042, 4.5, 0.0),                                                  # NAAG
    (3.027, 24.0, 0.0), (3.913, 16.0, 0.0),                             # Cr + PCr
    (3.185, 13.5, 0.0),                                                 # Cho
    (3.52, 6.0, 5.0), (3.61, 6.0, 5.0), (4.05, 3.0, 5.0), (3.27, 3.0, 5.0),  # mI
    (2.04, 5.0, 8.0), (2.12, 5.0, 8.0), (2.35, 10.0, 8.0), (3.75, 10.0, 6.0),  # Glu
    (2.13, 4.0, 8.0), (2.45, 4.0, 8.0), (3.76, 4.0, 6.0),              # Gln
    (1.89, 3.0, 6.0), (2.28, 3.0, 6.0), (3.01, 3.0, 6.0),              # GABA
)
# (ppm, amplitude, Gaussian FWHM Hz): macromolecules
MM_LINES: tuple[tuple[float, float, float], ...] = (
    (0.90, 8.0, 25.0), (1.21, 10.0, 30.0), (1.39, 6.0, 30.0), (1.67, 4.0, 25.0), (2.00, 6.0, 30.0),
    (3.00, 4.0, 35.0))
LIPID_LINES: tuple[tuple[float, float, float], ...] = ((0.9, 1.0, 25.0), (1.3, 2.5, 30.0))
WATER_PPM = 4.65

EVENT_KINDS = ("freq_jump", "phase_amp", "lipid", "broadening")


@dataclass
class Event:
    """A corruption applied to one metabolite transient (``index`` counts metabolite transients)."""

    index: int
    kind: str  # one of EVENT_KINDS
    value: float  # Hz for freq_jump/broadening, deg for phase_amp, x NAA height for lipid
    amplitude_loss: float = 0.0  # fraction, for phase_amp


@dataclass
class SimulationParams:
    """Everything that defines a simulated scan. Units in names."""

    n_coils: int = 32
    n_points: int = 2048
    dwell_s: float = 0.5e-3
    f0_hz: float = 123.2e6
    averages: int = 128
    tr_s: float = 2.0
    te_ms: float = 30.0
    naa_snr: float = 4.0
    metab_lw_hz: float = 5.0  # Lorentzian part of the metabolite linewidth
    metab_gauss_hz: float = 3.0
    water_lw_hz: float = 8.0  # water reference (pure Lorentzian: its FWHM is exactly this)
    water_refs_before: int = 2
    water_refs_after: int = 0
    water_to_naa: float = 2500.0  # unsuppressed water amplitude / NAA amplitude
    residual_water: float = 15.0  # residual water amplitude / NAA amplitude
    residual_water_phase_step_deg: float = 25.0  # random-walk step of its phase per transient
    #: the random walk reflected at +-this (deg), so the phase wanders within a band (None: unbounded)
    residual_water_phase_limit_deg: float | None = None
    residual_water_amp_jitter: float = 0.4  # its amplitude is uniform in 1 +- this, per transient
    #: its frequency offset from B0, drawn per transient (Hz SD): 0 = it follows B0 exactly like the
    #: metabolites; > 0 = a distorted water line (suppression) whose apparent frequency does not
    residual_water_freq_sd_hz: float = 1.0
    drift_hz_per_min: float = 2.0
    drift_curvature_hz: float = 0.5  # amplitude of a slow sinusoidal deviation from linear drift
    drift_thermal_hz: float = 0.0  # gradient-heating drift: + this x (1 - exp(-t / drift_thermal_tau_s)), Hz
    drift_thermal_tau_s: float = 90.0
    freq_jitter_hz: float = 0.1
    phase_jitter_deg: float = 2.0
    mega: bool = False
    events: list[Event] = field(default_factory=list)
    seed: int = 1
    sequence: str = "svs_se"
    scan_label: str = "sim"
    #: a phantom instead of brain: its (ppm, amplitude, extra Lorentzian Hz) lines replace metabolites and
    #: macromolecules (e.g. ((1.1, 40, 0), (3.6, 30, 0)): a phantom with no NAA or Cr)
    phantom_lines: tuple | None = None
    reference_transients: int = 8  # truth zero for metabolites: mean of the scan's first 8 (engine default)

    @property
    def n_sets(self) -> int:
        return 2 if self.mega else 1


@dataclass
class SimulatedScan:
    scan: ScanInfo
    transients: list[Transient]
    truth: dict


def default_events(averages: int, rng: np.random.Generator, n_each: int = 2, start: int = 12) -> list[Event]:
    """``n_each`` events of every kind at distinct random metabolite indices >= ``start``."""
    kinds = [k for k in EVENT_KINDS for _ in range(n_each)]
    idx = rng.choice(np.arange(start, averages), size=len(kinds), replace=False)
    events = []
    for i, kind in zip(sorted(int(x) for x in idx), rng.permutation(kinds)):
        if kind == "freq_jump":
            events.append(Event(i, kind, float(rng.choice([-1, 1]) * rng.uniform(6.0, 10.0))))
        elif kind == "phase_amp":
            events.append(Event(i, kind, float(rng.choice([-1, 1]) * rng.uniform(45.0, 90.0)),
                                float(rng.uniform(0.45, 0.7))))
        elif kind == "lipid":
            events.append(Event(i, kind, float(rng.uniform(2.0, 6.0))))
        else:
            events.append(Event(i, kind, float(rng.uniform(10.0, 16.0))))
    return events


def _voigt(t: np.ndarray, ppm: float, amp: float, lw_l: float, lw_g: float, f0_mhz: float) -> np.ndarray:
    freq = (ppm - WATER_PPM) * f0_mhz
    return amp * np.exp(2j * np.pi * freq * t - np.pi * lw_l * t - (np.pi * lw_g * t) ** 2 / (4 * math.log(2)))


def metabolite_fid(p: SimulationParams, t: np.ndarray, edit_on: bool = False) -> np.ndarray:
    """Noise-free metabolite + macromolecule FID (a.u.), no water."""
    f0 = p.f0_hz / 1e6
    fid = np.zeros(t.shape, dtype=np.complex128)
    if p.phantom_lines is not None:
        for ppm, amp, extra in p.phantom_lines:
            fid += _voigt(t, ppm, amp, p.metab_lw_hz + extra, p.metab_gauss_hz, f0)
        return fid
    for ppm, amp, extra in METABOLITE_LINES:
        if edit_on and abs(ppm - 2.008) < 1e-3:
            amp *= 0.3  # editing pulse at 1.9 ppm partly saturates NAA
        if edit_on and abs(ppm - 3.01) < 1e-3:
            amp *= -1.0  # GABA 3.0 ppm refocused with opposite sign in the ON condition
        fid += _voigt(t, ppm, amp, p.metab_lw_hz + extra, p.metab_gauss_hz, f0)
    for ppm, amp, lw_g in MM_LINES:
        fid += _voigt(t, ppm, amp, 0.0, lw_g, f0)
    return fid


def naa_height(fid: np.ndarray, p: SimulationParams) -> float:
    """max Re spectrum in 1.8..2.2 ppm of a noise-free FID (the FID-A SNR numerator)."""
    n = fid.shape[0]
    spec = np.fft.fftshift(np.fft.fft(fid))
    ppm = WATER_PPM + (np.arange(n) - n // 2) / (n * p.dwell_s) / (p.f0_hz / 1e6)
    sel = (ppm >= 1.8) & (ppm <= 2.2)
    return float(spec.real[sel].max())


def _phased_naa_height(fid: np.ndarray, p: SimulationParams) -> float:
    """FID-A SNR numerator of a noise-free FID: phase the largest |S| in 1.8..2.2 ppm absorptive, max Re S."""
    n = fid.shape[0]
    spec = np.fft.fftshift(np.fft.fft(fid))
    ppm = WATER_PPM + (np.arange(n) - n // 2) / (n * p.dwell_s) / (p.f0_hz / 1e6)
    sel = (ppm >= 1.8) & (ppm <= 2.2)
    win = spec[sel]
    win = win * np.exp(-1j * np.angle(win[np.argmax(np.abs(win))]))
    return float(win.real.max())


def scan_id_for(label: str) -> str:
    """Anonymous scan id: a short hash of a measurement UID or label."""
    return hashlib.sha256(label.encode()).hexdigest()[:16]


def simulate_scan(p: SimulationParams) -> SimulatedScan:
    """Build every transient of a scan and its ground truth (see module docstring for conventions)."""
    rng = np.random.default_rng(p.seed)
    n, c = p.n_points, p.n_coils
    t = np.arange(n) * p.dwell_s
    f0 = p.f0_hz / 1e6
    metab = {False: metabolite_fid(p, t), True: metabolite_fid(p, t, edit_on=True)}
    # naa_snr is the SNR of NAA, or for a phantom (no NAA) that of its strongest line
    height = naa_height(metab[False], p) if p.phantom_lines is None else \
        float(np.fft.fft(metab[False]).real.max())
    # coils: sensitivities and correlated noise
    sens = (rng.uniform(0.2, 1.0, c) * np.exp(1j * rng.uniform(-np.pi, np.pi, c))).astype(np.complex128)
    mix = np.eye(c) + 0.15 * (rng.standard_normal((c, c)) + 1j * rng.standard_normal((c, c))) / math.sqrt(c)
    mix *= rng.uniform(0.7, 1.3, c)[:, None]
    psi = mix @ mix.conj().T  # complex noise covariance for unit scale
    q = float(np.real(sens.conj() @ np.linalg.solve(psi, sens)))
    # noise scale so that the optimally combined NAA SNR equals p.naa_snr
    sigma = height * math.sqrt(2.0 * q / n) / p.naa_snr
    noise_scale = 1.0 / sigma  # scale the signal instead of the noise, keeping unit-ish noise
    naa_amp = 30.0

    def drift(time_s: float) -> float:
        return (p.drift_hz_per_min * time_s / 60.0
                + p.drift_curvature_hz * math.sin(2 * math.pi * time_s / 240.0)
                + p.drift_thermal_hz * (1.0 - math.exp(-time_s / p.drift_thermal_tau_s)))

    events = {e.index: e for e in p.events}
    transients: list[Transient] = []
    truth_rows: list[dict] = []
    water_phase = 0.0
    clean_sum = np.zeros(n, dtype=np.complex128)  # noise-free aligned sum of clean metabolite transients (set 0)
    n_clean = 0
    kinds = ([WATER_REF] * p.water_refs_before + [METABOLITE] * p.averages + [WATER_REF] * p.water_refs_after)
    m_index = 0
    for index, kind in enumerate(kinds):
        time_s = index * p.tr_s
        freq = drift(time_s) - drift(0.0) + rng.normal(0.0, p.freq_jitter_hz)
        phase = rng.normal(0.0, p.phase_jitter_deg)
        amp, extra_lw, lipid = 1.0, 0.0, 0.0
        ev = events.get(m_index) if kind == METABOLITE else None
        set_ = (m_index % 2) if (p.mega and kind == METABOLITE) else 0
        if ev is not None:
            if ev.kind == "freq_jump":
                freq += ev.value
            elif ev.kind == "phase_amp":
                phase += ev.value
                amp *= 1.0 - ev.amplitude_loss
            elif ev.kind == "lipid":
                lipid = ev.value
            elif ev.kind == "broadening":
                extra_lw = ev.value
        rot = np.exp(2j * np.pi * freq * t + 1j * math.radians(phase) - np.pi * extra_lw * t)
        if kind == WATER_REF:
            sig = _voigt(t, WATER_PPM, naa_amp * p.water_to_naa, p.water_lw_hz, 0.0, f0) + metab[False]
        else:
            water_phase += rng.normal(0.0, p.residual_water_phase_step_deg)
            lim = p.residual_water_phase_limit_deg
            if lim is not None:  # reflect at +-lim
                water_phase = (water_phase + lim) % (4.0 * lim)
                water_phase = (water_phase if water_phase <= 2.0 * lim else 4.0 * lim - water_phase) - lim
            rw = naa_amp * p.residual_water * rng.uniform(1.0 - p.residual_water_amp_jitter,
                                                          1.0 + p.residual_water_amp_jitter)
            sig = metab[bool(set_)] + rw * np.exp(1j * math.radians(water_phase)) * \
                np.exp(-np.pi * 10.0 * t) * np.exp(2j * np.pi * rng.normal(0.0, p.residual_water_freq_sd_hz) * t)
            if lipid:
                for ppm, a, lw in LIPID_LINES:
                    sig = sig + _voigt(t, ppm, a * lipid * naa_amp * 3.0, lw, 0.0, f0)
        if kind == METABOLITE and ev is None and set_ == 0:
            clean_sum += sig
            n_clean += 1
        sig = sig * rot * amp * noise_scale
        noise = mix @ (rng.standard_normal((c, n)) + 1j * rng.standard_normal((c, n))) / math.sqrt(2.0)
        data = (sens[:, None] * sig[None, :] + noise).astype(np.complex64)
        transients.append(Transient(index=index, average=m_index if kind == METABOLITE else 0, set=set_,
                                    kind=kind, time_s=time_s, data=data))
        truth_rows.append({
            "index": index, "kind": kind, "set": set_, "time_s": time_s, "freq_hz": freq, "phase_deg": phase,
            "amplitude": amp, "extra_lw_hz": extra_lw, "lipid": lipid,
            "corrupted": ev is not None, "event": ev.kind if ev is not None else None})
        if kind == METABOLITE:
            m_index += 1
    # truth zero as in the engine: water refs -> the first one. Metabolites: one frequency zero for the whole
    # scan, the mean of its first ``reference_transients`` metabolite transients (every edit set); phase zero per
    # set, the circular mean of that set's among them
    first_m = [r for r in truth_rows if r["kind"] == METABOLITE][: p.reference_transients]
    f_zero = float(np.mean([r["freq_hz"] for r in first_m])) if first_m else 0.0
    for kind in (METABOLITE, WATER_REF):
        for s in range(p.n_sets):
            rows = [r for r in truth_rows if r["kind"] == kind and r["set"] == s]
            if rows:
                first = [r for r in first_m if r["set"] == s] if kind == METABOLITE else rows[:1]
                f_ref = f_zero if kind == METABOLITE else rows[0]["freq_hz"]
                ph_ref = float(np.degrees(np.angle(np.mean([np.exp(1j * np.radians(r["phase_deg"])) for r in first]))))
                for r in rows:
                    r["freq_hz"] -= f_ref
                    r["phase_deg"] = (r["phase_deg"] - ph_ref + 180.0) % 360.0 - 180.0
    scan = ScanInfo(
        scan_id=scan_id_for(f"{p.scan_label}-{p.seed}"), f0_hz=p.f0_hz, dwell_s=p.dwell_s, n_points=n,
        n_coils=c, planned_averages=max(p.averages, 1), te_ms=p.te_ms, tr_ms=p.tr_s * 1000.0, sequence=p.sequence,
        n_sets=p.n_sets, source="simulated")
    # the SNR definition applied to the noise-free average (residual water tails under NAA included)
    factor = _phased_naa_height(clean_sum / max(n_clean, 1), p) / height if n_clean else 1.0
    truth = {
        "params": {k: v for k, v in asdict(p).items() if k != "events"},
        "snr_running_truth_factor": factor,
        "events": [asdict(e) for e in p.events],
        "naa_snr_per_transient": p.naa_snr,
        "water_fwhm_hz": p.water_lw_hz,
        "snr_definition": "NAA max Re S 1.8-2.2 ppm / SD Re S noise, optimal coil combination",
        "transients": truth_rows,
    }
    return SimulatedScan(scan, transients, truth)
