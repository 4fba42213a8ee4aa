"""One simulated scan through the engine, as every accuracy benchmark runs it (the caller has ROOT on sys.path)."""

from __future__ import annotations

import time

from qc_daemon.engine import ScanQC
from qc_daemon.model import ScanSummary, TransientQC
from qc_daemon.sources.simulate import SimulationParams, simulate_scan


def run_scan(p: SimulationParams) -> tuple[object, ScanQC, list[TransientQC], ScanSummary, float, dict]:
    """(simulation, its engine, every result incl. the end-of-scan tail, summary, ms per transient (engine only),
    truth by transient index)."""
    sim = simulate_scan(p)
    qc = ScanQC(sim.scan)
    res: list[TransientQC] = []
    t0 = time.perf_counter()
    for tr in sim.transients:
        res += qc.process(tr)
    per_ms = (time.perf_counter() - t0) / len(sim.transients) * 1e3
    tail, summary = qc.finish()
    truth = {r["index"]: r for r in sim.truth["transients"]}
    return sim, qc, res + tail, summary, per_ms, truth

