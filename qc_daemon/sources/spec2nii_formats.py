"""Vendor formats read in-process through spec2nii's own readers (BSD-3; no subprocess, no temporary files).

spec2nii encodes each vendor's conjugation and dimension rules; mrsqc takes the NIfTI-MRS objects it builds
(without writing them) and hands their data and header extension to the same code as a NIfTI-MRS file
(nifti_mrs.nmrs_recording). Detection is by content (signatures, text keys, the paired file beside it), the
suffix only where a format has no signature (SDAT, DATA, P-file).

Fixed on mrsqc's side (spec2nii not forked):
- SDAT: spec2nii decodes VAX floats in a Python loop (~2 s for 240 x 2048 points); the same decoder, vectorised
  (vendor_write.vax_to_ieee, equal value for value; tests), replaces it for the duration of the call.
- Philips DICOM: spec2nii takes the voxel's orientation from the first two VolumeLocalizationSequence items and
  raises IndexError when a file has fewer (the public Philips 1.5T file in ../shared/data/real has one); QC does
  not use the orientation, so a default affine stands in for that call only.
- Bruker: when acqp's SW_h and the method's PVM_SpecSWH differ by >= 1 Hz spec2nii asks on stdin which to use
  (``input()``), which would hang a daemon or a pipeline: the acquisition's SW_h is answered for it.
- spec2nii prints progress and warnings: captured, never on mrsqc's screen (they can name the input file).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

from ..errors import InputError
from .nifti_mrs import nmrs_recording
from .recording import Chained, Recording

GE_REVISIONS = (5.0, 40.0)  # the P-file's first float is its header revision (rdbm_rev: 9 .. 30.x)


@dataclass(frozen=True)
class Format:
    name: str  # what the user is told ("Philips SDAT/SPAR")
    source: str  # ScanInfo.source
    read: Callable[[Path], tuple[list, list[str]]]  # spec2nii: (NIfTI-MRS objects, their name parts)
    main: Path  # the file whose bytes name the scan (scan_id)


def _sibling(path: Path, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        for cand in (path.with_suffix(s), path.with_suffix(s.upper()), path.with_suffix(s.lower())):
            if cand.is_file():
                return cand
    return None


def _text_head(path: Path, n: int = 4096) -> str:
    with open(path, "rb") as f:
        return f.read(n).decode("latin-1", errors="replace")


def _is_spar(path: Path) -> bool:
    head = _text_head(path)
    return "synthesizer_frequency" in head or ("samples" in head and "sample_frequency" in head)


def _is_list(path: Path) -> bool:
    head = _text_head(path, 65536)
    return "number_of_" in head and ("START OF DATA VECTOR INDEX" in head or "\nSTD " in head)


def _read_sdat(sdat: Path, spar: Path):
    from spec2nii.Philips import philips

    from .vendor_write import vax_to_ieee

    def fast_read_sdat(filename, samples, rows):  # spec2nii's read_sdat, vectorised
        values = vax_to_ieee(Path(filename).read_bytes())
        data = (values[0::2] + 1j * values[1::2]).astype(np.complex64)
        return np.reshape(data, (rows, samples)).T.squeeze()

    with mock.patch.object(philips, "read_sdat", fast_read_sdat):
        return philips.read_sdat_spar_pair(sdat, spar, None, [None, None, None], None, None)


def detect(path: Path) -> Format | None:
    """The spec2nii format of ``path`` (a file or a Bruker folder), or None."""
    if path.is_dir():
        if (path / "method").is_file() and (path / "acqp").is_file() and (path / "fid").is_file():
            return Format("Bruker", "bruker (spec2nii)", _bruker, path / "fid")
        return None
    suffix = path.suffix.lower()
    head = _text_head(path, 512)
    if head.startswith(">>> Begin of header <<<"):
        return Format("Siemens RDA", "rda (spec2nii)", _rda, path)
    if path.name in ("fid", "2dseq", "rawdata.job0") and (path.parent / "method").is_file():
        return Format("Bruker", "bruker (spec2nii)", _bruker, path)
    if _is_spar(path) or suffix == ".sdat":
        sdat = path if suffix == ".sdat" else _sibling(path, (".sdat",))
        spar = path if suffix != ".sdat" else _sibling(path, (".spar",))
        if sdat is None or spar is None:
            missing = "SDAT" if sdat is None else "SPAR"
            raise InputError(path, f"Philips SDAT/SPAR: its {missing} file is not beside it (same name)")
        return Format("Philips SDAT/SPAR", "philips sdat (spec2nii)", lambda _p: _read_sdat(sdat, spar), sdat)
    if suffix in (".data", ".list") or _is_list(path):
        data = _sibling(path, (".data",))
        lst = _sibling(path, (".list",))
        aux = _sibling(path, (".spar",)) or _sibling(path, (".dcm",))
        if data is None or lst is None or aux is None:
            raise InputError(path, "Philips DATA/LIST needs its .data, .list and the scan's SPAR (or DICOM) "
                                   "beside it, with the same name")
        return Format("Philips DATA/LIST", "philips data/list (spec2nii)",
                      lambda _p: _data_list(data, lst, aux), data)
    if suffix == ".7":
        with open(path, "rb") as f:
            raw = f.read(4)
        rev = float(np.frombuffer(raw, "<f4")[0]) if len(raw) == 4 else 0.0
        if not GE_REVISIONS[0] <= rev <= GE_REVISIONS[1]:
            raise InputError(path, f"GE P-file: header revision {rev:g} is not one spec2nii reads")
        return Format("GE P-file", "ge p-file (spec2nii)", _pfile, path)
    return None


def _reason(exc: Exception) -> str:
    """A reader's failure in words that cannot carry header values (a value can be a patient's name)."""
    if isinstance(exc, KeyError):
        return f"header field {exc.args[0]!s:.60} missing" if exc.args else "a header field is missing"
    text = str(exc)
    if text and len(text) <= 160 and not any(q in text for q in "'\"^"):
        return f"{type(exc).__name__}: {text}"
    return type(exc).__name__


def dicom_format(path: Path, manufacturer: str) -> Format | None:
    """Philips (private, pre-standard) and UIH spectroscopy DICOM go through spec2nii."""
    m = manufacturer.lower()
    if m.startswith("uih") or "united imaging" in m:
        return Format("UIH DICOM", "uih dicom (spec2nii)", _uih_dicom, path)
    if "philips" in m:
        return Format("Philips DICOM", "philips dicom (spec2nii)", _philips_dicom, path)
    return None


# spec2nii's readers, imported when called (inside read_spec2nii's captured output and warnings)
def _rda(path: Path):
    from spec2nii.Siemens.rda import convert_rda
    return convert_rda(path, None, False)


def _data_list(data: Path, lst: Path, aux: Path):
    from spec2nii.Philips.philips_data_list import read_data_list_pair
    return read_data_list_pair(data, lst, aux, None)


def _pfile(path: Path):
    from spec2nii.GE.ge_pfile import read_pfile
    return read_pfile(path, None)


def _uih_dicom(path: Path):
    from spec2nii.uih import multi_file_dicom
    return multi_file_dicom([path], None, None, False)


def _philips_dicom(path: Path):
    from spec2nii.nifti_orientation import NIFTIOrient
    from spec2nii.Philips import philips_dcm

    original = philips_dcm._enhanced_dcm_svs_to_orientation

    def orientation(img, verbose=False):
        try:
            return original(img, verbose)
        except (IndexError, AttributeError):  # fewer localisation items than spec2nii expects
            return NIFTIOrient(np.diag([10.0, 10.0, 10.0, 1.0]))

    with mock.patch.object(philips_dcm, "_enhanced_dcm_svs_to_orientation", orientation):
        return philips_dcm.multi_file_dicom([path], None, "DIM_DYN", False)


def _bruker(path: Path):
    import builtins

    from spec2nii.bruker import read_bruker

    fid = path / "fid" if path.is_dir() else path
    mode = {"fid": "FID", "2dseq": "2DSEQ", "rawdata.job0": "RAWDATA"}[fid.name]
    args = SimpleNamespace(file=str(fid), mode=mode, query=[], dump_headers=False, zeropad=False,
                           nospectrum=False, inspect=False, fileout=None, verbose=False)
    def answer(prompt: str = "") -> str:  # spec2nii asks on stdin when SW_h and PVM_SpecSWH differ by >= 1 Hz
        return "1"  # the acquisition's own receiver bandwidth (acqp SW_h): never wait on a terminal

    with mock.patch.object(builtins, "input", answer):
        return read_bruker(args)


def _stored(img) -> tuple[np.ndarray, float, dict]:
    """(data as a NIfTI-MRS file stores them, dwell s, header extension) of a nifti_mrs.NIFTI_MRS."""
    data = np.asarray(img[:]).conj()  # NIFTI_MRS[...] conjugates into FSL-MRS's (= mrsqc's) frame
    while data.ndim < 4:
        data = data[..., None]
    return data, float(img.dwelltime), img.hdr_ext.to_dict()


def _is_water_name(name: str) -> bool:
    n = name.lower()
    return n.endswith(("_ref", "ref", "_w", "water")) or "water_ref" in n or n.endswith("std_1")


def read_spec2nii(fmt: Format, path: Path, role: str | None = None) -> Recording:
    """Read with spec2nii's reader and hand the result to the NIfTI-MRS path. Several outputs (DATA/LIST: the
    metabolite mix and the water mix): the water output's transients come first, as a --water file's do."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images, names = fmt.read(path)
    except InputError:
        raise
    except Exception as exc:  # spec2nii raises whatever its parsing meets  # noqa: BLE001
        raise InputError(path, f"{fmt.name}: spec2nii could not read it ({_reason(exc)})") from None
    named = [(n, img) for n, img in zip(names, images) if not n.upper().endswith("NOI")]
    if not named:
        raise InputError(path, f"{fmt.name}: spec2nii found no spectroscopy data in it")
    with open(fmt.main, "rb") as f:
        scan_id = hashlib.sha256(f.read(65536)).hexdigest()[:16]
    water = [(n, img) for n, img in named if _is_water_name(n)] if len(named) > 1 else []
    metab = [(n, img) for n, img in named if not (water and _is_water_name(n))] or water[:1]
    water = [w for w in water if w is not metab[0]]
    note = f"read through spec2nii ({fmt.name})"
    main = nmrs_recording(*_stored(metab[0][1]), path, scan_id, role=role, source=fmt.source, notes=[note])
    if len(metab) > 1:
        main.notes.append(f"spec2nii made {len(metab)} outputs; checking the first ({metab[0][0]})")
    if not water:
        return main
    ref = nmrs_recording(*_stored(water[0][1]), path, scan_id, source=fmt.source)  # kinds from the signal
    s, w = main.scan, ref.scan
    if (w.n_coils, w.n_points) != (s.n_coils, s.n_points):
        main.notes.append("its water reference has another shape: not used")
        return main
    merged = Chained(ref.transients, main.transients, time_zero=(True, False))
    return Recording(main.scan, merged, main.notes + [f"{len(ref.transients)} water-reference transient(s) from "
                                                      "the same file come first"])
