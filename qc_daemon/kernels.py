"""numba kernels: pure functions on arrays, no I/O, no Python objects.

Conventions shared by every kernel:
- ``fid``: complex time-domain signal, mrsqc's frame (ppm grows with frequency), sample k at t = k * dt.
- A spectrum is ``fftshift(fft(fid))``: unnormalised, index N//2 is the receiver frequency (0 Hz); one index
  is 1 / (N * dt) Hz. The noise SD of Re(spectrum) is sigma_t * sqrt(N) for white time-domain noise of SD
  sigma_t per real component.
- Frequencies in Hz, damping (extra Lorentzian broadening) in Hz FWHM, phases in radians inside kernels.

All kernels are compiled with ``cache=True`` and ``nogil=True`` (the daemon's I/O threads keep running);
:func:`warm_up` compiles (or loads) every signature the engine
uses, so the first real transient is as fast as the rest.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_TWO_PI = 2.0 * math.pi


@nb.njit(cache=True, nogil=True)
def correct_fid(fid, dt, freq_hz, phase_rad):
    """Undo a measured shift: fid * exp(-i (2 pi freq_hz t + phase_rad)). Returns a new complex128 array."""
    n = fid.shape[0]
    out = np.empty(n, dtype=np.complex128)
    step = complex(math.cos(-_TWO_PI * freq_hz * dt), math.sin(-_TWO_PI * freq_hz * dt))
    rot = complex(math.cos(-phase_rad), math.sin(-phase_rad))
    for k in range(n):
        out[k] = fid[k] * rot
        rot *= step
        if (k & 255) == 255:  # renormalise the phasor so rounding cannot accumulate
            rot /= abs(rot)
    return out


@nb.njit(cache=True, nogil=True)
def cross_product(fid, ref, m):
    """z[k] = fid[k] * conj(ref[k]) for the first m points: the integrand of spectral registration."""
    z = np.empty(m, dtype=np.complex128)
    for k in range(m):
        z[k] = fid[k] * ref[k].conjugate()
    return z


@nb.njit(cache=True, nogil=True)
def _projection(z, dt, freq_hz, damp_hz):
    """sum_k z[k] exp(-i 2 pi f t_k) exp(-pi d t_k): inner product of the transient with a shifted, damped
    reference (the numerator of the spectral-registration least-squares amplitude)."""
    step = complex(math.cos(-_TWO_PI * freq_hz * dt), math.sin(-_TWO_PI * freq_hz * dt))
    step *= math.exp(-math.pi * damp_hz * dt)
    rot = complex(1.0, 0.0)
    acc = complex(0.0, 0.0)
    for k in range(z.shape[0]):
        acc += z[k] * rot
        rot *= step
    return acc


@nb.njit(cache=True, nogil=True)
def _ref_energy(ref_abs2, dt, damp_hz, noise_var):
    """sum_k (|ref[k]|^2 - noise_var) exp(-2 pi d t_k): the *signal* energy of the damped reference.

    Subtracting the reference's expected noise energy per point (noise_var[k]) removes the bias that would
    otherwise favour large d (damping down-weights the noisy tail of a reference built from few transients).
    Floored at 5 % of the raw energy so a very noisy reference cannot make it vanish.
    """
    decay = math.exp(-2.0 * math.pi * damp_hz * dt)
    g = 1.0
    acc = 0.0
    raw = 0.0
    for k in range(ref_abs2.shape[0]):
        acc += (ref_abs2[k] - noise_var[k]) * g
        raw += ref_abs2[k] * g
        g *= decay
    return max(acc, 0.05 * raw)


@nb.njit(cache=True, nogil=True)
def _noise_bias(ref_abs2, trans_noise_var, dt, damp_hz):
    """Expected |P|^2 contributed by the transient's noise: sum_k v_k |ref_k|^2 exp(-2 pi d t_k)."""
    decay = math.exp(-2.0 * math.pi * damp_hz * dt)
    g = 1.0
    acc = 0.0
    for k in range(ref_abs2.shape[0]):
        acc += trans_noise_var[k] * ref_abs2[k] * g
        g *= decay
    return acc


@nb.njit(cache=True, nogil=True)
def _jd(z, ref_abs2, ref_noise_var, trans_noise_var, dt, f, d):
    """De-biased fit quality at damping d: (|P|^2 - noise bias) / reference signal energy."""
    p = _projection(z, dt, f, d)
    return (p.real * p.real + p.imag * p.imag - _noise_bias(ref_abs2, trans_noise_var, dt, d)) / \
        _ref_energy(ref_abs2, dt, d, ref_noise_var)


@nb.njit(cache=True, nogil=True)
def register(z, ref_abs2, ref_noise_var, trans_noise_var, dt, f_seed, half_width_hz, grid_step_hz, d_lo, d_hi):
    """Spectral registration of one transient against a band-limited reference (Near 2015, closed-form
    amplitude).

    Model: fid(t) = c * ref(t) * exp(i 2 pi f t) * exp(-pi d t) + noise, over the first m points
    (z = fid * conj(ref), ref_abs2 = |ref|^2, ref_noise_var[k] / trans_noise_var[k] = expected |noise|^2 of
    ref[k] / of the transient's point k; both noise terms are subtracted when fitting d, which would otherwise
    be biased). For fixed (f, d) the least-squares complex amplitude is
    c = P(f, d) / E(d) with P the projection and E the reference energy, and the fit quality is
    J(f, d) = |P|^2 / E. We search f on a grid f_seed +- half_width_hz, refine by successive parabolic steps,
    then fit d (extra Lorentzian broadening, Hz) on [d_lo, d_hi] the same way, and re-refine f
    (d_hi <= d_lo: d fixed at d_lo, no second refinement).

    Returns (f_hz, c_real, c_imag, d_hz, j_best, at_edge, c0_real, c0_imag); at_edge = 1.0 when the best grid
    frequency lies on the search boundary (the seed window did not contain the optimum); c0 is the amplitude
    with d = 0 (the matched-filter amplitude: it drops for signal loss and for broadening alike).
    """
    # --- frequency: grid then parabolic refinement (d = 0)
    n_grid = int(2.0 * half_width_hz / grid_step_hz + 0.5) + 1
    e0 = _ref_energy(ref_abs2, dt, 0.0, ref_noise_var)
    best_j = -1.0
    best_i = 0
    for i in range(n_grid):
        f = f_seed - half_width_hz + i * grid_step_hz
        p = _projection(z, dt, f, 0.0)
        j = (p.real * p.real + p.imag * p.imag) / e0
        if j > best_j:
            best_j = j
            best_i = i
    at_edge = 1.0 if (best_i == 0 or best_i == n_grid - 1) else 0.0
    f_best = f_seed - half_width_hz + best_i * grid_step_hz
    f_best = _refine_frequency(z, dt, f_best, grid_step_hz, 0.0, e0)
    c0 = _projection(z, dt, f_best, 0.0) / e0  # matched-filter amplitude without extra damping
    if d_hi <= d_lo:  # damping fixed (at d_lo = 0 for the water fit): frequency and amplitude are final
        e_d = _ref_energy(ref_abs2, dt, d_lo, ref_noise_var)
        p = _projection(z, dt, f_best, d_lo)
        c = p / e_d
        return f_best, c.real, c.imag, d_lo, (p.real * p.real + p.imag * p.imag) / e_d, at_edge, c0.real, c0.imag
    # --- damping: grid then parabolic refinement at f_best
    d_step = 1.0
    n_d = int((d_hi - d_lo) / d_step + 0.5) + 1
    best_jd = -1.0
    d_best = 0.0
    for i in range(n_d):
        d = d_lo + i * d_step
        j = _jd(z, ref_abs2, ref_noise_var, trans_noise_var, dt, f_best, d)
        if j > best_jd:
            best_jd = j
            d_best = d
    step = d_step
    for _ in range(5):
        dl = max(d_best - step, d_lo)
        dh = min(d_best + step, d_hi)
        jl = _jd(z, ref_abs2, ref_noise_var, trans_noise_var, dt, f_best, dl)
        jc = _jd(z, ref_abs2, ref_noise_var, trans_noise_var, dt, f_best, d_best)
        jh = _jd(z, ref_abs2, ref_noise_var, trans_noise_var, dt, f_best, dh)
        d_best = _parabola_vertex(dl, d_best, dh, jl, jc, jh, d_lo, d_hi)
        step *= 0.35
    e_d = _ref_energy(ref_abs2, dt, d_best, ref_noise_var)
    f_best = _refine_frequency(z, dt, f_best, 0.25, d_best, e_d)
    p = _projection(z, dt, f_best, d_best)
    c = p / e_d
    j_best = (p.real * p.real + p.imag * p.imag) / e_d
    return f_best, c.real, c.imag, d_best, j_best, at_edge, c0.real, c0.imag


@nb.njit(cache=True, nogil=True)
def fit_at(z, ref_abs2, ref_noise_var, dt, f, d, h):
    """The registration model evaluated at a given (f Hz, d Hz): its least-squares complex amplitude
    c = P / E and the curvature -J''(f) of the fit quality J = |P|^2 / E (central difference, step h Hz).

    -J'' is the Fisher information of f times the noise variance: for white complex noise of variance
    s2 per point, var(f) ~= s2 / (-J''). Returns (c_real, c_imag, curvature).
    """
    e = _ref_energy(ref_abs2, dt, d, ref_noise_var)
    pc = _projection(z, dt, f, d)
    pl = _projection(z, dt, f - h, d)
    ph = _projection(z, dt, f + h, d)
    jc = (pc.real * pc.real + pc.imag * pc.imag) / e
    jl = (pl.real * pl.real + pl.imag * pl.imag) / e
    jh = (ph.real * ph.real + ph.imag * ph.imag) / e
    c = pc / e
    return c.real, c.imag, -(jh - 2.0 * jc + jl) / (h * h)


@nb.njit(cache=True, nogil=True)
def _refine_frequency(z, dt, f0, step, damp, energy):
    f_best = f0
    for _ in range(6):
        pl = _projection(z, dt, f_best - step, damp)
        pc = _projection(z, dt, f_best, damp)
        ph = _projection(z, dt, f_best + step, damp)
        jl = (pl.real ** 2 + pl.imag ** 2) / energy
        jc = (pc.real ** 2 + pc.imag ** 2) / energy
        jh = (ph.real ** 2 + ph.imag ** 2) / energy
        f_best = _parabola_vertex(f_best - step, f_best, f_best + step, jl, jc, jh,
                                  f_best - step, f_best + step)
        step *= 0.3
    return f_best


@nb.njit(cache=True, nogil=True)
def _parabola_vertex(x0, x1, x2, y0, y1, y2, lo, hi):
    """Vertex of the parabola through three points, clipped to [lo, hi]; the best sample if degenerate."""
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    if den == 0.0:
        return x1
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den
    if a >= 0.0:  # not a maximum: keep the best of the three samples
        if y0 >= y1 and y0 >= y2:
            return x0
        if y2 >= y1:
            return x2
        return x1
    v = -b / (2.0 * a)
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


@nb.njit(cache=True, nogil=True)
def max_real(spec, i0, i1):
    """(max Re spec[i0:i1], its index). The FID-A/Osprey SNR signal."""
    best = -np.inf
    best_i = i0
    for k in range(i0, i1):
        v = spec[k].real
        if v > best:
            best = v
            best_i = k
    return best, best_i


@nb.njit(cache=True, nogil=True)
def argmax_abs(spec, i0, i1):
    """Index of max |spec| in [i0, i1)."""
    best = -1.0
    best_i = i0
    for k in range(i0, i1):
        v = spec[k].real ** 2 + spec[k].imag ** 2
        if v > best:
            best = v
            best_i = k
    return best_i


@nb.njit(cache=True, nogil=True)
def detrended_sd(y, i0, i1):
    """SD of y[i0:i1] (real) after removing its least-squares quadratic (FID-A op_getSNR noise).

    Projection on an orthonormal basis {1, x, x^2} built by Gram-Schmidt on a centred, scaled x, so it is
    well conditioned for any window length >= 4. Uses ddof = 3 (three fitted parameters).
    """
    n = i1 - i0
    if n < 4:
        return np.nan
    x = np.empty(n)
    half = 0.5 * (n - 1)
    for k in range(n):
        x[k] = (k - half) / max(half, 1.0)
    b = np.empty((3, n))
    for k in range(n):
        b[0, k] = 1.0
        b[1, k] = x[k]
        b[2, k] = x[k] * x[k]
    for j in range(3):
        for i in range(j):
            dot = 0.0
            for k in range(n):
                dot += b[j, k] * b[i, k]
            for k in range(n):
                b[j, k] -= dot * b[i, k]
        nrm = 0.0
        for k in range(n):
            nrm += b[j, k] * b[j, k]
        nrm = math.sqrt(nrm)
        for k in range(n):
            b[j, k] /= nrm
    r = np.empty(n)
    for k in range(n):
        r[k] = y[i0 + k]
    for j in range(3):
        dot = 0.0
        for k in range(n):
            dot += r[k] * b[j, k]
        for k in range(n):
            r[k] -= dot * b[j, k]
    ss = 0.0
    for k in range(n):
        ss += r[k] * r[k]
    return math.sqrt(ss / (n - 3))


@nb.njit(cache=True, nogil=True)
def tail_sd(fid, frac):
    """SD of the real part of the last ``frac`` of the FID points (time-domain noise, per real component)."""
    n = fid.shape[0]
    start = int(n * (1.0 - frac))
    m = n - start
    mean = 0.0
    for k in range(start, n):
        mean += fid[k].real
    mean /= m
    ss = 0.0
    for k in range(start, n):
        ss += (fid[k].real - mean) ** 2
    return math.sqrt(ss / (m - 1))


@nb.njit(cache=True, nogil=True)
def fwhm_real(y, peak, hz_per_point):
    """Full width at half maximum (Hz) of the peak of real array y at index ``peak``.

    Walks outward from the peak to the first sample below half the peak height on each side, and places
    each crossing by linear interpolation between the two samples around it (spant ``peak_info``).
    Returns NaN when the peak is not positive or a crossing is not found inside the array.
    """
    h = y[peak]
    if not (h > 0.0):
        return np.nan
    half = 0.5 * h
    n = y.shape[0]
    k = peak
    while k > 0 and y[k] >= half:
        k -= 1
    if y[k] >= half:
        return np.nan
    left = k + (half - y[k]) / (y[k + 1] - y[k])
    k = peak
    while k < n - 1 and y[k] >= half:
        k += 1
    if y[k] >= half:
        return np.nan
    right = (k - 1) + (y[k - 1] - half) / (y[k - 1] - y[k])
    return (right - left) * hz_per_point


@nb.njit(cache=True, nogil=True)
def band_power(spec, i0, i1):
    """mean over [i0, i1) of |spec|^2."""
    acc = 0.0
    for k in range(i0, i1):
        acc += spec[k].real ** 2 + spec[k].imag ** 2
    return acc / (i1 - i0)


@nb.njit(cache=True, nogil=True)
def band_power_projected(spec, i0, i1, q):
    """mean over [i0, i1) of |r|^2, r = s - Q (Q^H s), s = spec[i0:i1]: the band's power outside the span of
    the orthonormal columns of ``q`` ((i1 - i0) x m complex128), e.g. a smooth tail to be left out."""
    n, m = q.shape
    coef = np.zeros(m, dtype=np.complex128)
    for j in range(m):
        acc = 0j
        for k in range(n):
            acc += q[k, j].conjugate() * spec[i0 + k]
        coef[j] = acc
    total = 0.0
    for k in range(n):
        r = spec[i0 + k] + 0j
        for j in range(m):
            r -= q[k, j] * coef[j]
        total += r.real ** 2 + r.imag ** 2
    return total / n


@nb.njit(cache=True, nogil=True)
def combine_coils(weights, data):
    """sum_c weights[c] * data[c, :], accumulated in complex128 (weights complex128, data coils x samples).

    A plain loop instead of BLAS: OpenBLAS runs this product on its thread pool, whose wake-ups on a busy
    2-core host put milliseconds into the daemon's per-transient latency tail (p99 9 ms against 2 ms
    measured, issue 11); the loop takes ~60 us at 32 x 2048 and its sum order never depends on threads."""
    n_coils, n = data.shape
    out = np.zeros(n, dtype=np.complex128)
    for c in range(n_coils):
        w = weights[c]
        for k in range(n):
            out[k] += w * data[c, k]
    return out


@nb.njit(cache=True, nogil=True)
def accumulate(acc, fid):
    """acc += fid in place (running sum of aligned transients)."""
    for k in range(acc.shape[0]):
        acc[k] += fid[k]


@nb.njit(cache=True, nogil=True)
def robust_rows(buf, counts, circular_row):
    """Per row r of buf (rows x capacity, the first counts[r] entries valid): (median, 1.4826 MAD).

    Row ``circular_row`` holds angles in degrees: deviations are wrapped to +-180 around the circular mean
    before the median and MAD are taken, and its median is returned wrapped. Rows with no entries give NaN.
    """
    n_rows = buf.shape[0]
    med = np.full(n_rows, np.nan)
    mad = np.full(n_rows, np.nan)
    for r in range(n_rows):
        n = counts[r]
        if n == 0:
            continue
        x = buf[r, :n].copy()
        centre = 0.0
        if r == circular_row:
            sc = 0.0
            cc = 0.0
            for k in range(n):
                sc += math.sin(math.radians(x[k]))
                cc += math.cos(math.radians(x[k]))
            centre = math.degrees(math.atan2(sc, cc))
            for k in range(n):
                x[k] = (x[k] - centre + 180.0) % 360.0 - 180.0
        m = np.median(x)
        mad[r] = 1.4826 * np.median(np.abs(x - m))
        med[r] = m
        if r == circular_row:
            med[r] = (centre + m + 180.0) % 360.0 - 180.0
    return med, mad


@nb.njit(cache=True, nogil=True)
def linear_fit(t, y):
    """Least-squares line y = a + b t; returns (a, b). b is NaN for fewer than 2 distinct t."""
    n = t.shape[0]
    if n < 2:
        return (y[0] if n == 1 else np.nan), np.nan
    tm = 0.0
    ym = 0.0
    for k in range(n):
        tm += t[k]
        ym += y[k]
    tm /= n
    ym /= n
    sxx = 0.0
    sxy = 0.0
    for k in range(n):
        sxx += (t[k] - tm) ** 2
        sxy += (t[k] - tm) * (y[k] - ym)
    if sxx == 0.0:
        return ym, np.nan
    b = sxy / sxx
    return ym - b * tm, b


@nb.njit(cache=True, nogil=True)
def line_prediction(t, y, t0):
    """Least-squares line through (t, y) evaluated at t0, that value's variance from the scatter about
    the line: s^2 (1/n + (t0 - mean t)^2 / Sxx), s^2 = residual sum of squares / (n - 2), and the slope (per
    unit of t). Returns (value, var, slope); NaN for fewer than 3 points or one distinct t."""
    n = t.shape[0]
    if n < 3:
        return np.nan, np.nan, np.nan
    a, b = linear_fit(t, y)
    if not np.isfinite(b):
        return np.nan, np.nan, np.nan
    tm = 0.0
    for k in range(n):
        tm += t[k]
    tm /= n
    sxx = 0.0
    rss = 0.0
    for k in range(n):
        sxx += (t[k] - tm) ** 2
        r = y[k] - a - b * t[k]
        rss += r * r
    return a + b * t0, rss / (n - 2) * (1.0 / n + (t0 - tm) ** 2 / sxx), b


@nb.njit(cache=True, nogil=True)
def energy_moments(abs2, dt):
    """(sum_k abs2[k], sum_k abs2[k] k dt / sum_k abs2[k]): a template's energy and its energy-weighted mean
    time (s)."""
    e = 0.0
    et = 0.0
    for k in range(abs2.shape[0]):
        e += abs2[k]
        et += abs2[k] * k * dt
    return e, (et / e if e > 0.0 else 0.0)


@nb.njit(cache=True, nogil=True)
def decimated_band(spec, first, mask, twiddle, m, dt, freq_hz):
    """The first m samples (every dt s) of the FID of a band: (1 / N) sum_j spec[(first + j) % N] mask[j]
    exp(2 pi i j k / L) for k < m (L = mask size, a power of 2; twiddle[q] = exp(2 pi i q / L)), i.e. (L / N)
    times the inverse FFT of the window's L bins (radix 2, in place), then shifted by -freq_hz (Hz) as
    ``correct_fid`` does."""
    n = spec.shape[0]
    size = mask.shape[0]
    bits = 0
    while (1 << bits) < size:
        bits += 1
    a = np.empty(size, dtype=np.complex128)
    for j in range(size):
        r = 0
        x = j
        for _ in range(bits):
            r = (r << 1) | (x & 1)
            x >>= 1
        a[r] = spec[(first + j) % n] * mask[j]
    span = 2
    while span <= size:
        half = span // 2
        stride = size // span
        for start in range(0, size, span):
            for j in range(half):
                t = twiddle[j * stride] * a[start + j + half]
                u = a[start + j]
                a[start + j] = u + t
                a[start + j + half] = u - t
        span *= 2
    out = np.empty(m, dtype=np.complex128)
    step = complex(math.cos(-_TWO_PI * freq_hz * dt), math.sin(-_TWO_PI * freq_hz * dt))
    rot = complex(1.0 / n, 0.0)
    for k in range(m):
        out[k] = a[k] * rot
        rot *= step
    return out



@nb.njit(cache=True, nogil=True)
def mean_and_power(total, n):
    """(total / n, |total / n|^2) as new complex128 and float64 arrays (a running template's mean)."""
    mean = np.empty(total.shape[0], dtype=np.complex128)
    power = np.empty(total.shape[0])
    for k in range(total.shape[0]):
        v = total[k] / n
        mean[k] = v
        power[k] = v.real * v.real + v.imag * v.imag
    return mean, power
@nb.njit(cache=True, nogil=True)
def _median(x):
    s = np.sort(x)
    h = s.shape[0] // 2
    return s[h] if s.shape[0] % 2 else 0.5 * (s[h - 1] + s[h])


@nb.njit(cache=True, nogil=True)
def three_cornered_hat(rows, trim_sd):
    """The water's and the metabolites' true variance from rows (d, r_w, r_m, v_w, v_m) (freq_model.Honesty):
    rows beyond ``trim_sd`` robust SDs (1.4826 MAD) in any of the first three columns are left out, then with
    the kept rows' centred columns q_w = (d^2 + r_w^2 - r_m^2) / 2, q_m = (d^2 + r_m^2 - r_w^2) / 2. Returns
    (kept rows k, mean(q_w) k / (k - 1), SD(q_w) / sqrt(k), median(v_w), the same three for the metabolites);
    k < 2 gives NaNs."""
    n = rows.shape[0]
    keep = np.ones(n, dtype=np.bool_)
    for c in range(3):
        med = _median(rows[:, c].copy())
        dev = np.abs(rows[:, c] - med)
        lim = trim_sd * max(1.4826 * _median(dev.copy()), 1e-12)
        for i in range(n):
            if dev[i] > lim:
                keep[i] = False
    a = rows[keep]
    k = a.shape[0]
    if k < 2:
        return k, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan
    d = a[:, 0] - a[:, 0].mean()
    rw = a[:, 1] - a[:, 1].mean()
    rm = a[:, 2] - a[:, 2].mean()
    qw = (d * d + rw * rw - rm * rm) / 2.0
    qm = (d * d + rm * rm - rw * rw) / 2.0
    out = np.empty(6)
    for j, q in enumerate((qw, qm)):
        mean = q.mean()
        out[3 * j] = mean * k / (k - 1)
        out[3 * j + 1] = math.sqrt(((q - mean) ** 2).sum() / (k - 1) / k)
    out[2] = _median(a[:, 3].copy())
    out[5] = _median(a[:, 4].copy())
    return k, out[0], out[1], out[2], out[3], out[4], out[5]


def warm_up() -> float:
    """Compile (or load from the numba cache) every kernel signature the engine uses. Returns seconds taken."""
    import time

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    fid = rng.standard_normal(64) + 1j * rng.standard_normal(64)
    fid2 = correct_fid(fid, 1e-3, 1.0, 0.1)
    z = cross_product(fid, fid2, 32)
    register(z, np.abs(fid2[:32]) ** 2, np.zeros(32), np.zeros(32), 1e-3, 0.0, 4.0, 1.0, -2.0, 4.0)
    fit_at(z, np.abs(fid2[:32]) ** 2, np.zeros(32), 1e-3, 0.0, 0.0, 0.1)
    register(z, np.abs(fid2[:32]) ** 2, np.zeros(32), np.zeros(32), 1e-3, 0.0, 4.0, 1.0, 0.0, 0.0)
    spec = np.fft.fftshift(np.fft.fft(fid2))
    max_real(spec, 0, 64)
    argmax_abs(spec, 0, 64)
    detrended_sd(spec.real.copy(), 0, 32)
    detrended_sd(spec.real, 0, 32)  # the engine passes the strided .real view of a spectrum
    tail_sd(fid2, 0.25)
    fwhm_real(np.abs(spec), 10, 1.0)
    band_power(spec, 0, 64)
    band_power_projected(spec, 0, 64, np.ascontiguousarray(np.linalg.qr(np.ones((64, 2), dtype=np.complex128))[0]))
    accumulate(np.zeros(64, dtype=np.complex128), fid2)
    combine_coils(np.ones(2, dtype=np.complex128), np.ones((2, 8), dtype=np.complex64))
    robust_rows(np.ones((6, 8)), np.array([8, 8, 8, 8, 8, 0], dtype=np.int64), 1)
    linear_fit(np.arange(5.0), np.arange(5.0))
    line_prediction(np.arange(5.0), np.arange(5.0), 6.0)
    energy_moments(np.ones(8), 1e-3)
    tw = np.exp(2j * np.pi * np.arange(8) / 8)
    decimated_band(spec, 60, np.ones(8), tw, 4, 1e-3, 0.5)
    three_cornered_hat(rng.standard_normal((12, 5)), 5.0)
    mean_and_power(fid2, 3)
    return time.perf_counter() - t0
