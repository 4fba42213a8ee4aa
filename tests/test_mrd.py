"""MRD (ISMRMRD v1) HDF5 (issue 17's first part): `mrsqc to-mrd` writes any recording, `check` reads it back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qc_daemon.check import run_check
from qc_daemon.cli import main
from qc_daemon.errors import InputError
from qc_daemon.simulate_files import write_simulation
from qc_daemon.sources.mrd import TICK_S, read_mrd
from qc_daemon.sources.open import open_recording
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "demo_drift_motion.dat"


def _rows(run):
    return [r.to_dict() for r in run.results]


def test_a_twix_through_mrd_gives_identical_results(tmp_path):
    out = tmp_path / "scan.h5"
    assert main(["to-mrd", str(FIXTURE), str(out)]) == 0
    assert open_recording(out).scan.source == "mrd"
    assert _rows(run_check(out)) == _rows(run_check(FIXTURE))


def test_an_edited_scan_keeps_its_sets_and_a_nifti_mrs_pair_its_water(tmp_path):
    write_simulation(tmp_path, name="m", formats="twix,nifti", averages=40, n_coils=4, n_points=1024, seed=3,
                     mega=True, n_events_each=1)
    assert main(["to-mrd", str(tmp_path / "m.dat"), str(tmp_path / "m.h5")]) == 0
    rec = read_mrd(tmp_path / "m.h5")
    assert rec.scan.n_sets == 2 and [t.set for t in rec.transients[2:6]] == [0, 1, 0, 1]
    assert _rows(run_check(tmp_path / "m.h5")) == _rows(run_check(tmp_path / "m.dat"))
    assert main(["to-mrd", str(tmp_path / "m.nii.gz"), str(tmp_path / "n.h5"), "--water",
                 str(tmp_path / "m_wref.nii.gz")]) == 0
    assert [t.kind for t in read_mrd(tmp_path / "n.h5").transients][:3] == ["water_ref", "water_ref", "metabolite"]


def test_the_header_and_acquisitions_are_laid_out_as_siemens_to_ismrmrd_does(tmp_path):
    import ismrmrd
    import ismrmrd.xsd

    out = tmp_path / "scan.h5"
    assert main(["to-mrd", str(FIXTURE), str(out)]) == 0
    rec = open_recording(FIXTURE)
    ds = ismrmrd.Dataset(str(out), "dataset", create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
    acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    ds.close()
    users = {p.name: p.value for p in header.userParameters.userParameterLong}
    assert header.experimentalConditions.H1resonanceFrequency_Hz == round(rec.scan.f0_hz)
    assert header.acquisitionSystemInformation.receiverChannels == rec.scan.n_coils
    assert users == {"SpecVectorSize": rec.scan.n_points, "ReadoutOS": rec.scan.oversampling}
    assert header.encoding[0].encodedSpace.matrixSize.x == rec.scan.samples_per_transient
    assert header.sequenceParameters.TR == [rec.scan.tr_ms] and header.subjectInformation is None
    assert len(acqs) == len(rec.transients)
    for a, t in zip(acqs, rec.transients):
        assert a.active_channels == rec.scan.n_coils and a.idx.average == t.average and a.idx.set == t.set
        assert a.acquisition_time_stamp * TICK_S == pytest.approx(t.time_s, abs=TICK_S)
        assert a.sample_time_us == pytest.approx(rec.scan.dwell_s * 1e6 / rec.scan.oversampling)
        assert np.array_equal(a.data, t.data)
    assert acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    assert not any(a.is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT) for a in acqs[:-1])
    assert b"Doe" not in out.read_bytes() and b"PID-4711" not in out.read_bytes()  # the fixture's fake patient


def test_noise_and_navigator_acquisitions_are_skipped_and_discards_cut(tmp_path):
    import ismrmrd

    out = tmp_path / "scan.h5"
    assert main(["to-mrd", str(FIXTURE), str(out)]) == 0
    ds = ismrmrd.Dataset(str(out), "dataset", create_if_needed=False)
    xml = ds.read_xml_header()
    acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    ds.close()
    edited = tmp_path / "edited.h5"
    ds = ismrmrd.Dataset(str(edited), "dataset", create_if_needed=True)
    ds.write_xml_header(xml)
    noise = ismrmrd.Acquisition.from_array(np.ones((4, 64), np.complex64))
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    ds.append_acquisition(noise)
    for a in acqs:
        padded = np.concatenate([np.zeros((4, 6), np.complex64), a.data, np.zeros((4, 10), np.complex64)], axis=1)
        b = ismrmrd.Acquisition.from_array(padded)
        b.sample_time_us, b.acquisition_time_stamp = a.sample_time_us, a.acquisition_time_stamp
        b.discard_pre, b.discard_post = 6, 10
        b.idx.average, b.idx.set = a.idx.average, a.idx.set
        ds.append_acquisition(b)
    ds.close()
    assert _rows(run_check(edited)) == _rows(run_check(FIXTURE))
    assert "1 noise/navigator/other skipped" in " ".join(read_mrd(edited).notes)


def test_a_damaged_mrd_file_is_one_line(tmp_path):
    out = tmp_path / "scan.h5"
    assert main(["to-mrd", str(FIXTURE), str(out)]) == 0
    broken = tmp_path / "broken.h5"
    broken.write_bytes(out.read_bytes()[:4096])
    with pytest.raises(InputError, match="not a readable MRD"):
        read_mrd(broken)
    res = subprocess.run([sys.executable, "-m", "qc_daemon.cli", "check", str(broken)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
