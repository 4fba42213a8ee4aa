"""Siemens twix (meas.dat) reader via twixtools: VB and VD/VE, multi-raid, SVS only.

What it does to each transient, in order (spec2nii / FID-A conventions):
1. keep image-scan MDBs only (noise adjust, PHASCOR, SYNCDATA, ACQEND and other non-image MDBs are skipped);
2. trim ``mdh.CutOff`` pre/post samples;
3. keep the data as they are: a twix stores mrsqc's frame (ppm grows with frequency after an FFT; spec2nii
   conjugates twix data into the NIfTI-MRS frame, which is the conjugate of mrsqc's: docs/results.md);
4. declare the oversampling factor (trimmed length / ``sSpecPara.lVectorSize``) in ScanInfo: the engine
   removes it after coil combination (one FID instead of every coil); the output dwell is
   ``alDwellTime x os`` (alDwellTime is the ADC dwell).
Averages are counted in ``Ave`` (VD/VE) or ``Rep`` (older VB sequences): whichever counter varies.
Unsuppressed water-reference transients inside the measurement are recognised from the signal
(:mod:`.classify`), not from header flags. Patient fields are never read into the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model import METABOLITE, WATER_REF, ScanInfo, Transient
from .classify import classify
from .recording import Recording, file_head, oversampling_note

NON_DATA_FLAGS = ("NOISEADJSCAN", "PHASCOR", "SYNCDATA", "ACQEND", "RTFEEDBACK", "HPFEEDBACK", "REFPHASESTABSCAN",
                  "PHASESTABSCAN")


def is_twix(path: Path) -> bool:
    """True when the file starts like a twix file (VD/VE multi-raid header or a VB header length)."""
    head = file_head(path, 8)
    if len(head) < 8:
        return False
    first, second = np.frombuffer(head, dtype="<u4")
    return bool((first < 10000 and 0 < second <= 64) or (1000 < first < 50_000_000 and path.suffix.lower()
                                                          in (".dat", ".twix")))


def _get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, (dict, list)):
            return default
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return default
    return d


def read_twix(path: str | Path, measurement: int = -1, role: str | None = None) -> Recording:
    """Read one measurement of a twix file (default: the last) as a :class:`Recording`.

    ``role='water'`` marks every transient as a water reference (a separate water-reference file).
    Raises :class:`InputError` for anything that is not readable SVS data.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size < 1024:
        raise InputError(path, f"too small to be a twix file ({path.stat().st_size} bytes)")
    import twixtools

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            scans = twixtools.read_twix(str(path), verbose=False, parse_pmu=False, parse_geometry=False)
    except Exception as exc:  # twixtools raises many types on corrupt input
        raise InputError(path, f"not a readable twix file ({type(exc).__name__})") from None
    if not scans:
        raise InputError(path, "twix file holds no measurement")
    try:
        meas = scans[measurement]
    except IndexError:
        raise InputError(path, f"measurement {measurement} not present ({len(scans)} in file)") from None
    hdr = meas.get("hdr") or {}
    yaps = hdr.get("MeasYaps") or {}
    mdbs = [m for m in meas.get("mdb", []) if not any(m.is_flag_set(f) for f in NON_DATA_FLAGS)]
    mdbs = [m for m in mdbs if m.mdh.UsedChannels > 0 and m.mdh.SamplesInScan > 0]
    if not mdbs:
        raise InputError(path, f"no acquired data: {len(meas.get('mdb', []))} measurement blocks are empty "
                               "(truncated or aborted file?)")
    vector = _get(yaps, "sSpecPara", "lVectorSize")
    ice = str(_get(hdr, "Meas", "tICEProgramName", default="") or "")
    lins = {m.mdh.Counter.Lin for m in mdbs}
    pars = {m.mdh.Counter.Par for m in mdbs}
    if vector is None and "Spectro" not in ice:
        raise InputError(path, "not spectroscopy: no sSpecPara.lVectorSize in the protocol (imaging twix?)")
    if len(lins) > 1 or len(pars) > 1:
        raise InputError(path, f"not single-voxel spectroscopy: {len(lins)} phase-encode lines, {len(pars)} "
                               "partitions (CSI or imaging)")
    nucleus = str(_get(yaps, "sTXSPEC", "asNucleusInfo", 0, "tNucleus", default="1H") or "1H")
    if nucleus.strip('"') != "1H":
        raise InputError(path, f"unsupported nucleus {nucleus!r}: mrsqc checks 1H spectroscopy")
    f0 = _get(yaps, "sTXSPEC", "asNucleusInfo", 0, "lFrequency") or _get(hdr, "Meas", "Frequency")
    dwell_ns = _get(yaps, "sRXSPEC", "alDwellTime", 0) or _get(hdr, "Meas", "DwellTime")
    if not f0 or not dwell_ns:
        raise InputError(path, "protocol lacks the spectrometer frequency or the dwell time")
    shapes = {(m.mdh.UsedChannels, m.mdh.SamplesInScan, m.mdh.CutOff.Pre, m.mdh.CutOff.Post) for m in mdbs}
    if len(shapes) > 1:
        # keep the dominant shape (e.g. a PHASCOR-like block without the flag): the data transients
        counts: dict = {}
        for m in mdbs:
            key = (m.mdh.UsedChannels, m.mdh.SamplesInScan, m.mdh.CutOff.Pre, m.mdh.CutOff.Post)
            counts[key] = counts.get(key, 0) + 1
        main = max(counts, key=counts.get)
        mdbs = [m for m in mdbs if (m.mdh.UsedChannels, m.mdh.SamplesInScan, m.mdh.CutOff.Pre,
                                    m.mdh.CutOff.Post) == main]
    n_coils, samples, pre, post = (mdbs[0].mdh.UsedChannels, mdbs[0].mdh.SamplesInScan, mdbs[0].mdh.CutOff.Pre,
                                   mdbs[0].mdh.CutOff.Post)
    n_trim = samples - pre - post
    if n_trim < 16:
        raise InputError(path, f"only {n_trim} samples per transient after CutOff")
    os_factor = 1
    if vector and n_trim % int(vector) == 0 and n_trim // int(vector) > 1:
        os_factor = n_trim // int(vector)
    n_points = n_trim // os_factor
    dwell_s = float(dwell_ns) * 1e-9 * os_factor
    # averages: Ave (VD/VE) or Rep (older VB sequences), whichever varies
    aves = [m.mdh.Counter.Ave for m in mdbs]
    reps = [m.mdh.Counter.Rep for m in mdbs]
    avg_counter = reps if len(set(reps)) > len(set(aves)) else aves
    # MEGA edit state: Ide (Siemens svs_edit) or Set (CMRR MEGA-PRESS), whichever varies
    ides = [m.mdh.Counter.Ide for m in mdbs]
    sets = ides if len(set(ides)) > 1 else [m.mdh.Counter.Set for m in mdbs]
    set_values = sorted(set(sets))
    set_index = {v: i for i, v in enumerate(set_values)}
    times = np.array([m.mdh.TimeStamp * 2.5e-3 for m in mdbs])  # mdh time stamps tick every 2.5 ms
    times -= times[0]
    ve = _is_ve(path)
    te = _get(yaps, "alTE", 0)
    tr = _get(yaps, "alTR", 0)
    planned = int(_get(yaps, "lAverages", default=0) or 0)
    seq = str(_get(yaps, "tSequenceFileName", default="") or _get(hdr, "Config", "SequenceString", default=""))
    seq = seq.strip('"').replace("%SiemensSeq%\\", "").replace("%CustomerSeq%\\", "")
    kind_note = None
    if role == "water":
        kinds = [WATER_REF] * len(mdbs)
    else:
        first = _leading_samples(path, mdbs, ve, pre, min(n_trim, 512 * os_factor))
        found = classify(first, dwell_s, float(f0) / 1e6, os_factor)
        kinds, kind_note = found.kinds, found.note()
        del first
    n_metab = sum(1 for k in kinds if k == METABOLITE)
    voi = _get(yaps, "sSpecPara", "sVoI") or {}
    voxel = tuple(float(voi.get(k, 0.0) or 0.0) for k in ("dReadoutFOV", "dPhaseFOV", "dThickness"))
    uid = f"{_get(hdr, 'Config', 'MeasUID', default='')}/{_get(hdr, 'Config', 'ExamMemoryUID', default='')}"
    if uid == "/":
        uid = hashlib.sha256(path.read_bytes()[:65536]).hexdigest()
    version = "VD/VE" if ve else "VB"
    scan = ScanInfo(
        scan_id=hashlib.sha256(uid.encode()).hexdigest()[:16],
        f0_hz=float(f0), dwell_s=dwell_s, n_points=n_points, n_coils=n_coils,
        planned_averages=max(planned, n_metab, 1) if role != "water" else max(len(mdbs), 1),
        te_ms=float(te) / 1000.0 if te else None, tr_ms=float(tr) / 1000.0 if tr else None,
        sequence=seq, n_sets=len(set_values), source=f"twix {version}",
        voxel_mm=voxel if all(v > 0 for v in voxel) else None, oversampling=os_factor)
    tr_s = (scan.tr_ms or 0.0) / 1000.0
    if not np.all(np.diff(times) > 0) and tr_s > 0:
        times = np.arange(len(mdbs)) * tr_s
    headers = [(int(avg_counter[i]), set_index[sets[i]], kinds[i], float(times[i])) for i in range(len(mdbs))]
    transients = TwixTransients(path, mdbs, headers, pre, post, ve)
    notes = []
    if os_factor > 1:
        notes.append(oversampling_note(os_factor))
    if kind_note:
        notes.append(kind_note)
    return Recording(scan=scan, transients=transients, notes=notes)


class TwixTransients(Sequence):
    """The transients of a twix measurement, read on demand (one MDB per transient, CutOff trimmed).

    Blocks are read straight from one open file, so QC starts before the file is read and memory stays flat
    for large files. (A read-ahead thread was measured: once blocks are read this way it gains nothing.)
    A block with NaN/Inf or only zeros raises :class:`InputError` naming the transient when it is reached.
    """

    def __init__(self, path: Path, mdbs: list, headers: list[tuple[int, int, str, float]], pre: int, post: int,
                 ve: bool):
        self.path, self._mdbs, self._headers, self._pre, self._post = path, mdbs, headers, pre, post
        self._layout = _block_layout(ve, mdbs[0].mdh.UsedChannels, mdbs[0].mdh.SamplesInScan)

    def __len__(self) -> int:
        return len(self._mdbs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        with open(self.path, "rb") as f:
            return self._read(f, i)

    def _read(self, f, i: int) -> Transient:
        """Transient i, its block read straight from the open file ``f`` at the MDB position."""
        m = self._mdbs[i]
        offset, dtype, n_bytes = self._layout
        f.seek(int(m.mem_pos) + offset)
        buf = f.read(n_bytes)
        if len(buf) != n_bytes:
            raise InputError(self.path, f"transient {i}: data block truncated ({len(buf)} of {n_bytes} bytes)")
        raw = np.frombuffer(buf, dtype=dtype)["d"]  # coils x samples
        data = raw[:, self._pre:raw.shape[1] - self._post]
        flat = data.ravel()
        energy = float(np.vdot(flat, flat).real)  # NaN/Inf propagate; 0 means all zero
        if not np.isfinite(energy):
            raise InputError(self.path, f"transient {i} contains NaN or Inf")
        if energy == 0.0:
            raise InputError(self.path, f"transient {i} is all zero")
        average, set_, kind, time_s = self._headers[i]
        return Transient(index=i, average=average, set=set_, kind=kind, time_s=time_s, data=data)

    def __iter__(self):
        with open(self.path, "rb") as f:  # one open file for every block
            for i in range(len(self)):
                yield self._read(f, i)


def _block_layout(ve: bool, channels: int, samples: int) -> tuple[int, np.dtype, int]:
    """(offset from the MDB position, dtype of one channel record, bytes of all channels) of a data block:
    VD/VE: a 192-byte scan header, then per channel a 32-byte channel header and the samples; VB: per channel a
    128-byte header and the samples (the layout twixtools reads, here with one open file for all blocks)."""
    import ctypes

    from twixtools import mdh_def

    if ve:
        offset, head = ctypes.sizeof(mdh_def.Scan_header), ctypes.sizeof(mdh_def.Channel_header)
    else:
        offset, head = 0, ctypes.sizeof(mdh_def.VB17_header)
    dtype = np.dtype([("h", f"V{head}"), ("d", "<c8", (samples,))])
    return offset, dtype, channels * dtype.itemsize


def _leading_samples(path: Path, mdbs: list, ve: bool, pre: int, n: int) -> np.ndarray:
    """The first ``n`` samples (after CutOff) of every coil of each MDB (MDBs x coils x n, complex64,
    in mrsqc's frame), read straight from the file: enough to classify transients
    without holding the whole scan."""
    mdh0 = mdbs[0].mdh
    offset, dtype, n_bytes = _block_layout(ve, mdh0.UsedChannels, mdh0.SamplesInScan)
    out = np.zeros((len(mdbs), int(mdh0.UsedChannels), n), dtype=np.complex64)
    with open(path, "rb") as f:
        for i, m in enumerate(mdbs):
            f.seek(int(m.mem_pos) + offset)
            buf = f.read(n_bytes)
            if len(buf) == n_bytes:
                out[i] = np.frombuffer(buf, dtype=dtype)["d"][:, pre:pre + n]
    return out


def _is_ve(path: Path) -> bool:
    with open(path, "rb") as f:
        first, second = np.frombuffer(f.read(8), dtype="<u4")
    return bool(first < 10000 and second <= 64)
