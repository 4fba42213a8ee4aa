"""NIfTI-MRS reader (nibabel; the format spec2nii writes and FSL-MRS fits): single-voxel data only.

Layout (NIfTI-MRS standard v0.x): a complex NIfTI-2/1 image of shape (1, 1, 1, points[, dim5[, dim6[, dim7]]]);
pixdim[4] is the dwell time (s); the JSON header extension (code 44) holds ``SpectrometerFrequency`` (MHz),
``ResonantNucleus`` and the names of the higher dimensions (``dim_5`` ...: DIM_COIL, DIM_DYN, DIM_EDIT,
DIM_AVG, ...). DIM_COIL becomes coils; DIM_EDIT the edit set; every other higher dimension enumerates
transients (acquisition order = C order over them). Data are in the NIfTI-MRS orientation already. Only the
technical keys are read: the JSON's patient fields are never copied. The receiver frequency sits at 4.65 ppm
(FSL-MRS's 1H convention). Transient times come from RepetitionTime (s) when given.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model import WATER_REF, ScanInfo, Transient
from .classify import classify
from .recording import Recording

JSON_EXTENSION_CODE = 44


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".nii", ".nii.gz"))


def _header(img) -> dict:
    for ext in img.header.extensions:
        if ext.get_code() == JSON_EXTENSION_CODE:
            try:
                return json.loads(ext.get_content())
            except (ValueError, TypeError):
                return {}
    return {}


def read_nifti_mrs(path: str | Path, role: str | None = None) -> Recording:
    """Read a single-voxel NIfTI-MRS file as a :class:`Recording`."""
    import nibabel as nib

    path = Path(path)
    logging.getLogger("nibabel").setLevel(logging.CRITICAL)  # its header fixes are errors here, said once
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for a damaged file  # noqa: BLE001
        raise InputError(path, f"not a readable NIfTI file ({type(exc).__name__})") from None
    hdr = _header(img)
    if not hdr:
        raise InputError(path, "NIfTI without the NIfTI-MRS JSON header extension (code 44)")
    if data.ndim < 4 or data.shape[:3] != (1, 1, 1):
        raise InputError(path, f"shape {data.shape}: mrsqc checks single-voxel NIfTI-MRS (1 x 1 x 1 x points x ...)")
    if not np.iscomplexobj(data):
        raise InputError(path, "NIfTI-MRS data must be complex")
    nucleus = str((hdr.get("ResonantNucleus") or ["1H"])[0])
    if nucleus != "1H":
        raise InputError(path, f"unsupported nucleus {nucleus!r}: mrsqc checks 1H spectroscopy")
    f0 = hdr.get("SpectrometerFrequency")
    f0_mhz = float(f0[0] if isinstance(f0, list) else f0 or 0.0)
    dwell = float(img.header["pixdim"][4])
    if not f0_mhz > 0 or not dwell > 0:
        raise InputError(path, "header lacks SpectrometerFrequency or the dwell time (pixdim[4])")
    dims = [str(hdr.get(f"dim_{k}", "")) for k in range(5, data.ndim + 1)]
    x = data[0, 0, 0]  # points x higher dims
    coil_axis = 1 + dims.index("DIM_COIL") if "DIM_COIL" in dims else None
    x = np.moveaxis(x, coil_axis, 1) if coil_axis is not None else x[:, None]
    rest = [d for d in dims if d != "DIM_COIL"]
    n_points, n_coils = x.shape[:2]
    edit_axis = rest.index("DIM_EDIT") if "DIM_EDIT" in rest else None
    shape_rest = x.shape[2:]
    x = x.reshape(n_points, n_coils, -1)  # C order over the remaining dims
    n_t = x.shape[2]
    sets = np.zeros(n_t, dtype=int)
    if edit_axis is not None:
        sets = np.indices(shape_rest).reshape(len(shape_rest), -1)[edit_axis]
    fids = np.ascontiguousarray(x.transpose(2, 1, 0)).astype(np.complex64)  # transients x coils x points
    if not np.isfinite(fids).all():
        raise InputError(path, "data contain NaN or Inf")
    found = None if role == "water" else classify(fids, dwell, f0_mhz)
    kinds = [WATER_REF] * n_t if found is None else found.kinds
    tr_s = float(hdr.get("RepetitionTime") or 0.0)
    te_s = hdr.get("EchoTime")
    n_metab = sum(k != WATER_REF for k in kinds)
    scan = ScanInfo(
        scan_id=hashlib.sha256(path.read_bytes()[:65536]).hexdigest()[:16], f0_hz=f0_mhz * 1e6, dwell_s=dwell,
        n_points=n_points, n_coils=n_coils, planned_averages=max(n_metab, 1) if role != "water" else max(n_t, 1),
        te_ms=float(te_s) * 1000.0 if te_s else None, tr_ms=tr_s * 1000.0 if tr_s else None,
        sequence=str(hdr.get("SequenceName", "") or ""), n_sets=int(sets.max()) + 1, source="nifti-mrs")
    counters: dict[tuple[str, int], int] = {}
    transients = []
    for i in range(n_t):
        key = (kinds[i], int(sets[i]))
        counters[key] = counters.get(key, -1) + 1
        transients.append(Transient(index=i, average=counters[key], set=int(sets[i]), kind=kinds[i],
                                    time_s=i * tr_s, data=fids[i]))
    notes = [f"NIfTI-MRS dimensions: {', '.join(d or '?' for d in dims) or 'none'}"]
    if found is not None and found.note():
        notes.append(found.note())
    return Recording(scan=scan, transients=transients, notes=notes)
