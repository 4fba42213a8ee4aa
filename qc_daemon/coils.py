"""Noise-whitened coil combination weights (computed once per scan; not a hot path).

Definition: with noise covariance Psi (coils x coils, from the FID tail where the signal has decayed) and its
Cholesky factor L (Psi = L L^H), whitened data are L^-1 x. The signal direction v is the dominant left
singular vector of the whitened early FID points (t < signal_window_s). The combined FID is
y = v^H L^-1 x, i.e. weights u = (v^H L^-1) applied as y = sum_c u_c x_c. Its noise has unit variance
(complex), so SNRs from different scans are on one scale. The global phase of u is set so that the
combined early signal is real and positive.
"""

from __future__ import annotations

import numpy as np


def noise_covariance(data: np.ndarray, tail_fraction: float) -> np.ndarray:
    """Coil noise covariance (coils x coils) from the last ``tail_fraction`` of the points of data
    (..., coils, points)."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    n = arr.shape[-1]
    tail = arr[..., int(n * (1.0 - tail_fraction)):]
    tail = tail - tail.mean(axis=-1, keepdims=True)
    x = np.concatenate(list(tail), axis=-1)  # coils x samples
    return (x @ x.conj().T) / max(x.shape[1] - 1, 1)


def combination_weights(data: np.ndarray, dwell_s: float, signal_window_s: float,
                        tail_fraction: float) -> np.ndarray:
    """Coil weights u (complex128, coils) from calibration data (transients x coils x points or coils x points)."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    n_coils = arr.shape[1]
    if n_coils == 1:
        ref = arr[:, 0, :].sum(axis=0)
        m = max(4, int(signal_window_s / dwell_s))
        ph = np.angle(ref[:m].sum())
        return np.array([np.exp(-1j * ph)], dtype=np.complex128)
    psi = noise_covariance(arr, tail_fraction)
    # regularise: tiny diagonal loading keeps Cholesky stable for a dead or duplicated channel
    load = 1e-6 * np.real(np.trace(psi)) / n_coils + np.finfo(float).tiny
    chol = np.linalg.cholesky(psi + load * np.eye(n_coils))
    inv_l = np.linalg.inv(chol)
    m = max(4, int(signal_window_s / dwell_s))
    early = arr.sum(axis=0)[:, :m]
    white = inv_l @ early
    u_svd, _, _ = np.linalg.svd(white, full_matrices=False)
    v = u_svd[:, 0]
    weights = v.conj() @ inv_l
    ph = np.angle((weights @ early).sum())
    return (weights * np.exp(-1j * ph)).astype(np.complex128)
