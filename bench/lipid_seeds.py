"""Lipid events of `mrsqc simulate` (defaults: 32 coils, 2048 points, 128 averages, NAA SNR 4) at seeds 1-20:
every lipid event of 3-50x NAA must be flagged and none may be a water reference (issue 12). Also run with
the lipid amplitude forced to 3, 10 and 50x NAA at every lipid event. Writes its figures to stdout as a
Markdown section (bench/run_all.py puts it in RESULTS.md)."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from qc_daemon.engine import ScanQC
from qc_daemon.model import WATER_REF
from qc_daemon.sources.classify import classify
from qc_daemon.sources.simulate import SimulationParams, default_events, simulate_scan


def one(seed: int, force: float | None = None, n_coils: int = 32, n_points: int = 2048) -> tuple[int, int, int]:
    """(lipid events 3-50x, flagged, taken for water) for one seed."""
    rng = np.random.default_rng(seed + 1000)  # as qc_daemon.simulate_files.write_simulation
    events = default_events(128, rng, n_each=2)
    if force is not None:
        events = [replace(e, value=force) if e.kind == "lipid" else e for e in events]
    sim = simulate_scan(SimulationParams(n_coils=n_coils, n_points=n_points, seed=seed, events=events))
    s = sim.scan
    found = classify(np.stack([t.data for t in sim.transients]), s.dwell_s, s.f0_mhz, s.oversampling, s.centre_ppm)
    transients = [replace(t, kind=k) for t, k in zip(sim.transients, found.kinds)]
    qc = ScanQC(s)
    results = []
    for t in transients:
        results += qc.process(t)
    results += qc.finish()[0]
    by_index = {r.index: r for r in results}
    n = flagged = as_water = 0
    for row in sim.truth["transients"]:
        if row["event"] == "lipid" and 3.0 <= row["lipid"] <= 50.0:
            n += 1
            r = by_index[row["index"]]
            flagged += bool(r.flags)
            as_water += r.kind == WATER_REF
    return n, flagged, as_water


def main(seeds=range(1, 21)) -> str:
    lines = ["## Lipid events (issue 12)", "",
             "| lipid amplitude | seeds | events 3-50x NAA | flagged | taken for water |", "|---|---|---|---|---|"]
    for force in (None, 3.0, 10.0, 50.0):
        tot = [0, 0, 0]
        for seed in seeds:
            for k, v in enumerate(one(seed, force)):
                tot[k] += v
        label = "as simulated (2-6x)" if force is None else f"{force:g}x NAA"
        lines.append(f"| {label} | {seeds.start}-{seeds.stop - 1} | {tot[0]} | {tot[1]} | {tot[2]} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
