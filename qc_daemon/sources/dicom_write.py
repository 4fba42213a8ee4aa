"""Write coil-combined transients as MR Spectroscopy Storage DICOM (one file per transient, as XA exports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model import ScanInfo, Transient
from .dicom import MRS_STORAGE
from .twix_write import FakePatient


def write_dicom_folder(folder: str | Path, scan: ScanInfo, fids: list[np.ndarray], transients: list[Transient],
                       patient: FakePatient | None = None) -> Path:
    """One file per transient: ``fids[i]`` (complex, points) in mrsqc's frame, InstanceNumber = i + 1."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    patient = patient or FakePatient()
    series = generate_uid(entropy_srcs=["mrsqc", scan.scan_id])
    for i, fid in enumerate(fids[: len(transients)]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRS_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["mrsqc", scan.scan_id, str(i)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRS_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.Modality = "MR"
        ds.Manufacturer = "SIEMENS"
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.InstanceNumber = i + 1
        ds.NumberOfFrames = 1
        ds.DataPointRows = 1
        ds.DataPointColumns = int(fid.shape[-1])
        ds.SpectralWidth = 1.0 / scan.dwell_s
        ds.TransmitterFrequency = scan.f0_hz / 1e6
        ds.ResonantNucleus = "1H"
        ds.SignalDomainColumns = "TIME"
        ds.DataRepresentation = "COMPLEX"
        ds.PulseSequenceName = "*" + scan.sequence
        inter = np.empty(2 * fid.shape[-1], dtype="<f4")
        inter[0::2], inter[1::2] = fid.real, fid.imag
        ds.SpectroscopyData = inter.tobytes()
        avg, timing, echo, group = Dataset(), Dataset(), Dataset(), Dataset()
        avg.NumberOfAverages = 1
        timing.RepetitionTime = scan.tr_ms or 2000.0
        echo.EffectiveEchoTime = scan.te_ms or 30.0
        group.MRAveragesSequence = Sequence([avg])
        group.MRTimingAndRelatedParametersSequence = Sequence([timing])
        group.MREchoSequence = Sequence([echo])
        ds.SharedFunctionalGroupsSequence = Sequence([group])
        pydicom.dcmwrite(str(folder / f"{i + 1:05d}.dcm"), ds, enforce_file_format=True)
    return folder
