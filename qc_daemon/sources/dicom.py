"""MRS DICOM reader (pydicom): Siemens private spectroscopy (.IMA) and standard MR Spectroscopy Storage.

- Siemens private (syngo VB/VD/VE): complex float32 in (7FE1,1010); parameters in the CSA image header,
  found through the "SIEMENS CSA HEADER" private creator in group 0029 (never a fixed element number).
- MR Spectroscopy Storage (XA): SpectroscopyData (5600,0020); parameters in the top level and in the
  enhanced functional groups (MRAveragesSequence, MRTimingAndRelatedParametersSequence, MREchoSequence).
- A folder of files is one scan, one transient per file, ordered by InstanceNumber; XA files share one
  acquisition time, so transient times come from TR.
- A single file whose header says it averaged N > 1 transients is checked as one combined transient.
Orientation: IMA data are conjugated to mrsqc's frame (ppm grows with frequency); MR Spectroscopy
Storage data already are in it (verified on the real files in tests/test_readers.py by peak positions).
Only technical fields are read; patient fields are never copied. Scan id = hash of SeriesInstanceUID.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model import WATER_REF, ScanInfo, Transient
from .classify import classify
from .csa import csa_float, parse_csa
from .recording import Recording

MRS_STORAGE = "1.2.840.10008.5.1.4.1.1.4.2"
CSA_CREATOR = "SIEMENS CSA HEADER"


def _read(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__})") from None


def _csa_header(ds, which: int = 0x10) -> dict[str, list[str]]:
    """Parse a CSA header located through its private creator (0029,00xx) = 'SIEMENS CSA HEADER':
    ``which`` 0x10 = the image header, 0x20 = the series header (it holds the ASCII protocol)."""
    for elem in ds.group_dataset(0x0029):
        if elem.tag.element <= 0xFF and str(elem.value).strip() == CSA_CREATOR:
            block = elem.tag.element
            tag = (0x0029, (block << 8) | which)
            if tag in ds:
                try:
                    return parse_csa(ds[tag].value)
                except ValueError:
                    return {}
    return {}


def _csa_image_header(ds) -> dict[str, list[str]]:
    return _csa_header(ds, 0x10)


_ASCCONV_NUMBER = r"^\s*{key}\s*=\s*([-+0-9.eE]+)"


def protocol_number(ds, key: str) -> float | None:
    """A number from the ASCII protocol (MrPhoenixProtocol, or MrProtocol of syngo VA) in the CSA series
    header, e.g. ``sSpecPara.lVectorSize`` or ``sRXSPEC.alDwellTime[0]``; None when absent."""
    import re

    series = _csa_header(ds, 0x20)
    text = "\n".join(v for name in ("MrPhoenixProtocol", "MrProtocol") for v in series.get(name, []))
    m = re.search(_ASCCONV_NUMBER.format(key=re.escape(key)), text, flags=re.M)
    return float(m.group(1)) if m else None


def ima_points(ds, csa: dict[str, list[str]]) -> tuple[int, str]:
    """(points per FID, where it was found) of a Siemens private spectroscopy file. Newer CSA headers keep it
    in DataPointColumns; older ones (syngo VA/VB) in SpectroscopyAcquisitionDataColumns, or only in the ASCII
    protocol as sSpecPara.lVectorSize. 0 when no header has it."""
    for name in ("DataPointColumns", "SpectroscopyAcquisitionDataColumns"):
        v = csa_float(csa, name)
        if v and v > 0:
            return int(v), f"CSA {name}"
    v = getattr(ds, "SpectroscopyAcquisitionDataColumns", None)
    if v:
        return int(v), "(0018,9127)"
    v = protocol_number(ds, "sSpecPara.lVectorSize")
    if v and v > 0:
        return int(v), "protocol sSpecPara.lVectorSize"
    return 0, ""


def _functional(ds, seq_name: str, attr: str):
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        g = getattr(ds, groups, None)
        if g:
            item = g[0]
            seq = getattr(item, seq_name, None)
            if seq and hasattr(seq[0], attr):
                return getattr(seq[0], attr)
    return None


def _one_file(path: Path, ds) -> tuple[dict, np.ndarray]:
    """(parameters, complex64 FID of shape (1, points)) of one spectroscopy DICOM file."""
    sop = str(getattr(ds, "SOPClassUID", ""))
    if sop == MRS_STORAGE or (0x5600, 0x0020) in ds:
        if (0x5600, 0x0020) not in ds:
            raise InputError(path, "MR Spectroscopy Storage without SpectroscopyData (5600,0020)")
        raw = np.asarray(ds[0x5600, 0x0020].value, dtype="<f4") if not isinstance(
            ds[0x5600, 0x0020].value, (bytes, bytearray)) else np.frombuffer(ds[0x5600, 0x0020].value, "<f4")
        cols = int(getattr(ds, "DataPointColumns", 0) or 0)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if str(getattr(ds, "SignalDomainColumns", "TIME")) != "TIME":
            raise InputError(path, "spectroscopy data are not in the time domain")
        f0_mhz = float(getattr(ds, "TransmitterFrequency", 0) or 0)
        sw = float(getattr(ds, "SpectralWidth", 0) or 0)
        te = _functional(ds, "MREchoSequence", "EffectiveEchoTime")
        tr = _functional(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
        avgs = _functional(ds, "MRAveragesSequence", "NumberOfAverages")
        params = {"f0_hz": f0_mhz * 1e6, "dwell_s": 1.0 / sw if sw else 0.0, "te_ms": te, "tr_ms": tr,
                  "averages": avgs, "sequence": str(getattr(ds, "PulseSequenceName", "") or "").lstrip("*"),
                  "nucleus": str(getattr(ds, "ResonantNucleus", "1H") or "1H"), "format": "dicom mrs-storage"}
        if cols <= 0 or raw.size != 2 * cols * frames:
            raise InputError(path, f"SpectroscopyData holds {raw.size} floats, expected 2 x {cols} x {frames}")
        data = (raw[0::2] + 1j * raw[1::2]).astype(np.complex64).reshape(frames, cols)
        # MR Spectroscopy Storage is already in mrsqc's frame (checked on the 7T XA60 file:
        # NAA 2.008, Cr 3.007, Cho 3.191 ppm as stored); the private IMA format below is conjugated.
        return params, data
    if (0x7FE1, 0x1010) in ds:
        csa = _csa_image_header(ds)
        if not csa:
            raise InputError(path, "Siemens spectroscopy DICOM without a CSA image header")
        buf = ds[0x7FE1, 0x1010].value
        raw = np.frombuffer(bytes(buf), dtype="<f4")
        cols, where = ima_points(ds, csa)
        if cols <= 0:
            raise InputError(path, "no points count in the header (looked in CSA DataPointColumns and "
                                   "SpectroscopyAcquisitionDataColumns, (0018,9127), protocol sSpecPara.lVectorSize)")
        if raw.size % (2 * cols):
            raise InputError(path, f"(7FE1,1010) holds {raw.size} floats, not a multiple of 2 x {cols} points "
                                   f"({where})")
        data = (raw[0::2] + 1j * raw[1::2]).astype(np.complex64).reshape(-1, cols)
        # RealDwellTime (ns) in the CSA image header; older headers: the ADC dwell of the protocol (ns)
        dwell_ns = csa_float(csa, "RealDwellTime") or protocol_number(ds, "sRXSPEC.alDwellTime[0]")
        params = {"f0_hz": (csa_float(csa, "ImagingFrequency") or float(getattr(ds, "ImagingFrequency", 0) or 0))
                  * 1e6,
                  "dwell_s": dwell_ns * 1e-9 if dwell_ns else 0.0,
                  "te_ms": csa_float(csa, "EchoTime") or getattr(ds, "EchoTime", None),
                  "tr_ms": csa_float(csa, "RepetitionTime") or getattr(ds, "RepetitionTime", None),
                  "averages": csa_float(csa, "NumberOfAverages") or getattr(ds, "NumberOfAverages", None),
                  "sequence": (csa.get("SequenceName") or [""])[0].lstrip("*"),
                  "nucleus": (csa.get("ImagedNucleus") or ["1H"])[0], "format": "dicom siemens-private"}
        return params, data.conj()
    modality = getattr(ds, "Modality", "?")
    raise InputError(path, f"no spectroscopy data (modality {modality}, SOP class {sop or '?'})")


def _identity(ds, prm: dict, data: np.ndarray) -> dict[str, str]:
    """What every file of one scan shares, in words (series, f0, spectral width, points, coils)."""
    sw = 1.0 / prm["dwell_s"] if prm["dwell_s"] else 0.0
    return {"series": str(getattr(ds, "SeriesInstanceUID", "") or "?"),
            "f0": f"{prm['f0_hz'] / 1e6:.4f} MHz", "spectral width": f"{sw:.1f} Hz",
            "points": str(data.shape[1]), "coils": "1"}


def _refuse_mixed(folder: Path, read: list) -> None:
    """Refuse a folder whose files are not one scan, naming the first odd file and how it differs from the
    majority (several scans in one folder: check each scan's files on their own)."""
    from collections import Counter

    ids = [_identity(ds, prm, data) for _, ds, prm, data in read]
    for key in ("series", "f0", "spectral width", "points", "coils"):
        counts = Counter(i[key] for i in ids)
        if len(counts) > 1:
            usual, n_usual = counts.most_common(1)[0]
            odd = next(k for k, i in enumerate(ids) if i[key] != usual)
            what = "another series" if key == "series" else f"{key} {ids[odd][key]}"
            raise InputError(read[odd][0], f"{what}, but {n_usual} of the {len(ids)} files in {folder.name} have "
                                           f"{'one series' if key == 'series' else usual}: one folder must hold "
                                           "one scan (check each scan's files on their own)")


def read_dicom(path: str | Path, role: str | None = None) -> Recording:
    """Read a spectroscopy DICOM file or a folder of per-transient files as a :class:`Recording`."""
    path = Path(path)
    skipped: list[str] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(path, "folder holds no files")
        datasets = []
        for p in files:
            try:
                datasets.append((p, _read(p)))
            except InputError:
                skipped.append(p.name)  # a .rda, a text note, a thumbnail: not part of the DICOM series
        if not datasets:
            raise InputError(path, f"no readable DICOM file among its {len(files)} files")
        datasets.sort(key=lambda pd: int(getattr(pd[1], "InstanceNumber", 0) or 0))
    elif path.is_file():
        if path.stat().st_size == 0:
            raise InputError(path, "file is empty")
        datasets = [(path, _read(path))]
    else:
        raise InputError(path, "file not found")
    read = [(p, ds, *_one_file(p, ds)) for p, ds in datasets]
    if len(read) > 1:
        _refuse_mixed(path, read)
    params = read[0][2]
    fids = [data for *_, data in read]
    src = datasets[0][0]
    nucleus = str(params["nucleus"]).strip()
    if nucleus not in ("1H", ""):
        raise InputError(src, f"unsupported nucleus {nucleus!r}: mrsqc checks 1H spectroscopy")
    if not params["f0_hz"] or not params["dwell_s"]:
        raise InputError(src, "header lacks the spectrometer frequency or the spectral width/dwell time")
    data = np.concatenate(fids, axis=0)  # transients x points
    if not np.isfinite(data).all():
        raise InputError(src, "data contain NaN or Inf")
    if not np.any(data):
        raise InputError(src, "data are all zero")
    averages = int(float(params["averages"] or 1))
    combined = data.shape[0] == 1 and averages > 1
    tr_ms = float(params["tr_ms"]) if params["tr_ms"] else None
    ds0 = datasets[0][1]
    uid = str(getattr(ds0, "SeriesInstanceUID", "") or getattr(ds0, "SOPInstanceUID", "") or src.name)
    found = None if role == "water" else classify(data[:, None, :], float(params["dwell_s"]),
                                                  float(params["f0_hz"]) / 1e6)
    kinds = [WATER_REF] * data.shape[0] if found is None else found.kinds
    scan = ScanInfo(
        scan_id=hashlib.sha256(uid.encode()).hexdigest()[:16], f0_hz=float(params["f0_hz"]),
        dwell_s=float(params["dwell_s"]), n_points=int(data.shape[1]), n_coils=1,
        planned_averages=data.shape[0] if combined else max(data.shape[0], 1),
        te_ms=float(params["te_ms"]) if params["te_ms"] else None, tr_ms=tr_ms,
        sequence=str(params["sequence"]), source=str(params["format"]), combined=combined)
    step = (tr_ms or 0.0) / 1000.0
    transients = [Transient(index=i, average=i, set=0, kind=kinds[i], time_s=i * step,
                            data=data[i:i + 1].astype(np.complex64)) for i in range(data.shape[0])]
    notes = []
    if skipped:
        notes.append(f"skipped {len(skipped)} file(s) that are not DICOM: {', '.join(skipped[:5])}"
                     + (" ..." if len(skipped) > 5 else ""))
    if combined:
        notes.append(f"file holds {averages} averages combined on the scanner: checked as one transient; "
                     "per-transient checks (drift, motion) need per-transient data")
    if found is not None and found.note():
        notes.append(found.note())
    return Recording(scan=scan, transients=transients, notes=notes)
