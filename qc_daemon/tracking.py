"""Frequency tracking over a scan: a causal Kalman filter and, at scan end, its Rauch-Tung-Striebel smoother.

Model (docs/results.md "Frequency and phase"). The B0 frequency f(t) (Hz) drifts with a slope r(t) (Hz/s) that
itself changes slowly (white-noise acceleration, spectral density ``accel`` in Hz^2/s^3):

    x = (f, r),  x(t + dt) = F x(t) + w,  F = [[1, dt], [0, 1]],  Q = accel [[dt^3/3, dt^2/2], [dt^2/2, dt]]

A transient's true frequency is f + j, with j its own physiological jitter (SD ``jitter_hz``, independent per
transient), and the single shot measures it with its own SD s (``freq_sd_hz``): z = f + j + n. So
- the prediction for the next transient is F x, with variance P_ff + jitter^2 (the registration's search
  and the motion check's jump test use the least-squares trend instead, docs/results.md says why);
- the innovation nu = z - F x has variance S = P_ff + jitter^2 + s^2; nu / sqrt(S) over the robust SD
  (median |.| / 0.6745, floored at 1) of the last 32 such values is the filter's own check of the SDs it is
  given: an overstated precision (a water line not yet found off B0, a drift faster than the model) scales
  s in the update and the causal estimate by that factor;
- the causal best estimate of this transient's frequency (``freq_causal_hz``) is
  F x + (P_ff + jitter^2) / S nu, variance (P_ff + jitter^2) s^2 / S;
- only accepted transients within the gate |nu| / sqrt(S) <= ``gate_z`` update the filter (a flagged one says
  nothing about the trend, and a single shot far outside it is a jump or a lost fit, not drift); after
  ``reacquire_after`` consecutive ones outside that agree with each other (each within ``gate_z`` of their
  median, in their own SDs) the filter restarts from them (the patient moved and stayed).
At scan end the smoother runs backwards over the same steps; the smoothed frequency of a transient is the
smoothed f plus the share jitter^2 / (jitter^2 + s^2) of its own deviation (``freq_smoothed_hz``: the
correction an analyst applies before averaging).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from . import kernels

SCALE_WINDOW = 32  # innovations over which the filter checks its SD claims
TREND_CAPACITY = 256  # points a trend keeps (its window rarely holds more: 60 s at TR >= 0.25 s)
TREND_MIN_POINTS, TREND_MIN_SPAN_S = 4, 5.0  # a line needs 4 points spanning 5 s, else the median


class Trend:
    """The causal trend rule (docs/results.md "Frequency and phase"), one for the registration's seed and the
    frequency check's reported trend: over the points of the last ``window_s`` seconds, the least-squares
    line when >= 4 points span >= 5 s, else their median. ``at(t)`` -> (value Hz, its variance Hz^2, slope
    Hz/s): the variance s^2 (1/n + (t - mean t)^2 / Sxx) for the line, (pi / 2) (1.4826 MAD)^2 / n for the
    median (NaN from fewer than 3 points); the slope NaN for the median. No points: (0, NaN, NaN)."""

    def __init__(self, window_s: float, capacity: int = TREND_CAPACITY):
        self.window_s = float(window_s)
        self.capacity = capacity
        self.times: list[float] = []  # the last ``capacity`` points, in the order they came
        self.freqs: list[float] = []
        self._sorted = True  # times never went backwards: the window is found by bisection

    def add(self, t: float, f: float) -> None:
        if self.times and t < self.times[-1]:
            self._sorted = False
        self.times.append(t)
        self.freqs.append(f)
        if len(self.times) > self.capacity:
            del self.times[0], self.freqs[0]

    def __len__(self) -> int:
        return len(self.freqs)

    def at(self, t: float) -> tuple[float, float, float]:
        if not self.freqs:
            return 0.0, math.nan, math.nan
        if self._sorted:  # the points at or after t - window, in order (the same set the mask below selects)
            i = bisect.bisect_left(self.times, t - self.window_s)
            n = len(self.times) - i
            ts, fs = np.fromiter(self.times[i:], float, n), np.fromiter(self.freqs[i:], float, n)
        else:
            n = len(self.times)
            ts, fs = np.fromiter(self.times, float, n), np.fromiter(self.freqs, float, n)
            sel = ts >= t - self.window_s
            ts, fs = ts[sel], fs[sel]
        if ts.size == 0:
            return float(self.freqs[-1]), math.nan, math.nan
        if ts.size >= TREND_MIN_POINTS and ts[-1] - ts[0] >= TREND_MIN_SPAN_S:
            value, var, slope = kernels.line_prediction(ts, fs, t)
            if math.isfinite(value):
                return float(value), float(var), float(slope)
        med = float(np.median(fs))
        if fs.size < 3:
            return med, math.nan, math.nan
        return med, math.pi / 2.0 * (1.4826 * float(np.median(np.abs(fs - med)))) ** 2 / fs.size, math.nan


@dataclass(frozen=True)
class FilterParams:
    jitter_hz: float = 0.15
    accel_hz2_per_s3: float = 1e-4
    slope_prior_hz_per_s: float = 0.5  # SD of the slope before any data (30 Hz/min)
    reacquire_after: int = 3
    gate_z: float = 4.0

    @classmethod
    def from_config(cls, cfg: dict) -> FilterParams:
        return cls(float(cfg["filter_jitter_hz"]), float(cfg["filter_accel_hz2_per_s3"]),
                   float(cfg["filter_slope_prior_hz_per_s"]), int(cfg["filter_reacquire_after"]),
                   float(cfg["filter_gate_z"]))


@dataclass(frozen=True)
class Prediction:
    """The filter's prediction for a transient at its time: frequency (Hz) and variances (Hz^2)."""

    freq_hz: float
    state_var: float  # P_ff: uncertainty of the trend itself
    jitter_var: float
    scale: float = 1.0  # the recent innovations' robust SD in units of their claimed SD (>= 1)

    def raw_z(self, z_hz: float, sd_hz: float) -> float:
        """(z - prediction) / sqrt(S) with the SDs as claimed."""
        s = self.state_var + self.jitter_var + sd_hz * sd_hz
        return (z_hz - self.freq_hz) / math.sqrt(s) if s > 0 else math.nan

    def innovation_z(self, z_hz: float, sd_hz: float) -> float:
        """The single shot against the trend in units of its own SD: raw z over the recent innovations'
        robust scale (so SDs that claim too much, e.g. an untested water line, cannot raise false jumps)."""
        return self.raw_z(z_hz, sd_hz) / self.scale

    def causal(self, z_hz: float, sd_hz: float) -> tuple[float, float]:
        """(causal best estimate of this transient's frequency, its SD), both Hz."""
        prior = self.state_var + self.jitter_var
        sd_hz = sd_hz * self.scale
        s = prior + sd_hz * sd_hz
        if not (math.isfinite(s) and s > 0) or not math.isfinite(sd_hz):
            return self.freq_hz, math.sqrt(prior)
        gain = prior / s
        return self.freq_hz + gain * (z_hz - self.freq_hz), math.sqrt(prior * sd_hz * sd_hz / s)


def robust_z_scale(z) -> float:
    """Robust SD of z-scores that should be N(0, 1): median |z| / 0.6745, floored at 1; 1 from fewer than 5.
    (A sort in Python: for the 32 values it sees, several times faster than numpy's median.)"""
    n = len(z)
    if n < 5:
        return 1.0
    s = sorted(abs(v) for v in z)
    h = n // 2
    med = s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])
    return max(1.0, med / 0.6745)


def _transition(dt: float, accel: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.array([[1.0, dt], [0.0, 1.0]])
    q = accel * np.array([[dt ** 3 / 3.0, dt ** 2 / 2.0], [dt ** 2 / 2.0, dt]])
    return f, q


class FrequencyFilter:
    """Causal two-state Kalman filter of one frequency series (see module docstring). The 2x2 algebra is
    written out in floats: it runs once per transient, where small numpy calls would cost more than it."""

    def __init__(self, params: FilterParams):
        self.p = params
        self.x: tuple[float, float] | None = None  # (f Hz, r Hz/s)
        self.cov = (0.0, 0.0, 0.0)  # (P_ff, P_fr, P_rr)
        self.t = 0.0
        self.jumps: list[tuple[float, float, float]] = []  # consecutive out-of-gate (t, z, sd)
        self.recent_z: deque[float] = deque(maxlen=SCALE_WINDOW)  # raw innovation z of usable transients
        self._scale: float | None = None
        self._n_z = 0

    def _propagate(self, t: float) -> tuple[float, float, float, float, float]:
        dt = max(t - self.t, 0.0)
        q = self.p.accel_hz2_per_s3
        f, r = self.x
        pff, pfr, prr = self.cov
        return (f + r * dt, r, pff + 2.0 * dt * pfr + dt * dt * prr + q * dt ** 3 / 3.0,
                pfr + dt * prr + q * dt * dt / 2.0, prr + q * dt)

    def predict(self, t: float) -> Prediction | None:
        """Prediction at time t (s); None before the first accepted transient."""
        if self.x is None:
            return None
        f, _, pff, _, _ = self._propagate(t)
        return Prediction(f, pff, self.p.jitter_hz ** 2, self.scale)

    @property
    def scale(self) -> float:
        """Robust SD of the recent raw innovation z (median |z| / 0.6745), floored at 1; 1 before 5 of them."""
        if self._scale is None:
            self._scale = robust_z_scale(self.recent_z)
        return self._scale

    def observe(self, t: float, z_hz: float, sd_hz: float, usable: bool, pred: Prediction | None = None) -> None:
        """One transient's single shot (Hz) and its SD (Hz); ``usable`` = accepted by the checks. Updates the
        filter when usable and inside the gate; otherwise it may count towards re-acquisition. ``pred``: this
        filter's prediction for t, if already made."""
        if pred is None:
            pred = self.predict(t)
        if usable and pred is not None and math.isfinite(sd_hz):
            self.recent_z.append(pred.raw_z(z_hz, sd_hz))
            self._n_z += 1
            if len(self.recent_z) <= 8 or self._n_z % 4 == 0:  # a median per transient costs more than this
                self._scale = None
        if usable and (pred is None or abs(pred.innovation_z(z_hz, sd_hz)) <= self.p.gate_z):
            self._update(t, z_hz, sd_hz * (pred.scale if pred is not None else 1.0))
            return
        if not math.isfinite(sd_hz):
            return
        self.jumps.append((t, z_hz, sd_hz))
        del self.jumps[:-self.p.reacquire_after]
        if len(self.jumps) == self.p.reacquire_after:
            level = float(np.median([z for _, z, _ in self.jumps]))
            jit2 = self.p.jitter_hz ** 2
            if all(abs(z - level) <= self.p.gate_z * math.sqrt(sd * sd + jit2) for _, z, sd in self.jumps):
                t_last, _, sd = self.jumps[-1]
                self.jumps.clear()
                self._start(t_last, level, sd * sd + jit2)

    def _update(self, t: float, z_hz: float, sd_hz: float) -> None:
        self.jumps.clear()
        r = sd_hz * sd_hz + self.p.jitter_hz ** 2
        if not math.isfinite(r):
            return
        if self.x is None:
            self._start(t, z_hz, r)
            return
        f, rate, pff, pfr, prr = self._propagate(t)
        s = pff + r
        g_f, g_r = pff / s, pfr / s
        nu = z_hz - f
        self.x = (f + g_f * nu, rate + g_r * nu)
        self.cov = (pff - g_f * pff, pfr - g_f * pfr, prr - g_r * pfr)
        self.t = t

    def _start(self, t: float, z_hz: float, r: float) -> None:
        self.x = (z_hz, 0.0)
        self.cov = (r, 0.0, self.p.slope_prior_hz_per_s ** 2)
        self.t = t


def smooth(times: np.ndarray, z: np.ndarray, sd: np.ndarray, params: FilterParams) -> np.ndarray:
    """Non-causal smoothed frequency (Hz) of each transient of one series (accepted ones, time order):
    the filter forwards, Rauch-Tung-Striebel backwards, then each transient's own share of its jitter."""
    n = times.shape[0]
    if n == 0:
        return np.zeros(0)
    jit2 = params.jitter_hz ** 2
    r = sd ** 2 + jit2
    xs = np.zeros((n, 2))
    ps = np.zeros((n, 2, 2))
    xp = np.zeros((n, 2))
    pp = np.zeros((n, 2, 2))
    fs = np.zeros((n, 2, 2))
    x = np.array([z[0], 0.0])
    cov = np.diag([r[0], params.slope_prior_hz_per_s ** 2])
    xs[0], ps[0], xp[0], pp[0], fs[0] = x, cov, x, cov, np.eye(2)
    for k in range(1, n):
        f, q = _transition(max(times[k] - times[k - 1], 0.0), params.accel_hz2_per_s3)
        x_pred, p_pred = f @ x, f @ cov @ f.T + q
        s = p_pred[0, 0] + r[k]
        gain = p_pred[:, 0] / s
        x = x_pred + gain * (z[k] - x_pred[0])
        cov = p_pred - np.outer(gain, p_pred[0, :])
        xs[k], ps[k], xp[k], pp[k], fs[k] = x, cov, x_pred, p_pred, f
    for k in range(n - 2, -1, -1):
        c = ps[k] @ fs[k + 1].T @ np.linalg.inv(pp[k + 1])
        xs[k] = xs[k] + c @ (xs[k + 1] - xp[k + 1])
        ps[k] = ps[k] + c @ (ps[k + 1] - pp[k + 1]) @ c.T
    trend = xs[:, 0]
    return trend + jit2 / (jit2 + sd ** 2) * (z - trend)
