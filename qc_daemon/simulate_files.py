"""``mrsqc simulate``: write simulated scans (twix and/or DICOM) with their ``*.truth.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .coils import combination_weights
from .sources.dicom_write import write_dicom_folder
from .sources.simulate import SimulationParams, default_events, simulate_scan
from .sources.twix_write import write_twix


def write_simulation(out: Path, name: str = "sim", formats: str = "twix", averages: int = 128, n_coils: int = 32,
                     n_points: int = 2048, naa_snr: float = 4.0, seed: int = 1, drift_hz_per_min: float = 2.0,
                     events: bool = True, mega: bool = False, n_events_each: int = 2,
                     dwell_s: float | None = None) -> list[Path]:
    """Simulate and write; returns the written paths (twix file, DICOM folder, truth JSON)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000)
    params = SimulationParams(n_coils=n_coils, n_points=n_points, averages=averages, naa_snr=naa_snr, seed=seed,
                              drift_hz_per_min=drift_hz_per_min, mega=mega, scan_label=name,
                              dwell_s=dwell_s or (0.5e-3 if n_points >= 2048 else 0.8334e-3),
                              events=default_events(averages, rng, n_each=n_events_each) if events else [])
    sim = simulate_scan(params)
    paths: list[Path] = []
    if formats in ("twix", "both"):
        paths.append(write_twix(out / f"{name}.dat", sim.scan, sim.transients, seed=seed))
    if formats in ("dicom", "both"):
        w = combination_weights(np.stack([t.data for t in sim.transients[: max(4, params.water_refs_before)]]),
                                sim.scan.dwell_s, 0.02, 0.25)
        fids = [w @ t.data for t in sim.transients]
        paths.append(write_dicom_folder(out / f"{name}_dicom", sim.scan, fids, sim.transients))
    truth = out / f"{name}.truth.json"
    truth.write_text(json.dumps(sim.truth, indent=1) + "\n")
    paths.append(truth)
    return paths


def write_preset(preset: str, out: Path) -> list[Path]:
    """The committed fixtures: small enough for the repository (a few MB), rich enough for tests and the demo."""
    if preset != "fixtures":
        raise ValueError(preset)
    paths = write_simulation(out, name="demo_drift_motion", formats="twix", averages=48, n_coils=4, n_points=1024,
                             naa_snr=6.0, seed=7, drift_hz_per_min=4.0, n_events_each=1)
    paths += write_simulation(out, name="small_dicom", formats="dicom", averages=24, n_coils=4, n_points=1024,
                              naa_snr=8.0, seed=8, drift_hz_per_min=2.0, events=False)
    return paths
