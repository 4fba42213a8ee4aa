"""Write simulated scans as Siemens VD/VE twix files (twixtools ``write_twix`` with a header built here).

The header holds the XProtocol buffers (Config, Dicom, Meas) and the ASCCONV protocol (MeasYaps) with the
fields mrsqc and other readers use: frequency, dwell, TE, TR, averages, sequence, vector size, voxel. Data
are written the way a scanner does: 2x oversampled, with CutOff samples before and after (in mrsqc's frame, as a
twix stores it).
Fake patient fields can be filled in so tests can prove that they never leak.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model import WATER_REF, ScanInfo, Transient


@dataclass
class FakePatient:
    name: str = "Doe^Jane"
    patient_id: str = "PID-4711"
    birth_date: str = "19700101"


def _xprot(params: dict) -> str:
    lines = ["<XProtocol> ", "{", '  <ParamMap.""> ', "  {"]
    for k, v in params.items():
        if isinstance(v, str):
            lines.append(f'    <ParamString."{k}">  {{ "{v}"  }}')
        elif isinstance(v, int):
            lines.append(f'    <ParamLong."{k}">  {{ {v}  }}')
        else:
            lines.append(f'    <ParamDouble."{k}">  {{ <Precision> 16  {v:.16g}  }}')
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def _ascconv(d: dict) -> str:
    body = "".join(f"{k}\t = \t{v}\n" for k, v in d.items())
    return ("### ASCCONV BEGIN object=MrProtDataImpl@MrProtocolData version=51130001 ###\n" + body
            + "### ASCCONV END ###\n")


def build_header(scan: ScanInfo, patient: FakePatient, spectroscopy: bool = True, meas_uid: int = 101) -> bytes:
    """Bytes of a twix measurement header: uint32 length, uint32 buffer count, then named buffers."""
    yaps = {
        "tSequenceFileName": f'"%SiemensSeq%\\{scan.sequence}"',
        "tProtocolName": '"mrsqc_sim"',
        "lAverages": scan.planned_averages,
        "alTR[0]": int(round((scan.tr_ms or 2000.0) * 1000)),
        "alTE[0]": int(round((scan.te_ms or 30.0) * 1000)),
        "sTXSPEC.asNucleusInfo[0].tNucleus": f'"{scan.nucleus}"',
        "sTXSPEC.asNucleusInfo[0].lFrequency": int(round(scan.f0_hz)),
        "sRXSPEC.alDwellTime[0]": int(round(scan.dwell_s / 2 * 1e9)),
    }
    if spectroscopy:
        yaps["sSpecPara.lVectorSize"] = scan.n_points
        vox = scan.voxel_mm or (10.0, 10.0, 11.0)
        yaps.update({"sSpecPara.sVoI.dReadoutFOV": vox[0], "sSpecPara.sVoI.dPhaseFOV": vox[1],
                     "sSpecPara.sVoI.dThickness": vox[2]})
    config = {"PatientID": patient.patient_id, "PatientBirthDay": patient.birth_date,
              "tPatientName": patient.name, "PatientName": patient.name, "MeasUID": meas_uid,
              "ExamMemoryUID": "mrsqc-sim-" + scan.scan_id, "SequenceString": scan.sequence,
              "Frequency": int(round(scan.f0_hz)), "DwellTime": int(round(scan.dwell_s / 2 * 1e9))}
    dicom = {"SoftwareVersions": "syngo MR E11", "Manufacturer": "SIEMENS", "tPatientName": patient.name,
             "lFrequency": int(round(scan.f0_hz))}
    meas = {"tPatientName": patient.name, "PatientID": patient.patient_id, "PatientBirthDay": patient.birth_date,
            "tICEProgramName": "%SiemensIceProgs%\\IcePrgSpectroscopy" if spectroscopy else "IceProgram2D"}
    buffers = [("Config", _xprot(config)), ("Dicom", _xprot(dicom)), ("Meas", _xprot(meas)),
               ("MeasYaps", _ascconv(yaps)), ("Phoenix", _ascconv(yaps))]
    body = b"".join(name.encode() + b"\0" + struct.pack("<I", len(text.encode("latin-1")) + 1)
                    + text.encode("latin-1") + b"\0" for name, text in buffers)
    hdr_len = 8 + len(body)
    hdr_len += (-hdr_len) % 32
    return (struct.pack("<2I", hdr_len, len(buffers)) + body).ljust(hdr_len, b"\0")


def oversample(fid: np.ndarray, factor: int = 2) -> np.ndarray:
    """Inverse of the reader's oversampling removal: zero-pad the spectrum (coils x points) by ``factor``."""
    n = fid.shape[-1]
    spec = np.fft.fftshift(np.fft.fft(fid, axis=-1), axes=-1)
    pad = (factor - 1) * n // 2
    spec = np.pad(spec, [(0, 0)] * (spec.ndim - 1) + [(pad, (factor - 1) * n - pad)])
    return np.fft.ifft(np.fft.ifftshift(spec, axes=-1), axis=-1) * factor


def _raw_blocks(transients: list[Transient], cutoff: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Scanner-style raw data per transient: 2x oversampled, CutOff samples of noise at both ends."""
    pre, post = cutoff
    out = []
    for tr in transients:
        raw = oversample(np.asarray(tr.data, dtype=np.complex128))
        noise_sd = float(np.std(raw[:, -raw.shape[1] // 8:])) or 1e-6
        rows = raw.shape[0]
        edge = [noise_sd * (rng.standard_normal((rows, k)) + 1j * rng.standard_normal((rows, k))) for k in (pre, post)]
        out.append(np.concatenate([edge[0], raw, edge[1]], axis=1).astype(np.complex64))
    return out


def write_twix(path: str | Path, scan: ScanInfo, transients: list[Transient], patient: FakePatient | None = None,
               cutoff: tuple[int, int] = (12, 20), spectroscopy: bool = True, seed: int = 0,
               extra_blocks: bool = False, leading_measurement: bool = False) -> Path:
    """Write transients (mrsqc's frame, coils x points) as a VE twix file; returns the path.

    ``extra_blocks``: a noise-adjust block first and a PHASCOR block after each transient (must be skipped).
    ``leading_measurement``: a multi-raid file whose first measurement is a short unrelated one (2 coils).
    """
    import twixtools
    import twixtools.mdb

    path = Path(path)
    if path.exists():
        path.unlink()
    patient = patient or FakePatient()
    rng = np.random.default_rng(seed)
    pre, post = cutoff
    hdr = build_header(scan, patient, spectroscopy)
    mdbs = []
    blocks = _raw_blocks(transients, cutoff, rng)
    if extra_blocks:
        noise = twixtools.mdb.Mdb_local((rng.standard_normal(blocks[0].shape) + 0j).astype(np.complex64))
        noise.add_flag("NOISEADJSCAN")
        mdbs.append(noise)
    for tr, full in zip(transients, blocks):
        m = twixtools.mdb.Mdb_local(full)
        m.mdh.CutOff.Pre, m.mdh.CutOff.Post = pre, post
        m.mdh.Counter.Ave = tr.average if tr.kind != WATER_REF else 0
        m.mdh.Counter.Phs = 0 if tr.kind == WATER_REF else 1
        m.mdh.Counter.Ide = tr.set
        if not spectroscopy:
            m.mdh.Counter.Lin = tr.index
        m.mdh.TimeStamp = int(round(tr.time_s / 2.5e-3))
        m.mdh.MeasUID = 101
        m.add_flag("ONLINE")
        mdbs.append(m)
        if extra_blocks:
            pc = twixtools.mdb.Mdb_local(full[:, : full.shape[1] // 4].copy())
            pc.add_flag("PHASCOR")
            mdbs.append(pc)
    scan_dict = {"hdr_str": np.frombuffer(hdr, dtype="S1"), "mdb": mdbs,
                 "hdr": {"Config": {"tPatientName": patient.name, "SequenceDescription": "mrsqc_sim",
                                    "MeasUID": 101}}}
    scans = [scan_dict]
    if leading_measurement:
        first = twixtools.mdb.Mdb_local((rng.standard_normal((2, 64)) + 0j).astype(np.complex64))
        first.add_flag("ONLINE")
        scans.insert(0, {"hdr_str": np.frombuffer(build_header(scan, patient, spectroscopy=False, meas_uid=100),
                                                  dtype="S1"), "mdb": [first],
                         "hdr": {"Config": {"tPatientName": patient.name, "SequenceDescription": "adjust",
                                            "MeasUID": 100}}})
    with contextlib.redirect_stdout(io.StringIO()):  # twixtools prints a note about the ACQEND it adds
        twixtools.write_twix(scans, str(path), version_is_ve=True)
    return path


def write_twix_vb(path: str | Path, scan: ScanInfo, transients: list[Transient], patient: FakePatient | None = None,
                  cutoff: tuple[int, int] = (12, 20), seed: int = 0, extra_blocks: bool = True) -> Path:
    """Write a VB-style twix file (one 128-byte header per channel, no multi-raid header). Averages are
    counted in ``Rep`` as older VB sequences do; ``extra_blocks`` adds noise-adjust and PHASCOR blocks."""
    from twixtools import mdh_def

    path = Path(path)
    rng = np.random.default_rng(seed)
    pre, post = cutoff
    hdr = build_header(scan, patient or FakePatient())
    # a real VB header is hundreds of kB; its length (first uint32) >= 10000 is how readers tell VB from VE
    hdr_len = max(len(hdr), 10240)
    hdr = struct.pack("<I", hdr_len) + hdr[4:].ljust(hdr_len - 4, b"\0")

    def block(data: np.ndarray, flags: list[str], counters: dict, time_s: float) -> bytes:
        out = bytearray()
        n_cha, n_col = data.shape
        for c in range(n_cha):
            h = mdh_def.VB17_header()
            h.SamplesInScan, h.UsedChannels, h.ChannelId = n_col, n_cha, c
            h.CutOff.Pre, h.CutOff.Post = (pre, post) if "PHASCOR" not in flags else (0, 0)
            h.MeasUID, h.TimeStamp = 101, int(round(time_s / 2.5e-3))
            for k, v in counters.items():
                setattr(h.Counter, k, v)
            for f in flags:
                mdh_def.add_flag(h, f)
            mdh_def.set_dma_len(h, n_cha * (ctypes.sizeof(mdh_def.VB17_header) + 8 * n_col))
            out += bytes(h) + np.ascontiguousarray(data[c], dtype="<c8").tobytes()
        return bytes(out)

    blocks = _raw_blocks(transients, cutoff, rng)
    with open(path, "wb") as f:
        f.write(hdr)
        if extra_blocks:
            f.write(block((rng.standard_normal(blocks[0].shape) + 0j).astype(np.complex64), ["NOISEADJSCAN"], {}, 0))
        for tr, full in zip(transients, blocks):
            counters = {"Rep": tr.average if tr.kind != WATER_REF else 0, "Ide": tr.set,
                        "Phs": 0 if tr.kind == WATER_REF else 1}
            f.write(block(full, ["ONLINE"], counters, tr.time_s))
            if extra_blocks:
                f.write(block(full[:, : full.shape[1] // 4], ["PHASCOR"], counters, tr.time_s))
    return path
