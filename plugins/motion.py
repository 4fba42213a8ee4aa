"""Motion / corruption: robust z-scores of six features against the accepted transients of the same edit set.

Features of a metabolite transient (all from the engine's registration and spectra):
- ``freq_jump_hz``: freq_hz - causal trend prediction (Hz), judged in units of its own SD (``z_freq_jump``:
  see ``_jump_z``) instead of a robust z once ``min_history`` are scored.             flag ``freq_jump``
- ``phase_dev_deg``: phase_deg - median phase of the baseline, wrapped to +-180.    flag ``phase_jump``
- ``amplitude_rel``: matched-filter amplitude |c(d=0)| (1 = reference mean); drops for signal loss and for
  line broadening alike, so it does not depend on the (noisy) damping fit.       flag ``amplitude``
- ``damping_hz``: extra Lorentzian broadening vs the reference (Hz).                flag ``linewidth``
- ``lipid_power``: mean |S - T|^2 in 0.9..1.8 ppm / (2 noise_sd^2) x n / (n - 2), n the window's points, T the
  least-squares fit of the residual water's far tail there, T = a / d + b / d^2 (a, b complex, d the offset
  from 4.65 ppm in Hz): a line's spectrum far from its centre is that series whatever its shape, and a
  residual water line that wanders in amplitude and phase from transient to transient would otherwise wander
  the band's power with it (3x the spread at 15x NAA, and false lipid flags). Lipid lines (25-30 Hz wide,
  inside the window) keep most of their power. 1 = noise only.                      flag ``lipid``
- ``log_residual_norm``: log of ``residual_norm``, the least-squares misfit of the registration (band-limited,
  ramped signals) over the noise energy expected there (1 = the transient matches the reference up to noise).
  An energy ratio is right-skewed: on the log scale its robust z is not (the same flags found, false flags
  at MEGA 10x water 1.04 -> 0.52 %, at NAA SNR 4 2 -> 1 of 720).                   flag ``residual``
Robust z = (x - median) / (1.4826 MAD) over the last ``history`` scored transients of the set (flagged
ones included, so the baseline can follow a real change instead of locking every later transient out). A flag needs
|z| > ``z_limit`` (one-sided where only one direction is harmful) *and* an effect of at least the ``min_*``
size. Before ``min_history`` accepted transients only absolute limits apply (``early_*``). The held first
transients that seeded the reference are not scored (their fit is biased towards themselves). Nor is any
transient while the single-shot SNR (the strongest line of the registration band in the reference mean over
this transient's noise SD) is below ``min_single_shot_snr``: there one transient's registration follows its
noise, and its "jumps" are not the patient's (``unmeasured["flags"]`` says so).
At scan end a non-causal pass (FSL-MRS/FID-A style) z-scores every transient against the whole scan with
``noncausal_z_limit``; its result is reported beside the causal one (``noncausal_flagged_indices``).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from qc_daemon import kernels
from qc_daemon.config import toml_section
from qc_daemon.model import METABOLITE
from qc_daemon.plugin_api import (
    CheckResult,
    ConfigSpec,
    Declaration,
    Display,
    Flag,
    Limit,
    Metric,
    ScanContext,
    SummaryField,
    SummaryLine,
    SummaryPart,
    TransientContext,
)
from qc_daemon.tracking import robust_z_scale

FEATURES = ("freq_jump_hz", "phase_deg", "amplitude_rel", "damping_hz", "lipid_power", "log_residual_norm")
#: smallest robust scale per feature, so a baseline of near-identical values cannot make z explode
MIN_SCALE = {"freq_jump_hz": 0.05, "phase_deg": 0.5, "amplitude_rel": 0.01, "damping_hz": 0.1,
             "lipid_power": 0.01, "log_residual_norm": 0.01}


def wrap_deg(x):
    """Wrap degrees to [-180, 180)."""
    return (np.asarray(x) + 180.0) % 360.0 - 180.0


PHASE_ROW = FEATURES.index("phase_deg")

_Z = "robust z against the set's recent scored transients (median / 1.4826 MAD)"


WATER_PPM = 4.65
MIN_TAIL_DISTANCE_PPM = 1.0  # the lipid window's distance from water for the tail series to hold


def _history_rule(section: dict) -> str | None:
    if section["history"] < section["min_history"]:
        return "history must be >= min_history"
    lo, hi = section["lipid_window_ppm"]
    if not lo < hi <= WATER_PPM - MIN_TAIL_DISTANCE_PPM:
        return f"lipid_window_ppm must be [lo, hi] with lo < hi <= {WATER_PPM - MIN_TAIL_DISTANCE_PPM:g} ppm"
    return None


def water_tail_basis(axis, i0: int, i1: int) -> np.ndarray:
    """Orthonormal columns spanning {1/d, 1/d^2} over bins [i0, i1) of ``axis`` (d: Hz from 4.65 ppm), C order."""
    d = (np.arange(i0, i1) - axis.n // 2) * axis.hz_per_point - (WATER_PPM - axis.centre_ppm) * axis.f0_mhz
    basis = np.stack([1.0 / d, 1.0 / d ** 2], axis=1).astype(np.complex128)
    return np.ascontiguousarray(np.linalg.qr(basis)[0])


DECLARATION = Declaration(
    metrics=(Metric("freq_jump_hz", "Hz", "freq_hz - the causal trend's prediction"),
             Metric("z_freq_jump", "1", "the jump in units of its own SD, over their recent robust SD"),
             Metric("lipid_power", "1", "mean |S - water tail fit|^2 in the lipid window / (2 noise SD^2) "
                    "x n / (n - 2) (1 = noise only)"),
             Metric("residual_norm", "1", "registration misfit / expected noise energy (1 = matches)"),
             Metric("single_shot_snr", "1", "strongest line of the registration band in the reference / noise SD "
                    "(reported when too low to judge single averages)"),
             Metric("z_phase", "1", f"phase deviation: {_Z}"), Metric("z_amplitude", "1", f"amplitude: {_Z}"),
             Metric("z_linewidth", "1", f"damping: {_Z}"), Metric("z_lipid", "1", f"lipid power: {_Z}"),
             Metric("z_residual", "1", f"log residual_norm: {_Z}")),
    summary=(SummaryField("noncausal_flagged_indices", "", "transients the end-of-scan pass over the whole scan "
                          "flags (noncausal_z_limit); null mid-scan"),),
    flags=(Flag("freq_jump", "frequency off the trend by > z_limit of its own SD and >= min_freq_jump_hz",
                frequency_outlier=True),
           Flag("phase_jump", "phase off the baseline median by > z_limit and >= min_phase_jump_deg"),
           Flag("amplitude", "matched amplitude changed by > z_limit and >= min_amplitude_change"),
           Flag("linewidth", "extra damping above z_limit and >= min_broadening_hz"),
           Flag("lipid", "lipid power above z_limit and >= min_lipid_ratio x its median"),
           Flag("residual", "registration misfit above z_limit and >= min_residual_ratio x its median"),
           Flag("unmeasurable", "a feature could not be computed (non-finite)")),
    config=ConfigSpec(toml_section("plugins", "motion.toml"), integers=frozenset({"min_history", "history"}),
                      ranges={"min_phase_jump_deg": (0.0, 180.0, True), "early_max_phase_deg": (0.0, 180.0, False),
                              "min_amplitude_change": (0.0, 1.0, True), "early_min_amplitude": (0.0, 1.0, True)},
                      rule=_history_rule),
    display=Display(summary_lines=(SummaryLine("non-causal pass flags: {noncausal_flagged_indices}", 40),)),
)
JUMP_SCALE_WINDOW = 32  # scored transients over which the jump test checks the SDs it is given


class Baseline:
    """The last ``capacity`` values of each feature (a ring buffer per row), and their robust statistics."""

    def __init__(self, capacity: int):
        self.buf = np.zeros((len(FEATURES), capacity))
        self.counts = np.zeros(len(FEATURES), dtype=np.int64)
        self.pos = np.zeros(len(FEATURES), dtype=np.int64)

    def add(self, row: int, value: float) -> None:
        cap = self.buf.shape[1]
        self.buf[row, self.pos[row]] = value
        self.pos[row] = (self.pos[row] + 1) % cap
        self.counts[row] = min(self.counts[row] + 1, cap)

    def add_all(self, feat: dict) -> None:
        for row, key in enumerate(FEATURES):
            self.add(row, feat[key])

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(median, robust scale) per feature: 1.4826 MAD, floored at MIN_SCALE (relative for power ratios)."""
        med, mad = kernels.robust_rows(self.buf, self.counts, PHASE_ROW)
        return med, scale_floor(med, mad)


_FLOOR = np.array([MIN_SCALE[k] for k in FEATURES])
_RELATIVE = np.array([k == "lipid_power" for k in FEATURES])  # floors relative to |median|


def scale_floor(med: np.ndarray, mad: np.ndarray) -> np.ndarray:
    floor = np.where(_RELATIVE, _FLOOR * np.maximum(np.abs(med), 1.0), _FLOOR)
    return np.maximum(np.where(np.isnan(mad), 0.0, mad), floor)


def evaluate(feat: dict, med: np.ndarray, scale: np.ndarray, cfg: dict, zl: float,
             jump_z: float | None = None) -> tuple[list[str], dict]:
    """Flags and z-scores for one transient's features against baseline medians and robust scales.
    ``jump_z``: the frequency jump in units of its own SD (MotionCheck._jump_z); when given it
    replaces the robust z of the jump, whose effect is then its deviation from the prediction itself."""
    x = [feat[k] for k in FEATURES]
    dev = [x[i] - med[i] for i in range(len(FEATURES))]
    dev[PHASE_ROW] = float(wrap_deg(dev[PHASE_ROW]))
    z = [dev[i] / scale[i] for i in range(len(FEATURES))]
    jump, phase, amp, damp, lipid, resid = range(6)
    if jump_z is not None and math.isfinite(jump_z):
        z[jump], dev[jump] = jump_z, x[jump]
    flags: list[str] = []
    if abs(z[jump]) > zl and abs(dev[jump]) >= cfg["min_freq_jump_hz"]:
        flags.append("freq_jump")
    if abs(z[phase]) > zl and abs(dev[phase]) >= cfg["min_phase_jump_deg"]:
        flags.append("phase_jump")
    if abs(z[amp]) > zl and abs(x[amp] / med[amp] - 1.0) >= cfg["min_amplitude_change"]:
        flags.append("amplitude")
    if z[damp] > zl and dev[damp] >= cfg["min_broadening_hz"]:
        flags.append("linewidth")
    if z[lipid] > zl and x[lipid] >= cfg["min_lipid_ratio"] * med[lipid]:
        flags.append("lipid")
    if z[resid] > zl and x[resid] - med[resid] >= math.log(cfg["min_residual_ratio"]):
        flags.append("residual")
    names = ("z_freq_jump", "z_phase", "z_amplitude", "z_linewidth", "z_lipid", "z_residual")
    return flags, dict(zip(names, z))


class MotionCheck:
    name = "motion"
    declaration = DECLARATION

    def start(self, scan, config) -> None:
        self.cfg = config["motion"]
        self.jitter2 = float(config["tracking"]["filter_jitter_hz"]) ** 2
        self.recent_z: dict[int, tuple[deque, list]] = {}  # per set: raw jump z, [their robust SD, count]
        self.band = config["registration"]["band_ppm"]
        self.hist: dict[int, Baseline] = {}
        # (index, set, features, freq_hz of the registration) for the non-causal pass
        self.all_feats: list[tuple[int, int, dict, float]] = []
        self._windows = None
        self._tail: np.ndarray | None = None

    def limits(self, scan, config) -> list[Limit]:
        return []

    def _features(self, ctx: TransientContext) -> dict:
        if self._windows is None:
            lip = ctx.axis.clipped_window(*self.cfg["lipid_window_ppm"])
            self._windows = (lip, ctx.axis.clipped_window(*self.band))
            self._tail = water_tail_basis(ctx.axis, *lip) if lip else None
        lip_w = self._windows[0]
        var = 2.0 * ctx.noise_sd ** 2 if ctx.noise_sd > 0 else math.nan
        lipid = math.nan
        if lip_w:
            n = lip_w[1] - lip_w[0]
            lipid = kernels.band_power_projected(ctx.spec, lip_w[0], lip_w[1], self._tail) / var * n / (n - 2)
        resid = ctx.reg.residual_norm
        return {"freq_jump_hz": ctx.reg.freq_hz - ctx.freq_pred_hz, "phase_deg": ctx.reg.phase_deg,
                "amplitude_rel": ctx.reg.matched_amplitude, "damping_hz": ctx.reg.damping_hz,
                "lipid_power": lipid, "log_residual_norm": math.log(resid) if resid > 0 else math.nan}

    def _jump_z(self, ctx: TransientContext) -> float | None:
        """The single shot against the trend in units of its own SD (docs/results.md "Flags"): raw z =
        (freq_hz - freq_pred_hz) / sqrt(freq_sd^2 + jitter^2 + var(freq_pred_hz)), over the robust SD of the
        last ``JUMP_SCALE_WINDOW`` raw z of this set (median |z| / 0.6745, floored at 1; 1 before 5 of them),
        so SDs that claim too much cannot make jumps of ordinary transients. None without an SD."""
        sd, var = ctx.reg.freq_sd_hz, ctx.freq_pred_var_hz2
        if not (math.isfinite(sd) and math.isfinite(var)):
            return None
        raw = (ctx.reg.freq_hz - ctx.freq_pred_hz) / math.sqrt(sd * sd + self.jitter2 + var)
        recent, state = self.recent_z.setdefault(ctx.transient.set, (deque(maxlen=JUMP_SCALE_WINDOW), [1.0, 0]))
        recent.append(raw)
        state[1] += 1
        if len(recent) >= 5 and (len(recent) <= 8 or state[1] % 4 == 0):  # (a median per transient costs)
            state[0] = robust_z_scale(recent)
        return raw / state[0]

    def _single_shot_snr(self, ctx: TransientContext) -> float:
        """Single-shot SNR of the strongest line in the registration band, from the reference mean (whose
        signal is one transient's, its noise sqrt(n) lower) over this transient's noise SD."""
        band = self._windows[1]
        if ctx.ref_spec is None or band is None or not ctx.noise_sd > 0:
            return math.nan
        return float(kernels.max_real(ctx.ref_spec, band[0], band[1])[0] / ctx.noise_sd)

    def measure(self, ctx: TransientContext) -> CheckResult:
        if ctx.transient.kind != METABOLITE or ctx.reg.is_reference:
            return CheckResult()
        feat = self._features(ctx)
        snr1 = self._single_shot_snr(ctx)
        measurable = all(math.isfinite(v) for v in feat.values()) and math.isfinite(snr1)
        if not ctx.calibration and measurable and snr1 < self.cfg["min_single_shot_snr"]:
            # below it the registration of one transient follows its noise: its jumps are not the patient's
            return CheckResult(metrics={"single_shot_snr": snr1}, unmeasured={"flags": (
                f"single-shot SNR {snr1:.1f} (strongest line in the registration band, from the reference): "
                f"below {self.cfg['min_single_shot_snr']:g}, too low to judge single averages")})
        if ctx.calibration:  # self-biased fit: only the spectral lipid power seeds its baseline
            if math.isfinite(feat["lipid_power"]):
                self._hist(ctx.transient.set).add(FEATURES.index("lipid_power"), feat["lipid_power"])
            return CheckResult(metrics={"lipid_power": feat["lipid_power"]})
        self.all_feats.append((ctx.transient.index, ctx.transient.set, feat, ctx.reg.freq_hz))
        base = self.hist.get(ctx.transient.set)
        cfg = self.cfg
        jump_z = self._jump_z(ctx)  # (its scale learns from the early transients too)
        metrics = {"freq_jump_hz": feat["freq_jump_hz"], "lipid_power": feat["lipid_power"],
                   "residual_norm": ctx.reg.residual_norm, "z_freq_jump": jump_z}
        if not all(math.isfinite(v) for v in feat.values()):
            return CheckResult(metrics=metrics, flags=["unmeasurable"], keep=feat)
        if base is None or base.counts[FEATURES.index("amplitude_rel")] < cfg["min_history"]:
            flags = []
            if abs(feat["freq_jump_hz"]) > cfg["early_max_freq_jump_hz"]:
                flags.append("freq_jump")
            if abs(feat["phase_deg"]) > cfg["early_max_phase_deg"]:
                flags.append("phase_jump")
            if feat["amplitude_rel"] < cfg["early_min_amplitude"]:
                flags.append("amplitude")
            if feat["damping_hz"] > cfg["early_max_broadening_hz"]:
                flags.append("linewidth")
            lip = FEATURES.index("lipid_power")
            if base is not None and base.counts[lip] >= 4:
                med, scale = base.stats()
                if (feat["lipid_power"] - med[lip]) / scale[lip] > cfg["z_limit"] and \
                        feat["lipid_power"] >= cfg["min_lipid_ratio"] * med[lip]:
                    flags.append("lipid")
            return CheckResult(metrics=metrics, flags=flags, keep=feat)
        flags, z = evaluate(feat, *base.stats(), cfg, cfg["z_limit"], jump_z)
        metrics.update(z)
        return CheckResult(metrics=metrics, flags=flags, keep=feat)

    def update(self, ctx: TransientContext, accepted: bool, measured: CheckResult) -> CheckResult:
        # every scored transient enters the baseline, flagged ones too: median/MAD tolerate the outliers, and
        # excluding them would lock the check out after a real change (a baseline that can never follow it)
        if measured.keep is not None:  # scored: not the reference, calibration or too weak to judge
            self._hist(ctx.transient.set).add_all(measured.keep)
        return CheckResult()

    def _hist(self, s: int) -> Baseline:
        if s not in self.hist:
            self.hist[s] = Baseline(int(self.cfg["history"]))
        return self.hist[s]

    def finish(self, ctx: ScanContext) -> SummaryPart:
        """Non-causal pass: every transient against the whole scan of its set (median/MAD of all). Only at the
        end of the scan (``ctx.final``): it is whole-scan work, not a live figure."""
        if not ctx.final:
            return SummaryPart(unmeasured={"noncausal_flagged_indices": "the non-causal pass runs at scan end"})
        flagged: list[int] = []
        reasons: dict[str, list[str]] = {}
        freq_of = {i: f for i, _, _, f in self.all_feats}
        for s in sorted({s for _, s, _, _ in self.all_feats}):  # (too-weak transients never enter all_feats)
            rows = [(i, f) for i, ss, f, _ in self.all_feats if ss == s and all(math.isfinite(v) for v in f.values())]
            if len(rows) < self.cfg["min_history"]:
                continue
            # non-causal jump: deviation from a centred running median (9 transients) of the frequency
            fr = np.array([freq_of[i] for i, _ in rows])
            smooth = np.array([np.median(fr[max(0, j - 4):j + 5]) for j in range(len(fr))])
            feats = [dict(f, freq_jump_hz=float(fr[j] - smooth[j])) for j, (_, f) in enumerate(rows)]
            whole = np.array([[f[k] for f in feats] for k in FEATURES])
            med, mad = kernels.robust_rows(whole, np.full(len(FEATURES), whole.shape[1], dtype=np.int64), PHASE_ROW)
            scale = scale_floor(med, mad)
            for (i, _), feat in zip(rows, feats):
                fl, _ = evaluate(feat, med, scale, self.cfg, self.cfg["noncausal_z_limit"])
                if fl:
                    flagged.append(i)
                    reasons[str(i)] = fl
        return SummaryPart(fields={"noncausal_flagged_indices": sorted(flagged)},
                           details={"noncausal_reasons": reasons})
