"""Per-transient engine time, for an A/B against another checkout (bench/freq_phase.py runs two of these and
alternates them). argv: checkout root. Prints "ready", then one time (ms per transient) per line read."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, sys.argv[1])

from qc_daemon import kernels  # noqa: E402
from qc_daemon.engine import ScanQC  # noqa: E402
from qc_daemon.sources.simulate import SimulationParams, simulate_scan  # noqa: E402


def main() -> None:
    kernels.warm_up()
    # the speed condition of bench/run_all.py: 32 coils x 2048, NAA SNR 4, residual water 15x (its defaults)
    sim = simulate_scan(SimulationParams(n_coils=32, n_points=2048, averages=40, naa_snr=4.0, seed=9, events=[]))
    qc = ScanQC(sim.scan)
    for t in sim.transients[:20]:
        qc.process(t)
    print("ready", flush=True)
    timed = sim.transients[20:]
    span = sim.transients[-1].time_s - sim.transients[0].time_s + sim.scan.tr_ms / 1000.0
    for k, _ in enumerate(sys.stdin, start=1):
        # the same transients again, the scan's clock going on (times increase as in a real, longer scan):
        # the state grows, the work per call is alike
        batch = [replace(t, time_s=t.time_s + k * span) for t in timed]
        t0 = time.perf_counter()
        for t in batch:
            qc.process(t)
        print((time.perf_counter() - t0) / len(timed) * 1e3, flush=True)


if __name__ == "__main__":
    main()
