"""MRD (ISMRMRD v1) for single-voxel spectroscopy: the XML header <-> ScanInfo, an acquisition <-> a Transient,
and the HDF5 dataset file (``mrsqc to-mrd`` writes it, ``check`` reads it). The MRD streaming bridge (issue 17)
decodes its messages with the same two functions.

Layout, as siemens_to_ismrmrd lays out a Siemens SVS twix: ``H1resonanceFrequency_Hz``; one encoding whose
encoded matrix x is the samples per acquisition (with the readout oversampling) and recon matrix x the points
after it; ``encodingLimits`` average and set; TR/TE (ms) in ``sequenceParameters``; the sequence name in
``measurementInformation``; user parameters ``SpecVectorSize`` (points after oversampling removal) and
``ReadoutOS``. One acquisition per transient with every coil: ``sample_time_us`` the ADC dwell (with
oversampling), ``idx.average``, ``idx.set`` (the edit set of MEGA), ``acquisition_time_stamp`` in 2.5 ms ticks,
``discard_pre/post`` samples cut, ``ACQ_LAST_IN_MEASUREMENT`` on the last. Data are in mrsqc's frame (as a twix
stores them). Noise, navigation, RT-feedback, phase-correction and dummy-scan acquisitions are skipped on reading;
unsuppressed references are recognised from the signal as everywhere else. No patient field is written or read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model import METABOLITE, WATER_REF, ScanInfo, Transient
from .classify import classify
from .recording import Recording, oversampling_note

TICK_S = 0.0025  # acquisition_time_stamp unit (Siemens: 2.5 ms)
SKIPPED_FLAGS = ("ACQ_IS_NOISE_MEASUREMENT", "ACQ_IS_NAVIGATION_DATA", "ACQ_IS_RTFEEDBACK_DATA",
                 "ACQ_IS_HPFEEDBACK_DATA", "ACQ_IS_PHASECORR_DATA", "ACQ_IS_DUMMYSCAN_DATA",
                 "ACQ_IS_PARALLEL_CALIBRATION", "ACQ_IS_PHASE_STABILIZATION_REFERENCE")


def header_xml(scan: ScanInfo) -> str:
    """The MRD XML header of ``scan`` (no subject or study information); the average limit holds the planned
    averages (metabolite transients, all edit sets), as a scanner announces them."""
    import ismrmrd.xsd as x

    samples = scan.samples_per_transient
    space = x.encodingSpaceType(matrixSize=x.matrixSizeType(x=samples, y=1, z=1),
                                fieldOfView_mm=x.fieldOfViewMm(x=10.0, y=10.0, z=10.0))
    recon = x.encodingSpaceType(matrixSize=x.matrixSizeType(x=scan.n_points, y=1, z=1),
                                fieldOfView_mm=x.fieldOfViewMm(x=10.0, y=10.0, z=10.0))
    limits = x.encodingLimitsType(average=x.limitType(minimum=0, maximum=max(scan.planned_averages - 1, 0), center=0),
                                  set=x.limitType(minimum=0, maximum=scan.n_sets - 1, center=0))
    header = x.ismrmrdHeader(
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=int(round(scan.f0_hz))),
        acquisitionSystemInformation=x.acquisitionSystemInformationType(receiverChannels=scan.n_coils),
        measurementInformation=x.measurementInformationType(patientPosition=x.patientPositionType.HFS,
                                                            sequenceName=scan.sequence or None),
        encoding=[x.encodingType(encodedSpace=space, reconSpace=recon, encodingLimits=limits,
                                 trajectory=x.trajectoryType.CARTESIAN)],
        sequenceParameters=x.sequenceParametersType(TR=[scan.tr_ms] if scan.tr_ms else [],
                                                    TE=[scan.te_ms] if scan.te_ms else []),
        userParameters=x.userParametersType(userParameterLong=[
            x.userParameterLongType(name="SpecVectorSize", value=scan.n_points),
            x.userParameterLongType(name="ReadoutOS", value=scan.oversampling)]))
    return x.ToXML(header)


@dataclass(frozen=True)
class MrdHeader:
    """What QC takes from the MRD XML header (never a subject or study field). ``average_counter`` and
    ``edit_counter`` name the acquisition counters that hold the average and the edit set: ``average`` (or
    ``repetition`` when only it has limits, as older Siemens sequences count averages), ``set`` (or
    ``contrast``). ``planned_averages``: the average (or repetition) limit + 1 (0 when the header has none)."""

    f0_hz: float
    te_ms: float | None
    tr_ms: float | None
    sequence: str
    n_sets: int
    planned_averages: int
    average_counter: str
    edit_counter: str
    readout_os: int
    spec_vector_size: int
    dwell_ns: int  # Siemens DwellTime_0 (ADC dwell with oversampling, ns) when the header has it, else 0


def parse_header(xml: str, source_name: str | Path) -> MrdHeader:
    """The MRD header fields QC uses; InputError for a header that is not ISMRMRD XML or has no f0."""
    import ismrmrd.xsd as x

    try:
        h = x.CreateFromDocument(xml)
    except Exception as exc:  # noqa: BLE001  (the XML parser raises many types)
        raise InputError(source_name, f"MRD header is not valid ISMRMRD XML ({type(exc).__name__})") from None
    f0 = float(h.experimentalConditions.H1resonanceFrequency_Hz or 0) if h.experimentalConditions else 0.0
    if not f0 > 0:
        raise InputError(source_name, "MRD header has no H1resonanceFrequency_Hz")
    users = {}
    if h.userParameters:
        for p in list(h.userParameters.userParameterLong) + list(h.userParameters.userParameterDouble):
            users[p.name] = p.value
    enc = h.encoding[0] if h.encoding else None
    lim = enc.encodingLimits if enc else None

    def size(name: str) -> int:
        limit = getattr(lim, name, None) if lim else None
        return int(limit.maximum) + 1 if limit is not None and limit.maximum is not None else 0

    avg, rep, sets, contrasts = size("average"), size("repetition"), size("set"), size("contrast")
    average_counter = "repetition" if avg <= 1 < rep else "average"
    edit_counter = "contrast" if sets <= 1 < contrasts else "set"
    seq = h.sequenceParameters
    name = (h.measurementInformation.sequenceName if h.measurementInformation else None) or ""
    return MrdHeader(f0_hz=f0, te_ms=float(seq.TE[0]) if seq and seq.TE else None,
                     tr_ms=float(seq.TR[0]) if seq and seq.TR else None, sequence=str(name),
                     n_sets=max(contrasts if edit_counter == "contrast" else sets, 1),
                     planned_averages=rep if average_counter == "repetition" else avg,
                     average_counter=average_counter, edit_counter=edit_counter,
                     readout_os=int(users.get("ReadoutOS") or 0),
                     spec_vector_size=int(users.get("SpecVectorSize") or 0),
                     dwell_ns=int(round(float(users.get("DwellTime_0") or 0))))


def scan_from_header(header: MrdHeader, first: object, source_name: str | Path, scan_id: str) -> ScanInfo:
    """ScanInfo from the header and the first data acquisition (its samples, dwell, channels)."""
    samples = int(first.number_of_samples) - int(first.discard_pre) - int(first.discard_post)
    os_factor = header.readout_os
    if not os_factor and header.spec_vector_size:
        os_factor = max(1, samples // header.spec_vector_size)
    os_factor = os_factor or 1
    if samples <= 0 or samples % os_factor:
        raise InputError(source_name, f"{samples} samples per acquisition are not a multiple of the readout "
                                      f"oversampling {os_factor}")
    # sample_time_us is a float32: the ADC dwell is a whole number of ns (Siemens alDwellTime), so round to it;
    # DwellTime_0, when the header has it, is that number exactly
    dwell_ns = round(float(first.sample_time_us) * 1000.0)
    if header.dwell_ns and abs(header.dwell_ns - dwell_ns) <= 1:
        dwell_ns = header.dwell_ns
    scan = ScanInfo(scan_id=scan_id, f0_hz=header.f0_hz, dwell_s=dwell_ns * 1e-9 * os_factor,
                    n_points=samples // os_factor, n_coils=int(first.active_channels),
                    planned_averages=max(header.planned_averages, 1), te_ms=header.te_ms, tr_ms=header.tr_ms,
                    sequence=header.sequence, n_sets=header.n_sets, source="mrd", oversampling=os_factor,
                    notes=tuple(n for n in (oversampling_note(os_factor),) if n))
    try:
        scan.validate()
    except ValueError as exc:
        raise InputError(source_name, f"MRD scan parameters are not plausible: {exc}") from None
    return scan


def is_data(acq) -> bool:
    """False for the acquisitions QC skips (noise, navigators, feedback, phase correction, dummy scans)."""
    import ismrmrd

    return not any(acq.is_flag_set(getattr(ismrmrd, f)) for f in SKIPPED_FLAGS)


DAY_TICKS = 86400 * 400  # acquisition_time_stamp counts 2.5 ms ticks since midnight: a scan over midnight wraps


def transient_from_acquisition(acq, index: int, t0_ticks: int, header: MrdHeader | None = None) -> Transient:
    """One data acquisition as a Transient (coils x samples after discard_pre/post, complex64, mrsqc's frame:
    as the scanner's ADC delivers it, as a twix stores it); the average and edit set from the counters the
    header names; kind is decided from the signal by the caller."""
    data = np.ascontiguousarray(acq.data[:, int(acq.discard_pre):acq.data.shape[1] - int(acq.discard_post)],
                                dtype=np.complex64)
    idx = acq.idx
    average = int(getattr(idx, header.average_counter if header else "average"))
    edit = int(getattr(idx, header.edit_counter if header else "set"))
    ticks = (int(acq.acquisition_time_stamp) - t0_ticks) % DAY_TICKS
    return Transient(index=index, average=average, set=edit, kind=METABOLITE, time_s=ticks * 2.5 / 1000.0,
                     data=data)  # 2.5 / 1000 rather than * TICK_S: exact ms


def acquisition_of(t: Transient, i: int, scan: ScanInfo, last: bool = False):
    """The MRD acquisition of transient ``t`` (the ``i``-th of the scan), as siemens_to_ismrmrd fills one."""
    import ismrmrd

    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(t.data, dtype=np.complex64))
    acq.sample_time_us = scan.dwell_s * 1e6 / scan.oversampling
    acq.available_channels = scan.n_coils
    acq.scan_counter = i + 1
    acq.acquisition_time_stamp = int(round(t.time_s / TICK_S))
    acq.idx.average = t.average
    acq.idx.set = t.set
    if last:
        acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    return acq


def write_mrd(path: str | Path, recording: Recording) -> Path:
    """Write a recording as an MRD HDF5 dataset (group ``dataset``), one acquisition per transient."""
    import ismrmrd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    scan = recording.scan
    transients = list(recording.transients)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    try:
        ds.write_xml_header(header_xml(scan))
        for i, t in enumerate(transients):
            acq = acquisition_of(t, i, scan, last=i == len(transients) - 1)
            ds.append_acquisition(acq)
    finally:
        ds.close()
    return path


def read_mrd(path: str | Path, role: str | None = None) -> Recording:
    """Read an MRD HDF5 dataset of single-voxel spectroscopy as a Recording."""
    import ismrmrd

    path = Path(path)
    try:
        ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
        xml = ds.read_xml_header()
        xml = xml.decode() if isinstance(xml, bytes) else xml
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
        ds.close()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001  (h5py / ismrmrd raise many types for a damaged file)
        raise InputError(path, f"not a readable MRD (ISMRMRD) HDF5 dataset ({type(exc).__name__})") from None
    data = [a for a in acqs if is_data(a)]
    if not data:
        raise InputError(path, "MRD dataset has no spectroscopy acquisitions (only noise, navigators or none)")
    with open(path, "rb") as f:
        scan_id = hashlib.sha256(f.read(65536)).hexdigest()[:16]
    header = parse_header(xml, path)
    scan = scan_from_header(header, data[0], path, scan_id)
    t0 = int(data[0].acquisition_time_stamp)
    transients = [transient_from_acquisition(a, i, t0, header) for i, a in enumerate(data)]
    shapes = {t.data.shape for t in transients}
    if len(shapes) > 1:
        raise InputError(path, f"acquisitions differ in shape: {sorted(shapes)}")
    stack = np.stack([t.data[:, :512 * scan.oversampling] for t in transients])  # enough to classify (as twix)
    found = None if role == "water" else classify(stack, scan.dwell_s, scan.f0_mhz, scan.oversampling)
    kinds = [WATER_REF] * len(transients) if found is None else found.kinds
    for t, k in zip(transients, kinds):
        t.kind = k
    n_metab = sum(k != WATER_REF for k in kinds)
    scan = replace(scan, planned_averages=max(header.planned_averages, n_metab, 1) if role != "water"
                   else len(transients))
    notes = [f"MRD: {len(data)} data acquisitions ({len(acqs) - len(data)} noise/navigator/other skipped)"]
    if found is not None and found.note():
        notes.append(found.note())
    return Recording(scan=scan, transients=transients, notes=notes)
