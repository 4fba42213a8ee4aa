"""The running SNR's growth fit (plugins/snr.py): log snr = a + b log n by least squares, in running sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.snr import GrowthFit, project


def _reference(points: dict[int, float]) -> tuple[float, float]:
    x = np.log(np.array(list(points)))
    y = np.log(np.array(list(points.values())))
    b, a = np.polyfit(x, y, 1)
    resid = y - a - b * x
    se = math.sqrt(resid @ resid / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean())))
    return b, se


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 200), st.floats(0.5, 500.0)), min_size=3, max_size=60))
def test_running_sums_match_a_least_squares_fit_with_replaced_counts(updates):
    """A count seen again (a rejected transient leaves the accepted count unchanged) replaces its value."""
    fit = GrowthFit()
    for n, snr in updates:
        fit.add(n, snr)
    points = dict(updates)
    out = fit.exponent()
    if len(points) < 3:
        assert out is None
        return
    b, se = _reference(points)
    assert out is not None
    assert out[0] == pytest.approx(b, abs=1e-7)
    assert out[1] == pytest.approx(se, abs=1e-6)


def test_sqrt_n_growth_is_exponent_one_half_and_projects_to_the_plan():
    fit = GrowthFit()
    for n in range(4, 65):
        fit.add(n, 3.0 * math.sqrt(n))
    b, se = fit.exponent()
    assert b == pytest.approx(0.5) and se == pytest.approx(0.0, abs=1e-6)
    assert project(3.0 * 8.0, 64, 256, b) == pytest.approx(3.0 * 16.0)


def test_too_few_points_give_no_exponent():
    fit = GrowthFit()
    fit.add(4, 10.0)
    fit.add(8, 14.0)
    fit.add(8, 14.5)  # replaced, still two counts
    assert fit.exponent() is None
