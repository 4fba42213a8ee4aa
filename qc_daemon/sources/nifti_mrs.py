"""NIfTI-MRS reader (nibabel): single-voxel data, the format spec2nii writes and every analysis tool reads.

Layout (NIfTI-MRS standard v0.2+): a complex NIfTI-2/1 image of shape (1, 1, 1, points[, dim5[, dim6[, dim7]]]);
pixdim[4] is the dwell time (s); the JSON header extension (code 44) holds ``SpectrometerFrequency`` (MHz),
``ResonantNucleus``, ``EchoTime``/``RepetitionTime`` (s) and the tags of the higher dimensions (``dim_5`` ...).

Dimensions: ``DIM_COIL`` -> coils; ``DIM_DYN`` (one entry per transient) and ``DIM_MEAS`` (repeats of the whole
sequence) -> transients; ``DIM_EDIT`` -> edit sets. Acquisition order: MEAS slowest, then DYN, then EDIT (edit
conditions interleave transient by transient, as MEGA and HERMES acquire them). Any other tag with more than
one entry (``DIM_ISIS``, ``DIM_PHASE_CYCLE``, ``DIM_INDIRECT_0``, ``DIM_METCYCLE``, ``DIM_USER_0`` ...) is refused
by name; a one-entry dimension of any tag is ignored.

Convention: mrsqc's spectra are ``fftshift(fft(fid))`` with ppm growing with the index (spectral.py). NIfTI-MRS
stores the complex conjugate of that (its right-handed frame, in which that FFT puts NAA at 7.3 ppm): the reader
conjugates, the writer (nifti_write.py) conjugates back. It is the frame FSL-MRS works in (the nifti-mrs package's
``NIFTI_MRS[...]`` returns the conjugate of the stored data for the same reason). The receiver frequency sits at
4.65 ppm for 1H (spec2nii's and FSL-MRS's convention). Checked on the in-vivo pair written by spec2nii
(tests/test_nifti_out.py): NAA at 2.01 ppm, tCr at 3.03, water at 4.7 (as stored, NAA's mirror at 7.29 ppm is
the strongest metabolite line).

Only the technical keys are read: the JSON's patient fields (PatientName, PatientID, PatientDoB ...) are never
copied. Transient times come from RepetitionTime when given (else 0: no drift rate).
"""

from __future__ import annotations

import gzip
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
TRANSIENT_DIMS = ("DIM_MEAS", "DIM_DYN")  # slowest first
SUPPORTED_DIMS = ("DIM_COIL", *TRANSIENT_DIMS, "DIM_EDIT")
_NIFTI_SIZES = (348, 540)  # sizeof_hdr of NIfTI-1 and NIfTI-2, the file's first int32


def is_nifti(path: Path) -> bool:
    """True when the file starts as a NIfTI-1/2 header (gzip-compressed or not), whatever its name, or is named
    .nii / .nii.gz (a damaged one is then refused as a NIfTI file, not as an unknown format)."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                head = f.read(4)
    except (OSError, EOFError):
        return False
    if len(head) < 4:
        return False
    return int.from_bytes(head, "little") in _NIFTI_SIZES or int.from_bytes(head, "big") in _NIFTI_SIZES


def header_extension(img) -> dict:
    """The NIfTI-MRS JSON header extension of a nibabel image ({} when absent or not JSON)."""
    for ext in img.header.extensions:
        if ext.get_code() == JSON_EXTENSION_CODE:
            try:
                out = json.loads(ext.get_content())
            except (ValueError, TypeError):
                return {}
            return out if isinstance(out, dict) else {}
    return {}


def _first(value, default=None):
    if isinstance(value, list):
        return value[0] if value else default
    return default if value is None else value


def _seconds_ms(value) -> float | None:
    try:
        v = float(_first(value))
    except (TypeError, ValueError):
        return None
    return v * 1000.0 if v > 0 else None


def nmrs_recording(data: np.ndarray, dwell_s: float, hdr: dict, source_name: str | Path, scan_id: str,
                   role: str | None = None, source: str = "nifti-mrs", notes: list[str] | None = None) -> Recording:
    """A :class:`Recording` from NIfTI-MRS content: ``data`` (1, 1, 1, points, ...) as stored (NIfTI-MRS frame),
    ``dwell_s`` (pixdim[4], s), ``hdr`` the JSON header extension. ``role='water'``: a water-reference scan."""
    if data.ndim < 4 or data.shape[:3] != (1, 1, 1):
        raise InputError(source_name, f"shape {data.shape}: mrsqc checks single-voxel NIfTI-MRS "
                                      "(1 x 1 x 1 x points x ...)")
    if not np.iscomplexobj(data):
        raise InputError(source_name, "NIfTI-MRS data must be complex")
    nucleus = str(_first(hdr.get("ResonantNucleus"), "1H"))
    if nucleus != "1H":
        raise InputError(source_name, f"unsupported nucleus {nucleus!r}: mrsqc checks 1H spectroscopy")
    try:
        f0_mhz = float(_first(hdr.get("SpectrometerFrequency"), 0.0))
    except (TypeError, ValueError):
        f0_mhz = 0.0
    if not f0_mhz > 0 or not dwell_s > 0:
        raise InputError(source_name, "header lacks SpectrometerFrequency or the dwell time (pixdim[4])")
    dims = [str(hdr.get(f"dim_{k}", "") or "") for k in range(5, data.ndim + 1)]
    x = data[0, 0, 0]  # points x higher dims
    bad = [f"{d or 'untagged'} ({n})" for d, n in zip(dims, x.shape[1:]) if n > 1 and d not in SUPPORTED_DIMS]
    if bad:
        raise InputError(source_name, f"NIfTI-MRS dimension {', '.join(bad)} is not supported: mrsqc checks "
                                      f"{', '.join(SUPPORTED_DIMS)}")
    if len(set(dims)) < len(dims):
        raise InputError(source_name, f"NIfTI-MRS dimension tags repeat: {', '.join(dims)}")
    axis = {d: 1 + i for i, d in enumerate(dims)}
    order = [axis[d] for d in TRANSIENT_DIMS if d in axis] + ([axis["DIM_EDIT"]] if "DIM_EDIT" in axis else [])
    coil = [axis["DIM_COIL"]] if "DIM_COIL" in axis else []
    others = [a for a in range(1, x.ndim) if a not in order and a not in coil]  # one-entry dims
    x = x.transpose([0, *coil, *others, *order])
    n_points = x.shape[0]
    n_coils = x.shape[1] if coil else 1
    loops = x.shape[x.ndim - len(order):] if order else ()
    x = x.reshape(n_points, n_coils, -1)  # C order: the last loop (EDIT, then DYN) fastest
    n_t = x.shape[2]
    sets = np.zeros(n_t, dtype=int)
    if "DIM_EDIT" in axis:
        sets = np.indices(loops).reshape(len(loops), -1)[-1]
    fids = np.empty((n_t, n_coils, n_points), dtype=np.complex64)  # transients x coils x points
    np.conjugate(x.transpose(2, 1, 0), out=fids)  # NIfTI-MRS's frame -> mrsqc's (module docstring)
    if not np.isfinite(fids.view(np.float32)).all():
        raise InputError(source_name, "data contain NaN or Inf")
    found = None if role == "water" else classify(fids, dwell_s, f0_mhz)
    kinds = [WATER_REF] * n_t if found is None else found.kinds
    tr_ms = _seconds_ms(hdr.get("RepetitionTime"))
    n_metab = sum(k != WATER_REF for k in kinds)
    per_transient = any(d in axis for d in TRANSIENT_DIMS) or n_t > int(sets.max()) + 1
    scan = ScanInfo(
        scan_id=scan_id, f0_hz=f0_mhz * 1e6, dwell_s=dwell_s, n_points=n_points, n_coils=n_coils,
        planned_averages=max(n_metab, 1) if role != "water" else max(n_t, 1),
        te_ms=_seconds_ms(hdr.get("EchoTime")), tr_ms=tr_ms, sequence=str(hdr.get("SequenceName", "") or ""),
        n_sets=int(sets.max()) + 1, source=source, combined=not per_transient and role != "water")
    tr_s = (tr_ms or 0.0) / 1000.0
    counters: dict[str, int] = {}  # averages numbered per kind across edit sets, as a twix's Ave counter
    transients = []
    for i in range(n_t):
        counters[kinds[i]] = counters.get(kinds[i], -1) + 1
        transients.append(Transient(index=i, average=counters[kinds[i]], set=int(sets[i]), kind=kinds[i],
                                    time_s=i * tr_s, data=fids[i]))
    out_notes = list(notes or [])
    out_notes.append(f"NIfTI-MRS dimensions: {', '.join(d or '?' for d in dims) or 'none'}")
    if not per_transient and role != "water":
        out_notes.append("no DIM_DYN: one FID (per edit set) averaged on the scanner; checked as combined data")
    if tr_ms is None:
        out_notes.append("no RepetitionTime in the header: transient times unknown (no drift rate)")
    if found is not None and found.note():
        out_notes.append(found.note())
    return Recording(scan=scan, transients=transients, notes=out_notes)


def read_nifti_mrs(path: str | Path, role: str | None = None) -> Recording:
    """Read a single-voxel NIfTI-MRS file (.nii or .nii.gz) as a :class:`Recording`."""
    import nibabel as nib

    path = Path(path)
    logging.getLogger("nibabel").setLevel(logging.CRITICAL)  # its header fixes are errors here, said once
    try:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            img = nib.load(str(path))
        else:  # recognised by content: nibabel picks its reader by the suffix, so hand it the bytes
            raw = path.read_bytes()
            raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            cls = nib.Nifti2Image if int.from_bytes(raw[:4], "little") == 540 else nib.Nifti1Image
            img = cls.from_bytes(raw)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for a damaged file  # noqa: BLE001
        raise InputError(path, f"not a readable NIfTI file ({type(exc).__name__})") from None
    hdr = header_extension(img)
    if not hdr:
        raise InputError(path, "NIfTI without the NIfTI-MRS JSON header extension (code 44)")
    with open(path, "rb") as f:
        scan_id = hashlib.sha256(f.read(65536)).hexdigest()[:16]
    return nmrs_recording(data, float(img.header["pixdim"][4]), hdr, path, scan_id, role=role)
