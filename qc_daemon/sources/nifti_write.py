"""NIfTI-MRS writer (nibabel; the header validated by the nifti-mrs package's own validator before it is written).

Used for the analysts' outputs (nifti_out.py) and by the simulator (simulate_files.py): one writer for both, so
a round trip tests the reader against what mrsqc hands out. ``data`` are in mrsqc's frame and are stored
conjugated, in the NIfTI-MRS frame (nifti_mrs.py: the convention); NIfTI-2, intent ``mrs_v0_9``, pixdim[4] =
dwell (s), xyzt units mm / s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .nifti_mrs import JSON_EXTENSION_CODE

NIFTI_MRS_VERSION = (0, 9)


def write_nifti_mrs(path: str | Path, data: np.ndarray, dwell_s: float, f0_mhz: float, dims: list[str],
                    header: dict | None = None, affine: np.ndarray | None = None,
                    dim_info: dict[str, dict] | None = None) -> Path:
    """Write ``data`` (points x dim5 x ...; complex) as single-voxel NIfTI-MRS. ``dims``: the tags of the higher
    dimensions (``DIM_COIL``, ``DIM_DYN``, ``DIM_EDIT`` ...), ``header``: further JSON header-extension keys,
    ``dim_info``: per tag, its ``dim_N_info`` text and ``dim_N_header`` dict. Raises ValueError when the nifti-mrs
    validator rejects the result (nothing is written then)."""
    import nibabel as nib
    from nifti_mrs import validator

    data = np.asarray(data)
    if data.ndim - 1 != len(dims):
        raise ValueError(f"{data.ndim - 1} higher dimensions but {len(dims)} tags")
    vol = np.conjugate(data.astype(np.complex64)).reshape((1, 1, 1) + data.shape)  # mrsqc's frame -> NIfTI-MRS
    hdr_ext: dict = {"SpectrometerFrequency": [float(f0_mhz)], "ResonantNucleus": ["1H"]}
    for k, tag in enumerate(dims, start=5):
        hdr_ext[f"dim_{k}"] = tag
        extra = (dim_info or {}).get(tag, {})
        if "info" in extra:
            hdr_ext[f"dim_{k}_info"] = extra["info"]
        if "header" in extra:
            hdr_ext[f"dim_{k}_header"] = extra["header"]
    hdr_ext.update(header or {})
    affine = np.diag([10.0, 10.0, 10.0, 1.0]) if affine is None else affine
    img = nib.Nifti2Image(vol, affine)
    h = img.header
    h.set_qform(affine)
    h.set_sform(affine)
    h["pixdim"][4] = dwell_s
    h["intent_name"] = f"mrs_v{NIFTI_MRS_VERSION[0]}_{NIFTI_MRS_VERSION[1]}".encode()
    h.set_xyzt_units(xyz=2, t=8)
    text = json.dumps(hdr_ext, allow_nan=False)
    h.extensions.append(nib.nifti1.Nifti1Extension(JSON_EXTENSION_CODE, text.encode("utf-8")))
    try:
        validator.validate_nifti_data(vol)
        validator.validate_nifti_header(h)
        validator.validate_hdr_ext(text, vol.shape)
        validator.validate_spectralwidth(text, dwell_s)
    except validator.Error as exc:
        raise ValueError(f"not valid NIfTI-MRS: {exc}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"
    tmp = path.with_name(f".{path.name[:-len(suffix)]}.part{suffix}")  # nibabel compresses by the suffix
    nib.save(img, str(tmp))
    tmp.replace(path)
    return path
