"""Writers of simulated vendor files that mrsqc reads through spec2nii (spec2nii_formats.py): Philips SDAT/SPAR and
DATA/LIST, Siemens RDA, UIH DICOM, GE P-file. Each writes what the scanner writes (the fields spec2nii's reader
needs, a fake patient's name and birth date where the format has them), so a round trip tests the reader on the
format, not on mrsqc's own assumptions. Input FIDs are in mrsqc's frame (FFT ascending = ppm ascending, as
FSL-MRS's); each format's own frame is what spec2nii's reader expects of it (it conjugates SDAT and DATA/LIST into
the NIfTI-MRS frame, which is the conjugate of mrsqc's, and copies RDA as it is):

- SDAT: VAX F floats (little-endian 16-bit words swapped; value = IEEE value / 4), one row per FID, complex
  interleaved, in mrsqc's frame.
- RDA: a text header between ``>>> Begin of header <<<`` and ``>>> End of header <<<`` (CRLF lines), then
  float64 complex interleaved, the conjugate of mrsqc's frame; SVS only, one (averaged) FID.
- DATA/LIST: float32 complex vectors in mrsqc's frame, indexed by the .list.
- UIH DICOM and GE P-file: the conjugate of mrsqc's frame (spec2nii copies them as they are).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model import ScanInfo
from .twix_write import FakePatient


def ieee_to_vax(values: np.ndarray) -> bytes:
    """float32 values as VAX F-float bytes (zero stays zero)."""
    x = np.ascontiguousarray(values, dtype="<f4") * np.float32(4.0)
    u = x.view("<u4")
    vax = ((u & 0xFFFF) << 16) | (u >> 16)
    vax[x == 0] = 0
    return vax.astype("<u4").tobytes()


def vax_to_ieee(raw: bytes) -> np.ndarray:
    """VAX F-float bytes as float32 (the vectorised form of spec2nii's VESPA decoder; exponent 0 -> 0)."""
    u = np.frombuffer(raw, dtype="<u4")
    ieee = ((u & 0xFFFF) << 16) | (u >> 16)
    out = ieee.view("<f4") / np.float32(4.0)
    out[(ieee & 0x7F800000) == 0] = 0.0
    return out


def write_sdat_spar(stem: str | Path, scan: ScanInfo, fids: np.ndarray, patient: FakePatient | None = None,
                    voxel_mm: tuple[float, float, float] = (10.0, 10.0, 11.0)) -> tuple[Path, Path]:
    """Write ``fids`` (rows x points, one coil: a scanner's per-transient export or one averaged row) as
    ``stem.SDAT`` + ``stem.SPAR``."""
    patient = patient or FakePatient()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fids = np.atleast_2d(np.asarray(fids))
    rows, samples = fids.shape
    inter = np.empty((rows, samples, 2), dtype=np.float32)
    inter[..., 0] = fids.real
    inter[..., 1] = fids.imag
    sdat = stem.with_suffix(".SDAT")
    sdat.write_bytes(ieee_to_vax(inter.reshape(-1)))
    lines = {
        "examination_name": "mrsqc simulation", "scan_id": scan.sequence or "PRESS", "scan_date": "2026.12.03",
        "patient_name": patient.name, "patient_birth_date": patient.birth_date, "patient_position": "head_first",
        "patient_orientation": "supine", "samples": samples, "rows": rows,
        "synthesizer_frequency": int(round(scan.f0_hz)), "offset_frequency": 0, "sample_frequency": 1.0 / scan.dwell_s,
        "echo_nr": 1, "mix_number": 1, "nucleus": "1H", "t0_mu1_direction": 0, "echo_time": scan.te_ms or 30.0,
        "repetition_time": scan.tr_ms or 2000.0, "averages": rows, "volume_selection_enable": "yes",
        "spectrum_inversion_time": 0, "ap_size": voxel_mm[1], "lr_size": voxel_mm[0], "cc_size": voxel_mm[2],
        "ap_off_center": -12.0, "lr_off_center": 0.5, "cc_off_center": -20.0, "ap_angulation": 0.0,
        "lr_angulation": 0.0, "cc_angulation": 0.0, "equipment_sw_verions": "5.6.1",
    }
    text = "!-----------------------------------------------\n! mrsqc simulated SPAR\n"
    text += "".join(f"{k} : {v}\n" for k, v in lines.items())
    spar = stem.with_suffix(".SPAR")
    spar.write_text(text, encoding="latin-1")
    return sdat, spar


def write_rda(path: str | Path, scan: ScanInfo, fid: np.ndarray, patient: FakePatient | None = None,
              averages: int = 1) -> Path:
    """Write one (averaged) FID as a Siemens RDA file."""
    patient = patient or FakePatient()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fid = np.asarray(fid, dtype=np.complex128).reshape(-1)
    fields = {
        "PatientName": patient.name, "PatientID": patient.patient_id, "PatientSex": "O",
        "PatientBirthDate": patient.birth_date, "StudyDate": "20261203", "SeriesDescription": "svs_se_30",
        "InstitutionName": "mrsqc", "ModelName": "Prisma", "DeviceSerialNumber": "0",
        "SoftwareVersion[0]": "syngo MR XA30", "TransmitCoil": "Body", "SequenceName": scan.sequence or "svs_se",
        "ProtocolName": "svs_se_30", "PatientPosition": "HFS", "TE": f"{scan.te_ms or 30.0:.6f}",
        "TR": f"{scan.tr_ms or 2000.0:.6f}", "TI": "0.000000", "TM": "0.000000", "FlipAngle": "90.000000",
        "NumberOfAverages": str(averages), "MRFrequency": f"{scan.f0_mhz:.6f}", "Nucleus": "1H",
        "VectorSize": str(fid.size), "CSIMatrixSize[0]": "1", "CSIMatrixSize[1]": "1", "CSIMatrixSize[2]": "1",
        "DwellTime": f"{scan.dwell_s * 1e6:.6f}", "PixelSpacingRow": "20.000000", "PixelSpacingCol": "20.000000",
        "SliceThickness": "20.000000", "VOIPositionSag": "0.000000", "VOIPositionCor": "-12.000000",
        "VOIPositionTra": "-20.000000", "RowVector[0]": "1.000000", "RowVector[1]": "0.000000",
        "RowVector[2]": "0.000000", "ColumnVector[0]": "0.000000", "ColumnVector[1]": "1.000000",
        "ColumnVector[2]": "0.000000",
    }
    head = ">>> Begin of header <<<\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    head += ">>> End of header <<<\r\n"
    inter = np.empty((fid.size, 2), dtype="<f8")
    inter[:, 0] = fid.real
    inter[:, 1] = -fid.imag  # the conjugate
    path.write_bytes(head.encode("latin-1") + inter.tobytes())
    return path


LIST_COLUMNS = ("typ", "mix", "dyn", "card", "echo", "loca", "chan", "extr1", "extr2", "kx", "ky", "kz", "aver",
                "sign", "rf", "grad", "enc", "rtop", "rr", "size", "offset")


def write_data_list(stem: str | Path, scan: ScanInfo, metab: np.ndarray, water: np.ndarray | None = None,
                    patient: FakePatient | None = None, noise_rows: int = 2,
                    seed: int = 0) -> tuple[Path, Path, Path]:
    """Write a Philips DATA/LIST export: ``metab`` (transients x coils x points) as STD mix 0 (one vector per
    coil and average), ``water`` as STD mix 1, ``noise_rows`` NOI vectors per coil; float32 complex; and the
    scan's SPAR beside them (spec2nii's auxiliary file)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_coils, n_points = metab.shape[1:]
    size = n_points * 8
    rows, blocks = [], []

    def add(typ: str, mix: int, aver: int, chan: int, vec: np.ndarray) -> None:
        values = dict.fromkeys(LIST_COLUMNS, 0)
        values.update(typ=typ, mix=mix, aver=aver, chan=chan, size=size, offset=size * len(blocks))
        rows.append("  ".join(str(values[c]) for c in LIST_COLUMNS))
        inter = np.empty((n_points, 2), dtype="<f4")
        inter[:, 0], inter[:, 1] = vec.real, vec.imag
        blocks.append(inter.tobytes())

    for c in range(n_coils):
        for k in range(noise_rows):
            add("NOI", 0, k, c, (rng.standard_normal(n_points) + 1j * rng.standard_normal(n_points)) * 1e-3)
    for mix, part in ((0, metab), (1, water)):
        if part is None:
            continue
        for a, fid in enumerate(part):
            for c in range(n_coils):
                add("STD", mix, a, c, fid[c])
    head = ["# === mrsqc simulated .list ===", "# === START OF DATA VECTOR INDEX ===",
            "# " + "  ".join(LIST_COLUMNS)]
    lst = stem.with_suffix(".list")
    lst.write_text("\n".join(head + rows + ["# === END OF DATA VECTOR INDEX ==="]) + "\n")
    data = stem.with_suffix(".data")
    data.write_bytes(b"".join(blocks))
    _, spar = write_sdat_spar(stem, scan, metab[:, 0], patient)
    stem.with_suffix(".SDAT").unlink()  # only the SPAR is the auxiliary file
    return data, lst, spar


def write_uih_dicom(path: str | Path, scan: ScanInfo, metab: np.ndarray, water: np.ndarray,
                    patient: FakePatient | None = None, averages: int = 1) -> Path:
    """Write a UIH single-voxel spectroscopy DICOM the way spec2nii's UIH reader takes it: the (averaged)
    water-suppressed FID in SpectroscopyData (5600,0020), the water reference in the private (0065,FF07), both
    float32 complex in the conjugate of mrsqc's frame; orientation from the image-plane tags."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .dicom import MRS_STORAGE

    patient = patient or FakePatient()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def packed(fid: np.ndarray) -> bytes:
        inter = np.empty(2 * fid.shape[-1], dtype="<f4")
        inter[0::2], inter[1::2] = fid.real, -fid.imag  # the conjugate
        return inter.tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRS_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["mrsqc uih", scan.scan_id])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRS_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["mrsqc uih series", scan.scan_id])
    ds.Modality = "MR"
    ds.Manufacturer = "UIH"
    ds.ManufacturerModelName = "uMR 790"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = "R005"
    ds.InstitutionName = "mrsqc"
    ds.InstitutionAddress = "nowhere"
    ds.SeriesDescription = "svs_se_30"
    ds.ProtocolName = "svs_se_30"
    ds.SequenceName = scan.sequence or "svs_se"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = "O"
    ds.PatientWeight = 70
    ds.PatientPosition = "HFS"
    ds.Rows, ds.Columns = 1, 1
    ds.NumberOfFrames = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, -12.0, -20.0]
    ds.PixelSpacing = [10.0, 10.0]
    ds.SliceThickness = 11.0
    ds.EchoTime = scan.te_ms or 30.0
    ds.RepetitionTime = scan.tr_ms or 2000.0
    ds.FlipAngle = 90
    ds.NumberOfAverages = averages
    ds.TransmitterFrequency = scan.f0_hz / 1e6
    ds.ResonantNucleus = "1H"
    ds.SpectralWidth = 1.0 / scan.dwell_s
    ds.DataPointRows = 1
    ds.DataPointColumns = int(metab.shape[-1])
    ds.SpectroscopyAcquisitionDataColumns = int(metab.shape[-1])
    ds.SpectroscopyData = packed(metab)
    ds.add_new(0x0065FF07, "OB", packed(water))
    ds.add_new(0x0065FF06, "DS", ["0", "0", "1"])
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


GE_REVISION = 26.002  # MR26 (DV26); spec2nii checks the data offset against the revision's known value
GE_DATA_OFFSET = 213684


def write_ge_pfile(path: str | Path, scan: ScanInfo, metab: np.ndarray, water: np.ndarray,
                   patient: FakePatient | None = None) -> Path:
    """Write a GE PROBE-P P-file (``*.7``, header revision 26.002) as spec2nii's reader takes it: the rdb header
    laid out by spec2nii's own field table (``get_pfile_hdr_fields``), then per coil one dummy FID followed by the
    unsuppressed (``water``) and the suppressed (``metab``) transients, int32 complex interleaved, in the
    conjugate of mrsqc's frame (spec2nii copies P-file data into the NIfTI-MRS frame as they are).
    ``metab``/``water``: transients x coils x points; 16 / nex water transients (nex = 8: 2)."""
    import ctypes as ct

    from spec2nii.GE.ge_hdr_fields import get_pfile_hdr_fields

    patient = patient or FakePatient()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_water, n_coils, n_points = water.shape
    nex = 16 // n_water
    if nex * n_water != 16:
        raise ValueError("a PROBE-P P-file holds 16 / nex water transients: give 1, 2, 4, 8 or 16")

    class Header(ct.LittleEndianStructure):
        _pack_ = 1
        _fields_ = get_pfile_hdr_fields(GE_REVISION)

    h = Header()
    fields = {
        "rhr_rh_rdbm_rev": GE_REVISION, "rhr_rdb_hdr_off_data": GE_DATA_OFFSET, "rhr_rh_point_size": 4,
        "rhr_rh_frame_size": n_points, "rhr_rh_file_contents": 0, "rhr_spectral_width": 1.0 / scan.dwell_s,
        "rhr_rh_ps_mps_freq": int(round(scan.f0_hz * 10)), "rhe_magstrength": int(round(scan.f0_hz / 42.577e6 * 1e4)),
        "rhi_te": int((scan.te_ms or 30.0) * 1000), "rhi_tr": int((scan.tr_ms or 2000.0) * 1000), "rhi_ti": 0,
        "rhi_mr_flip": 90, "rhi_nex": nex, "rhi_numecho": 1, "rhi_user4": float(metab.shape[0] * nex),
        "rhi_freq_dir": 1, "rhi_user19": 0.0, "rhi_dfov": 240.0, "rhi_scanspacing": 0.0,
        "rhi_user8": 10.0, "rhi_user9": 10.0, "rhi_user10": 11.0,
        "rhi_user11": 0.0, "rhi_user12": -12.0, "rhi_user13": -20.0,
        "rhi_tlhc_R": -120.0, "rhi_tlhc_A": 120.0, "rhi_tlhc_S": 0.0, "rhi_trhc_R": 120.0, "rhi_trhc_A": 120.0,
        "rhi_trhc_S": 0.0, "rhi_brhc_R": 120.0, "rhi_brhc_A": -120.0, "rhi_brhc_S": 0.0,
        "rhr_rh_raw_pass_size": n_coils * (n_water + metab.shape[0] + 1) * n_points * 2 * 4,
        "rhr_rh_dab[0]_start_rcv": 0, "rhr_rh_dab[0]_stop_rcv": n_coils - 1,
    }
    known = {f[0] for f in Header._fields_}
    missing = [n for n in fields if n not in known]
    if missing:  # a ctypes structure takes any attribute silently: a misspelt field would never be written
        raise ValueError(f"GE header revision {GE_REVISION} has no field {', '.join(missing)}")
    for name, value in fields.items():
        setattr(h, name, value)
    text = {"rhi_psdname": b"probe-p", "rhs_se_desc": b"PROBE-P 30", "rhe_patname": patient.name.encode(),
            "rhe_dateofbirth": patient.birth_date.encode(), "rhe_patid": patient.patient_id.encode(),
            "rhe_ex_sysid": b"mrsqc", "rhe_uniq_sys_id": b"0", "rhe_ex_verscre": b"26", "rhe_hospname": b"mrsqc",
            "rhi_cname": b"HNU"}
    for name, value in text.items():
        if name not in known:
            raise ValueError(f"GE header revision {GE_REVISION} has no field {name}")
        setattr(h, name, value)
    head = bytes(h).ljust(GE_DATA_OFFSET, b"\0")
    series = np.concatenate([water, metab], axis=0)  # time points x coils x points
    scale = 2.0 ** 30 / max(float(np.abs(series).max()), 1e-30)  # int32, a factor 2 of headroom
    blocks = []
    for c in range(n_coils):
        fids = np.concatenate([np.zeros((1, n_points), complex), series[:, c, :]])  # the dummy FID first
        inter = np.empty(fids.shape + (2,), dtype="<i4")
        inter[..., 0] = np.round(fids.real * scale)
        inter[..., 1] = np.round(-fids.imag * scale)  # the conjugate
        blocks.append(inter.tobytes())
    path.write_bytes(head + b"".join(blocks))
    return path


def _jcamp(params: dict) -> str:
    """Bruker JCAMP-DX parameter text: ``##$NAME=value``; lists and arrays as ``( shape )`` then the values."""
    lines = ["##TITLE=Parameter List, mrsqc simulation", "##JCAMPDX=4.24", "##DATATYPE=Parameter Values"]
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            shape = ", ".join(str(s) for s in value.shape)
            lines += [f"##${key}=( {shape} )", " ".join(f"{x:g}" for x in value.ravel())]
        elif isinstance(value, (list, tuple)):
            lines += [f"##${key}=( {len(value)} )", " ".join(str(x) for x in value)]
        else:
            lines.append(f"##${key}={value}")
    return "\n".join(lines + ["##END="]) + "\n"


def write_bruker(folder: str | Path, scan: ScanInfo, fids: np.ndarray, patient: FakePatient | None = None,
                 expno: int = 1, scale: float | None = None) -> Path:
    """Write a ParaVision 6.0.1 STEAM single-voxel scan as brukerapi and spec2nii read it: ``<folder>/subject``
    and the scan folder ``<folder>/<expno>`` with ``acqp``, ``method`` and ``fid`` (one channel, one FID per
    repetition, int32 complex interleaved, in mrsqc's frame: spec2nii conjugates it into the NIfTI-MRS frame).
    ``fids``: transients x points (coil-combined, as ParaVision stores spectroscopy); ``scale``: the receiver
    gain (int32 units per unit; default: the largest value at 2^30). Returns the scan folder."""
    patient = patient or FakePatient()
    folder = Path(folder)
    scan_dir = folder / str(expno)
    scan_dir.mkdir(parents=True, exist_ok=True)
    fids = np.atleast_2d(np.asarray(fids))
    n_t, n = fids.shape
    sw = 1.0 / scan.dwell_s
    acqp = {"ACQ_sw_version": "<PV 6.0.1>", "PULPROG": "<STEAM.ppg>", "ACQ_method": "<Bruker:STEAM>", "ACQ_dim": 1,
            "ACQ_dim_desc": ["Spectroscopic"], "ACQ_size": [2 * n], "NR": n_t, "NI": 1,
            "GO_raw_data_format": "GO_32BIT_SGN_INT", "BYTORDA": "little", "GO_block_size": "continuous",
            "ACQ_word_size": "_32_BIT", "SW_h": sw, "BF1": scan.f0_mhz, "NUCLEUS": "<1H>"}
    method = {"Method": "<Bruker:STEAM>", "PVM_EchoTime": scan.te_ms or 20.0,
              "PVM_RepetitionTime": scan.tr_ms or 2500.0, "PVM_SpecSWH": [sw], "PVM_DigShift": 0, "PVM_DigNp": n,
              "PVM_SpecMatrix": [n], "PVM_FrqWorkOffsetPpm": [0.0] * 8, "PVM_FrqRef": [scan.f0_mhz] * 8,
              "PVM_EncNReceivers": 1, "PVM_VoxArrGradOrient": np.eye(3).reshape(1, 3, 3),
              "PVM_VoxArrPosition": np.zeros((1, 3)), "PVM_VoxArrSize": np.array([[3.0, 3.0, 3.0]])}
    (scan_dir / "acqp").write_text(_jcamp(acqp))
    (scan_dir / "method").write_text(_jcamp(method))
    (folder / "subject").write_text(_jcamp({"SUBJECT_id": f"<{patient.name}>", "SUBJECT_study_nr": 1,
                                            "SUBJECT_name_string": f"<{patient.name}>",
                                            "SUBJECT_dbirth": f"<{patient.birth_date}>"}))
    scale = scale or 2.0 ** 30 / max(float(np.abs(fids).max()), 1e-30)
    inter = np.empty((n_t, n, 2), dtype="<i4")
    inter[..., 0] = np.round(fids.real * scale)
    inter[..., 1] = np.round(fids.imag * scale)
    (scan_dir / "fid").write_bytes(inter.tobytes())
    return scan_dir
