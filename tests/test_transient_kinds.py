"""Transient kinds from the signal: water references in 1-3 transient files, water-only scans, interleaved
references, and lipid / motion averages that must never be taken for water (issue 12)."""

import numpy as np
import pytest

from qc_daemon.model import METABOLITE, WATER_REF
from qc_daemon.sources.classify import classify
from qc_daemon.sources.simulate import Event, SimulationParams, simulate_scan


def kinds_of(sim):
    data = np.stack([t.data for t in sim.transients])
    s = sim.scan
    return classify(data, s.dwell_s, s.f0_mhz, s.oversampling, s.centre_ppm)


def small(**kw):
    base = dict(n_coils=4, n_points=1024, averages=1, water_refs_before=1, events=[], seed=3)
    base.update(kw)
    return simulate_scan(SimulationParams(**base))


@pytest.mark.parametrize("refs_before, averages, refs_after", [(1, 1, 0), (1, 2, 0), (2, 1, 0), (0, 2, 1),
                                                               (1, 0, 0), (0, 1, 0)])
def test_one_to_three_transients_are_told_apart(refs_before, averages, refs_after):
    sim = small(water_refs_before=refs_before, averages=averages, water_refs_after=refs_after)
    found = kinds_of(sim)
    expected = [t.kind for t in sim.transients]
    if averages == 0:
        assert found.water_only and found.kinds == [WATER_REF] * refs_before
    else:
        assert found.kinds == expected


def test_a_water_only_scan_is_recognised_and_named():
    sim = small(water_refs_before=2, averages=0)
    found = kinds_of(sim)
    assert found.water_only and found.dominance > 1000 and "water-only scan" in found.note()


def test_interleaved_references_are_found_where_they_are():
    sim = small(water_refs_before=1, averages=20, water_refs_after=2)
    found = kinds_of(sim)
    assert found.kinds == [t.kind for t in sim.transients]


def test_poor_suppression_is_still_a_metabolite_scan():
    """Residual water 300x NAA (a water-dominated spectrum): water-shaped, but not unsuppressed water."""
    sim = small(water_refs_before=0, averages=16, residual_water=300.0)
    found = kinds_of(sim)
    assert found.water_shaped.all() and found.kinds == [METABOLITE] * 16 and not found.water_only


@pytest.mark.parametrize("lipid", [3.0, 10.0, 50.0, 200.0])
def test_a_lipid_average_is_never_a_water_reference(lipid):
    sim = small(water_refs_before=2, averages=24, events=[Event(12, "lipid", lipid)])
    found = kinds_of(sim)
    assert found.kinds == [t.kind for t in sim.transients]
    assert found.kinds[2 + 12] == METABOLITE and not found.water_shaped[2 + 12]


def test_nothing_in_it_is_metabolite():
    found = classify(np.zeros((3, 2, 256), dtype=np.complex64), 0.5e-3, 123.2)
    assert found.kinds == [METABOLITE] * 3 and not found.water_only
