"""Readers: real scanner files, round trips through the writers, property tests on decoders."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc_daemon.errors import InputError
from qc_daemon.model import METABOLITE, WATER_REF
from qc_daemon.sources.csa import parse_csa
from qc_daemon.sources.dicom_write import write_dicom_folder
from qc_daemon.sources.open import open_recording
from qc_daemon.sources.simulate import SimulationParams, simulate_scan
from qc_daemon.sources.twix_write import write_twix
from qc_daemon.spectral import SpectralAxis, decimate, spectrum


def test_real_twix_reference_and_averages(real_dir):
    rec = open_recording(real_dir / "sub-SiemensBrainPhantom_seq-svsse_ref-1_avg-2.twix")
    s = rec.scan
    assert (s.n_coils, s.n_points, s.te_ms, s.tr_ms, s.oversampling) == (34, 1024, 40.0, 2000.0, 2)
    assert rec.transients[0].data.shape == (34, 2048)
    assert s.dwell_s == pytest.approx(2 * 416.7e-6)
    assert [t.kind for t in rec.transients] == [WATER_REF, METABOLITE, METABOLITE]
    assert [t.average for t in rec.transients[1:]] == [0, 1]


def test_truncated_twix_is_refused(real_dir):
    with pytest.raises(InputError, match="no acquired data"):
        open_recording(real_dir / "sub-SiemensBrainPhantom_seq-svslcosy_incomplete.twix")


@pytest.mark.parametrize("name", ["SVS_30.IMA", "xa60_7t_svs_se_combined"])
def test_real_dicom_orientation_puts_naa_near_2ppm(real_dir, name):
    rec = open_recording(real_dir / name)
    assert rec.scan.combined and len(rec.transients) == 1
    axis = SpectralAxis.of(rec.scan)
    mag = np.abs(spectrum(rec.transients[0].data[0]))
    ppm = axis.ppm()
    sel = (ppm > 1.9) & (ppm < 2.1)
    local = mag[sel]
    # NAA is a local maximum inside 1.9-2.1 ppm (not at the window edge) in the right orientation
    assert 0 < int(np.argmax(local)) < local.size - 1


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(coils=st.integers(1, 4), points=st.sampled_from([256, 512, 1024]), averages=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_twix_round_trip(tmp_path_factory, coils, points, averages, seed):
    sim = simulate_scan(SimulationParams(n_coils=coils, n_points=points, averages=averages, seed=seed,
                                         dwell_s=0.5e-3, water_refs_before=1, events=[]))
    path = write_twix(tmp_path_factory.mktemp("tw") / "x.dat", sim.scan, sim.transients)
    rec = open_recording(path)
    assert (rec.scan.n_coils, rec.scan.n_points) == (coils, points)
    assert rec.scan.dwell_s == pytest.approx(0.5e-3, rel=1e-3)
    assert rec.scan.f0_hz == pytest.approx(sim.scan.f0_hz, abs=1)
    assert len(rec.transients) == len(sim.transients)
    assert rec.scan.oversampling == 2
    for a, b in zip(rec.transients, sim.transients):
        scale = np.abs(b.data).max()
        assert np.allclose(decimate(a.data, 2), b.data, atol=1e-5 * scale)  # float32 storage


def test_dicom_folder_is_ordered_by_instance_number(tmp_path):
    sim = simulate_scan(SimulationParams(n_coils=1, n_points=512, averages=5, seed=2, events=[],
                                         water_refs_before=0))
    fids = [t.data[0] for t in sim.transients]
    folder = write_dicom_folder(tmp_path / "d", sim.scan, fids, sim.transients)
    files = sorted(folder.iterdir())
    for i, f in enumerate(files):  # scramble the file names so name order != InstanceNumber order
        f.rename(folder / f"z{(7 * i) % len(files)}_{i}.dcm")
    rec = open_recording(folder)
    assert len(rec.transients) == 5 and not rec.scan.combined
    for got, want in zip(rec.transients, fids):
        assert np.allclose(got.data[0], want, atol=1e-3 * np.abs(want).max())
    assert [t.time_s for t in rec.transients] == pytest.approx([0, 2, 4, 6, 8])


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_csa_parser_never_crashes_on_garbage(buf):
    try:
        out = parse_csa(buf)
    except ValueError:
        return
    assert isinstance(out, dict)


@given(st.binary(min_size=0, max_size=4000))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_files_are_refused_with_input_error(tmp_path_factory, blob):
    p = tmp_path_factory.mktemp("g") / "x.dat"
    p.write_bytes(blob)
    with pytest.raises(InputError):
        open_recording(p)


def test_imaging_twix_is_refused(tmp_path):
    sim = simulate_scan(SimulationParams(n_coils=2, n_points=256, averages=3, seed=1, events=[]))
    path = write_twix(tmp_path / "img.dat", sim.scan, sim.transients, spectroscopy=False)
    with pytest.raises(InputError, match="not spectroscopy|not single-voxel"):
        open_recording(path)


def test_dicom_without_spectroscopy_is_refused(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.Modality = "MR"
    p = Path(tmp_path) / "img.dcm"
    pydicom.dcmwrite(str(p), ds, enforce_file_format=True)
    with pytest.raises(InputError, match="no spectroscopy data"):
        open_recording(p)


def _sim(n=6, coils=3, points=256, seed=4):
    return simulate_scan(SimulationParams(n_coils=coils, n_points=points, averages=n, seed=seed, dwell_s=0.5e-3,
                                          water_refs_before=1, events=[]))


def _same(rec, sim):
    assert len(rec.transients) == len(sim.transients)
    for a, b in zip(rec.transients, sim.transients):
        assert np.allclose(decimate(a.data, rec.scan.oversampling), b.data, atol=1e-5 * np.abs(b.data).max())


def test_vb_twix_with_rep_counter_noise_and_phascor_blocks(tmp_path):
    from qc_daemon.sources.twix_write import write_twix_vb

    sim = _sim()
    rec = open_recording(write_twix_vb(tmp_path / "vb.dat", sim.scan, sim.transients))
    assert rec.scan.source == "twix VB" and rec.scan.oversampling == 2
    assert [t.kind for t in rec.transients] == [WATER_REF] + [METABOLITE] * 6
    assert [t.average for t in rec.transients][1:] == list(range(6))  # counted in Rep
    _same(rec, sim)


def test_ve_twix_skips_noise_and_phascor_and_takes_the_last_measurement(tmp_path):
    sim = _sim(seed=5)
    path = write_twix(tmp_path / "ve.dat", sim.scan, sim.transients, extra_blocks=True, leading_measurement=True)
    rec = open_recording(path)
    assert rec.scan.n_coils == 3 and [t.average for t in rec.transients][1:] == list(range(6))
    _same(rec, sim)


def test_check_with_separate_water_reference_file(tmp_path):
    from qc_daemon.check import run_check

    p = SimulationParams(n_coils=4, n_points=1024, dwell_s=0.5e-3, averages=24, seed=6, events=[],
                         water_refs_before=0)
    sim = simulate_scan(p)
    water = simulate_scan(SimulationParams(n_coils=4, n_points=1024, dwell_s=0.5e-3, averages=0, seed=6,
                                           water_refs_before=2, events=[]))
    scan_path = write_twix(tmp_path / "metab.dat", sim.scan, sim.transients)
    water_path = write_twix(tmp_path / "water.dat", water.scan, water.transients)
    run = run_check(scan_path, water=water_path)
    assert [r.kind for r in run.results[:2]] == [WATER_REF, WATER_REF]
    assert len(run.results) == 26 and run.summary.fwhm_water_hz == pytest.approx(p.water_lw_hz, abs=1.0)
