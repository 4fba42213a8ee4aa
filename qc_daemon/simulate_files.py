"""``mrsqc simulate``: write simulated scans (twix, DICOM, NIfTI-MRS, Philips SDAT/SPAR and DATA/LIST, Siemens RDA,
UIH DICOM, GE P-file ``P<seed>.7``, a Bruker study folder: scan 1 the metabolites, 2 the water) with their
``*.truth.json``. Formats that hold one coil (SDAT, RDA) get the
coil-combined FIDs (the simulator's calibrated weights); formats without water references in the scan file
(NIfTI-MRS, SDAT) get them in a ``*_wref`` file beside it; RDA and UIH DICOM hold the average of the metabolite
transients (a scanner export), UIH also the water references' average in its private tag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .coils import combination_weights
from .model import WATER_REF
from .sources.dicom_write import write_dicom_folder
from .sources.nifti_write import write_nifti_mrs
from .sources.simulate import SimulationParams, default_events, simulate_scan
from .sources.twix_write import FakePatient, write_twix
from .sources.vendor_write import (
    write_bruker,
    write_data_list,
    write_ge_pfile,
    write_rda,
    write_sdat_spar,
    write_uih_dicom,
)

FORMATS = ("twix", "dicom", "nifti", "sdat", "datalist", "rda", "uih", "ge", "bruker")


def parse_formats(formats: str) -> list[str]:
    """'twix,nifti' -> ['twix', 'nifti']; 'both' = twix and DICOM; 'all' = every format."""
    names = {"both": ["twix", "dicom"], "all": list(FORMATS)}.get(formats, formats.split(","))
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise ValueError(f"unknown format {', '.join(bad)} (choose from {', '.join(FORMATS)}, both, all)")
    return names


def write_nifti_pair(out: Path, name: str, scan, transients) -> list[Path]:
    """Metabolite transients as ``name.nii.gz`` (DIM_COIL, DIM_DYN[, DIM_EDIT]) and the water references as
    ``name_wref.nii.gz``; the fake patient's fields in both headers (they must never reach an output)."""
    fake = FakePatient()
    hdr = {"EchoTime": (scan.te_ms or 30.0) / 1000.0, "RepetitionTime": (scan.tr_ms or 2000.0) / 1000.0,
           "SequenceName": scan.sequence or "press", "PatientName": fake.name, "PatientID": fake.patient_id,
           "PatientDoB": fake.birth_date, "ConversionMethod": "mrsqc simulate"}
    metab = [t for t in transients if t.kind != WATER_REF]
    water = [t for t in transients if t.kind == WATER_REF]
    n_sets = scan.n_sets
    data = np.stack([t.data for t in metab], axis=-1)  # coils x points x transients
    data = data.transpose(1, 0, 2)  # points x coils x transients (acquisition order: the edit set fastest)
    dims = ["DIM_COIL", "DIM_DYN"]
    info = None
    if n_sets > 1:
        n = data.shape[2] // n_sets * n_sets
        data = data[:, :, :n].reshape(data.shape[0], data.shape[1], n // n_sets, n_sets)
        dims.append("DIM_EDIT")
        info = {"DIM_EDIT": {"info": "MEGA editing: set 0 edit on, set 1 edit off",
                             "header": {"EditCondition": ["ON", "OFF"]}}}
    paths = [write_nifti_mrs(out / f"{name}.nii.gz", data, scan.dwell_s, scan.f0_mhz, dims, hdr, dim_info=info)]
    if water:
        w = np.stack([t.data for t in water], axis=-1).transpose(1, 0, 2)
        paths.append(write_nifti_mrs(out / f"{name}_wref.nii.gz", w, scan.dwell_s, scan.f0_mhz,
                                     ["DIM_COIL", "DIM_DYN"], hdr))
    return paths


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
    names = parse_formats(formats)
    sim = simulate_scan(params)
    paths: list[Path] = []
    w = combination_weights(np.stack([t.data for t in sim.transients[: max(4, params.water_refs_before)]]),
                            sim.scan.dwell_s, 0.02, 0.25)
    fids = np.stack([w @ t.data for t in sim.transients])
    is_water = np.array([t.kind == WATER_REF for t in sim.transients])
    if "twix" in names:
        paths.append(write_twix(out / f"{name}.dat", sim.scan, sim.transients, seed=seed))
    if "dicom" in names:
        paths.append(write_dicom_folder(out / f"{name}_dicom", sim.scan, list(fids), sim.transients))
    if "nifti" in names:
        paths += write_nifti_pair(out, name, sim.scan, sim.transients)
    if "sdat" in names:
        paths += write_sdat_spar(out / name, sim.scan, fids[~is_water])
        if is_water.any():
            paths += write_sdat_spar(out / f"{name}_wref", sim.scan, fids[is_water])
    if "datalist" in names:
        data = np.stack([t.data for t in sim.transients])
        paths += write_data_list(out / f"{name}_raw", sim.scan, data[~is_water],
                                 data[is_water] if is_water.any() else None, seed=seed)
    if "uih" in names:
        water = fids[is_water].mean(axis=0) if is_water.any() else fids[0]
        paths.append(write_uih_dicom(out / f"{name}_uih.dcm", sim.scan, fids[~is_water].mean(axis=0), water,
                                     averages=int((~is_water).sum())))
    if "ge" in names:
        data = np.stack([t.data for t in sim.transients])
        paths.append(write_ge_pfile(out / f"P{seed:05d}.7", sim.scan, data[~is_water], data[is_water]))
    if "bruker" in names:  # ParaVision stores one (combined) channel: the water references in their own scan
        gain = 2.0 ** np.floor(np.log2(2.0 ** 30 / float(np.abs(fids).max())))  # one receiver gain for both
        paths.append(write_bruker(out / f"{name}_bruker", sim.scan, fids[~is_water], expno=1, scale=gain))
        if is_water.any():
            paths.append(write_bruker(out / f"{name}_bruker", sim.scan, fids[is_water], expno=2, scale=gain))
    if "rda" in names:
        paths.append(write_rda(out / f"{name}.rda", sim.scan, fids[~is_water].mean(axis=0),
                               averages=int((~is_water).sum())))
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
    paths += write_simulation(out, name="small_nifti", formats="nifti", averages=24, n_coils=4, n_points=1024,
                              naa_snr=8.0, seed=9, drift_hz_per_min=0.3, events=False)
    paths += write_simulation(out, name="small_philips", formats="sdat", averages=24, n_coils=1, n_points=1024,
                              naa_snr=8.0, seed=10, drift_hz_per_min=0.3, events=False)
    return paths
