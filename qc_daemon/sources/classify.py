"""Decide from the signal which transients are unsuppressed water references.

Definition: early-signal energy E_i = sum of |x|^2 over the first 16 output points (16 x oversampling samples;
all coils, or the first coil for twix, which reads just those samples). A transient is a water reference when
E_i > 5 x median(E). Unsuppressed water is ~10^3 x the metabolite signal, residual water after
suppression at most ~10^1, so the factor 5 separates them with margin; a scan whose transients are all
alike (all suppressed, or a water scan) is left as metabolite. Header flags (ucWaterSat) are not trusted.
"""

from __future__ import annotations

import numpy as np

from ..model import METABOLITE, WATER_REF

WATER_ENERGY_FACTOR = 5.0


def early_energy(data: np.ndarray, oversampling: int = 1) -> np.ndarray:
    """E_i for data (transients x coils x samples): the first 16 output points = 16 x oversampling samples."""
    return (np.abs(data[:, :, :16 * oversampling]) ** 2).sum(axis=(1, 2))


def classify_water(energy: np.ndarray) -> list[str]:
    """Kinds from the early energies E_i of a scan's transients."""
    energy = np.asarray(energy, dtype=float)
    med = float(np.median(energy))
    if med <= 0:
        return [METABOLITE] * len(energy)
    return [WATER_REF if e > WATER_ENERGY_FACTOR * med else METABOLITE for e in energy]
