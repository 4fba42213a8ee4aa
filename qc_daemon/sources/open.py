"""Open any supported recording by looking at it: a folder or DICOM file -> DICOM reader, else twix."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..spool import SPOOL_NAME, is_spool
from ..spool import read_recording as read_spool_recording
from .dicom import read_dicom
from .nifti_mrs import is_nifti, read_nifti_mrs
from .recording import Recording
from .twix import is_twix, read_twix


def _looks_like_dicom(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".ima")


# formats mrsqc recognises but does not read yet: suffix -> name (README, "Formats")
NOT_YET = {".rda": "Siemens RDA", ".sdat": "Philips SDAT/SPAR", ".spar": "Philips SDAT/SPAR",
           ".7": "GE P-file", ".data": "Philips DATA/LIST",
           ".list": "Philips DATA/LIST", ".h5": "ISMRMRD (MRD) HDF5"}


def _not_yet(path: Path) -> str | None:
    """The name of a recognised but unsupported format (by content where it has a signature, else suffix)."""
    with open(path, "rb") as f:
        head = f.read(352)
    if head.startswith(b">>> Begin of header <<<"):
        return "Siemens RDA"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "ISMRMRD (MRD) HDF5"
    return NOT_YET.get(path.suffix.lower())


def open_recording(path: str | Path, role: str | None = None) -> Recording:
    """Read a twix file, a DICOM file, a folder of DICOM files, or an mrsqc spool (a daemon's raw record of a
    scan: ``spool.mrsqc``, or the scan folder holding it). ``role='water'``: a water-reference scan."""
    path = Path(path)
    if path.is_dir() and (path / SPOOL_NAME).is_file():
        path = path / SPOOL_NAME
    if path.is_dir():
        return read_dicom(path, role=role)
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    if is_spool(path):
        try:
            return read_spool_recording(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"unreadable mrsqc spool ({exc})") from None
    if _looks_like_dicom(path):
        return read_dicom(path, role=role)
    if is_nifti(path):
        return read_nifti_mrs(path, role=role)
    if is_twix(path):
        return read_twix(path, role=role)
    name = _not_yet(path)
    if name:
        raise InputError(path, f"{name} is recognised but not supported yet (supported: Siemens twix .dat, "
                               "Siemens and enhanced MRS DICOM, NIfTI-MRS, an mrsqc spool; see the README's formats)")
    raise InputError(path, "unrecognised format: expected Siemens twix (.dat), MRS DICOM, NIfTI-MRS or an "
                           "mrsqc spool")
