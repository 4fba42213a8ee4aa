"""Open any supported recording by looking at it (content first, the suffix only where a format has no
signature): mrsqc spool, DICOM (mrsqc's reader; Philips private and UIH DICOM through spec2nii), NIfTI-MRS,
Siemens twix, and the other vendors' formats through spec2nii (spec2nii_formats.py)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..spool import SPOOL_NAME, is_spool
from ..spool import read_recording as read_spool_recording
from .dicom import MRS_STORAGE, read_dicom
from .nifti_mrs import is_nifti, read_nifti_mrs
from .recording import Recording, file_head
from .spec2nii_formats import detect, dicom_format, read_spec2nii
from .twix import is_twix, read_twix


def looks_like_dicom(path: Path) -> bool:
    """A DICOM file by its preamble ('DICM' at byte 128), or by its suffix (.dcm, .ima); False when unreadable."""
    return file_head(path, 132)[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".ima")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _spec2nii_dicom(path: Path):
    """A DICOM file that spec2nii reads rather than mrsqc (Philips private spectroscopy, UIH), else None."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Manufacturer", "SOPClassUID"])
    except Exception:  # noqa: BLE001  (mrsqc's reader gives the error)
        return None
    fmt = dicom_format(path, str(getattr(ds, "Manufacturer", "") or ""))
    if fmt is not None and fmt.name.startswith("UIH"):
        return fmt  # UIH stores its water reference in a private tag, and the conjugate frame: spec2nii knows
    return None if str(getattr(ds, "SOPClassUID", "")) == MRS_STORAGE else fmt


def open_recording(path: str | Path, role: str | None = None) -> Recording:
    """Read a twix file, a DICOM file, a folder of DICOM files, or an mrsqc spool (a daemon's raw record of a
    scan: ``spool.mrsqc``, or the scan folder holding it). ``role='water'``: a water-reference scan."""
    path = Path(path)
    if path.is_dir() and (path / SPOOL_NAME).is_file():
        path = path / SPOOL_NAME
    if path.is_dir():
        fmt = detect(path)
        return read_spec2nii(fmt, path, role) if fmt else read_dicom(path, role=role)
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
    if looks_like_dicom(path):
        fmt = _spec2nii_dicom(path)
        return read_spec2nii(fmt, path, role) if fmt else read_dicom(path, role=role)
    if is_nifti(path):
        return read_nifti_mrs(path, role=role)
    if is_twix(path):
        return read_twix(path, role=role)
    if file_head(path, 8) == HDF5_SIGNATURE:
        from .mrd import read_mrd

        return read_mrd(path, role=role)
    fmt = detect(path)
    if fmt is not None:
        return read_spec2nii(fmt, path, role)
    raise InputError(path, "unrecognised format: expected Siemens twix (.dat), DICOM, NIfTI-MRS, MRD (ISMRMRD) "
                           "HDF5, Philips SDAT/SPAR or DATA/LIST, Siemens RDA, GE P-file (.7), a Bruker folder or "
                           "an mrsqc spool")
