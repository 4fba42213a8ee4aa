"""Frequency tracking over a scan: a causal Kalman filter and, at scan end, its Rauch-Tung-Striebel smoother.

Model (docs/results.md "Frequency and phase"). The B0 frequency f(t) (Hz) drifts with a slope r(t) (Hz/s) that
itself changes slowly (white-noise acceleration, spectral density ``accel`` in Hz^2/s^3):

    x = (f, r),  x(t + dt) = F x(t) + w,  F = [[1, dt], [0, 1]],  Q = accel [[dt^3/3, dt^2/2], [dt^2/2, dt]]

A transient's true frequency is f + j, with j its own physiological jitter (SD ``jitter_hz``, independent per
transient), and the single shot measures it with its own SD s (``freq_sd_hz``): z = f + j + n. So
- the prediction for the next transient is F x, with variance P_ff + jitter^2 (``freq_pred_sd_hz``; the
  registration's search is still centred on the least-squares trend, docs/results.md says why);
- the innovation nu = z - F x has variance S = P_ff + jitter^2 + s^2: a frequency jump is judged on
  nu / sqrt(S), the single shot against the trend in units of its own SD;
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

import math
from dataclasses import dataclass

import numpy as np


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

    @property
    def sd_hz(self) -> float:
        """SD of this transient's true frequency around the prediction (trend + its jitter)."""
        return math.sqrt(self.state_var + self.jitter_var)

    def innovation_z(self, z_hz: float, sd_hz: float) -> float:
        """(z - prediction) / sqrt(S): the single shot against the trend in units of its own SD."""
        s = self.state_var + self.jitter_var + sd_hz * sd_hz
        return (z_hz - self.freq_hz) / math.sqrt(s) if s > 0 else math.nan

    def causal(self, z_hz: float, sd_hz: float) -> tuple[float, float]:
        """(causal best estimate of this transient's frequency, its SD), both Hz."""
        prior = self.state_var + self.jitter_var
        s = prior + sd_hz * sd_hz
        if not (math.isfinite(s) and s > 0) or not math.isfinite(sd_hz):
            return self.freq_hz, math.sqrt(prior)
        gain = prior / s
        return self.freq_hz + gain * (z_hz - self.freq_hz), math.sqrt(prior * sd_hz * sd_hz / s)


def _transition(dt: float, accel: float) -> tuple[np.ndarray, np.ndarray]:
    f = np.array([[1.0, dt], [0.0, 1.0]])
    q = accel * np.array([[dt ** 3 / 3.0, dt ** 2 / 2.0], [dt ** 2 / 2.0, dt]])
    return f, q


class FrequencyFilter:
    """Causal two-state Kalman filter of one frequency series (see module docstring)."""

    def __init__(self, params: FilterParams):
        self.p = params
        self.x: np.ndarray | None = None
        self.cov: np.ndarray | None = None
        self.t = 0.0
        self.jumps: list[tuple[float, float, float]] = []  # consecutive jump-flagged (t, z, sd)

    def predict(self, t: float) -> Prediction | None:
        """Prediction at time t (s); None before the first accepted transient."""
        if self.x is None:
            return None
        f, q = _transition(max(t - self.t, 0.0), self.p.accel_hz2_per_s3)
        x = f @ self.x
        cov = f @ self.cov @ f.T + q
        return Prediction(float(x[0]), float(cov[0, 0]), self.p.jitter_hz ** 2)

    def observe(self, t: float, z_hz: float, sd_hz: float, usable: bool) -> None:
        """One transient's single shot (Hz) and its SD (Hz); ``usable`` = accepted by the checks. Updates the
        filter when usable and inside the gate; otherwise it may count towards re-acquisition."""
        pred = self.predict(t)
        if usable and (pred is None or abs(pred.innovation_z(z_hz, sd_hz)) <= self.p.gate_z):
            self._update(t, z_hz, sd_hz)
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
        f, q = _transition(max(t - self.t, 0.0), self.p.accel_hz2_per_s3)
        x = f @ self.x
        cov = f @ self.cov @ f.T + q
        s = cov[0, 0] + r
        gain = cov[:, 0] / s
        self.x = x + gain * (z_hz - x[0])
        self.cov = cov - np.outer(gain, cov[0, :])
        self.t = t

    def _start(self, t: float, z_hz: float, r: float) -> None:
        self.x = np.array([z_hz, 0.0])
        self.cov = np.diag([r, self.p.slope_prior_hz_per_s ** 2])
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
