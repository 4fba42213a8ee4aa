"""Every vendor in (issue 16): NIfTI-MRS and spec2nii's formats, round trips against the simulator's twix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qc_daemon.check import run_check
from qc_daemon.cli import main
from qc_daemon.errors import InputError
from qc_daemon.simulate_files import write_simulation
from qc_daemon.sources.nifti_mrs import nmrs_recording
from qc_daemon.sources.nifti_write import write_nifti_mrs
from qc_daemon.sources.open import open_recording
from qc_daemon.sources.twix_write import FakePatient
from qc_daemon.sources.vendor_write import ieee_to_vax, vax_to_ieee

SKIP = {"time_s"}  # a separate water file starts its own clock (0 s), the twix's metabolites start after it
SCALED = {"noise_sd"}  # absolute units: a one-coil integer format scales them by its receiver gain


def _same(a, b, path="", tol=2e-4, gain=1.0):
    """Equal within float32 precision (relative ``tol`` or absolute ``tol`` in the value's unit); values in
    absolute units (``SCALED``) after dividing ``b``'s by ``gain``."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k in SCALED and isinstance(b[k], float):
                assert math.isclose(a[k], b[k] / gain, rel_tol=tol), (f"{path}.{k}", a[k], b[k] / gain)
            elif k not in SKIP:
                _same(a[k], b[k], f"{path}.{k}", tol, gain)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]", tol, gain)
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _compare(run_a, run_b, tol=2e-4, gain=1.0):
    assert len(run_a.results) == len(run_b.results)
    for ra, rb in zip(run_a.results, run_b.results):
        a, b = ra.to_dict(), rb.to_dict()
        if ra.kind == "water_ref":  # a twix numbers its references by its Ave counter (0, 0), a file by order
            a.pop("average"), b.pop("average")
        _same(a, b, f"transient {ra.index}", tol, gain)
    sa, sb = run_a.summary.to_dict(), run_b.summary.to_dict()
    for key in ("notes", "provenance", "scan", "scan_id"):
        sa.pop(key, None), sb.pop(key, None)
    _same(sa, sb, "summary", tol, gain)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    write_simulation(out, name="s", formats="twix,nifti,datalist", averages=40, n_coils=4, n_points=1024,
                     seed=5, n_events_each=1)
    return out


@pytest.mark.parametrize("mega", [False, True])
def test_nifti_mrs_round_trip_gives_the_twix_results(tmp_path, mega):
    write_simulation(tmp_path, name="s", formats="twix,nifti", averages=40, n_coils=4, n_points=1024, seed=5,
                     n_events_each=1, mega=mega)
    twix = run_check(tmp_path / "s.dat")
    nifti = run_check(tmp_path / "s.nii.gz", water=tmp_path / "s_wref.nii.gz")
    assert nifti.scan.n_sets == (2 if mega else 1) and nifti.scan.source == "nifti-mrs"
    assert nifti.summary.n_flagged > 0  # the scan has events: the comparison covers flagged transients too
    _compare(twix, nifti)


def test_philips_data_list_round_trip_gives_the_twix_results(plain):
    _compare(run_check(plain / "s.dat"), run_check(plain / "s_raw.data"))  # water (mix 1) from the same file


def test_philips_sdat_round_trip_gives_the_twix_results(tmp_path):
    # SDAT holds one (combined) channel: the same one-coil scan as twix and as SDAT
    write_simulation(tmp_path, name="s", formats="twix,sdat", averages=40, n_coils=1, n_points=1024, seed=6,
                     n_events_each=1)
    sdat = run_check(tmp_path / "s.SDAT", water=tmp_path / "s_wref.SPAR")
    assert sdat.scan.source == "philips sdat (spec2nii)" and sdat.scan.n_coils == 1
    _compare(run_check(tmp_path / "s.dat"), sdat)


def test_philips_sdat_averaged_on_the_scanner_and_per_transient_with_240_fids(tmp_path):
    from qc_daemon.sources.vendor_write import write_sdat_spar

    # little drift: the scanner's average of a drifting scan is broadened by it (2 Hz/min over 480 s: tCr 16 Hz)
    write_simulation(tmp_path, name="s", formats="sdat", averages=240, n_coils=1, n_points=1024, seed=7,
                     events=False, drift_hz_per_min=0.1)
    per = open_recording(tmp_path / "s.SPAR")
    assert len(per.transients) == 240 and not per.scan.combined and per.scan.planned_averages == 240
    mean = np.mean([t.data[0] for t in per.transients], axis=0)
    write_sdat_spar(tmp_path / "avg", per.scan, mean[None])
    avg = open_recording(tmp_path / "avg.SDAT")
    assert avg.scan.combined and len(avg.transients) == 1
    assert np.allclose(avg.transients[0].data[0], mean, rtol=1e-5, atol=1e-6 * np.abs(mean).max())
    assert run_check(tmp_path / "avg.SDAT").summary.verdict == "pass"


def test_ge_pfile_round_trip_gives_the_twix_results(tmp_path):
    write_simulation(tmp_path, name="s", formats="twix,ge", averages=40, n_coils=4, n_points=1024, seed=5,
                     n_events_each=1)
    ge = run_check(tmp_path / "P00005.7")  # its 2 water references come first, as in the twix
    assert ge.scan.source == "ge p-file (spec2nii)" and ge.scan.n_coils == 4 and ge.summary.n_flagged > 0
    # P-files hold int32 (the water references, 2500x NAA, set the scale): the values agree to 1e-3, the
    # tolerance of the integer formats, not float32's 2e-4
    _compare(run_check(tmp_path / "s.dat"), ge, tol=1e-3)


def test_bruker_round_trip_gives_the_twix_results(tmp_path):
    # ParaVision stores one combined channel: the same one-coil scan as twix and as a Bruker study
    write_simulation(tmp_path, name="s", formats="twix,bruker", averages=40, n_coils=1, n_points=1024, seed=6,
                     n_events_each=1)
    bruker = run_check(tmp_path / "s_bruker" / "1", water=tmp_path / "s_bruker" / "2")
    assert bruker.scan.source == "bruker (spec2nii)" and bruker.summary.n_flagged > 0
    twix = run_check(tmp_path / "s.dat")
    gain = bruker.results[5].metrics["noise_sd"] / twix.results[5].metrics["noise_sd"]
    assert gain == pytest.approx(2.0 ** round(math.log2(gain)), rel=1e-3)  # the simulator's power-of-2 gain
    _compare(twix, bruker, tol=1e-3, gain=gain)  # int32 data, as for GE


def test_siemens_rda_is_the_scanner_average(tmp_path):
    write_simulation(tmp_path, name="s", formats="rda,nifti", averages=24, n_coils=1, n_points=1024, seed=2,
                     events=False)
    rda = open_recording(tmp_path / "s.rda")
    metab = open_recording(tmp_path / "s.nii.gz")
    mean = np.mean([t.data[0] for t in metab.transients], axis=0)
    assert rda.scan.combined and len(rda.transients) == 1 and rda.scan.te_ms == metab.scan.te_ms
    fid = rda.transients[0].data[0]  # the coil-combined average: the one coil's data times its complex weight
    weight = np.vdot(mean, fid) / np.vdot(mean, mean)
    assert np.allclose(fid, weight * mean, rtol=1e-4, atol=1e-5 * np.abs(fid).max())
    assert run_check(tmp_path / "s.rda").summary.verdict == "pass"


def test_uih_dicom_is_the_scanner_average_with_its_water_reference(tmp_path):
    write_simulation(tmp_path, name="s", formats="uih,nifti", averages=24, n_coils=1, n_points=1024, seed=2,
                     events=False)
    uih = open_recording(tmp_path / "s_uih.dcm")
    metab = open_recording(tmp_path / "s.nii.gz")
    assert uih.scan.source == "uih dicom (spec2nii)" and [t.kind for t in uih.transients] == ["water_ref",
                                                                                             "metabolite"]
    mean = np.mean([t.data[0] for t in metab.transients], axis=0)
    fid = uih.transients[1].data[0]
    weight = np.vdot(mean, fid) / np.vdot(mean, mean)
    assert np.allclose(fid, weight * mean, rtol=1e-4, atol=1e-5 * np.abs(fid).max())
    s = run_check(tmp_path / "s_uih.dcm").summary
    assert s.verdict == "pass" and 7.0 < s.fwhm_water_hz < 9.0  # the simulator's 8 Hz water line


def test_philips_dicom_through_spec2nii_matches_mrsqc_s_own_reader(real_dir):
    """The same transients through both readers (MR Spectroscopy Storage stays with mrsqc's, open.py), and
    the metabolites lie below water in mrsqc's frame."""
    from qc_daemon.sources.dicom import read_dicom
    from qc_daemon.sources.spec2nii_formats import dicom_format, read_spec2nii

    path = real_dir / "philips_1p5t_svs_metab_plus_water.dcm"
    ours = read_dicom(path)
    theirs = read_spec2nii(dicom_format(path, "Philips Medical Systems"), path)
    assert theirs.scan.f0_hz == pytest.approx(ours.scan.f0_hz) and theirs.scan.n_points == ours.scan.n_points
    assert theirs.scan.dwell_s == pytest.approx(ours.scan.dwell_s)
    a = {t.kind: t.data[0] for t in ours.transients}
    b = {t.kind: t.data[0] for t in theirs.transients}
    assert set(a) == set(b) == {"metabolite", "water_ref"}
    for kind in a:
        assert np.allclose(a[kind], b[kind], rtol=1e-5, atol=1e-6 * np.abs(a[kind]).max())
    from qc_daemon.spectral import SpectralAxis

    ppm = SpectralAxis.of(ours.scan).ppm()
    spec = np.abs(np.fft.fftshift(np.fft.fft(a["metabolite"])))
    far = np.abs(ppm - 4.65) > 0.5  # off the residual water
    below, above = spec[far & (ppm < 4.65) & (ppm > 1.0)].sum(), spec[far & (ppm > 4.65) & (ppm < 8.3)].sum()
    assert below > 1.5 * above  # NAA, Cr, Cho sit below water


def test_vax_floats_match_spec2nii_s_own_decoder():
    from spec2nii.Philips.philips import _vax_to_ieee_single_float

    x = np.random.default_rng(1).standard_normal(4000).astype(np.float32) * 1e3
    x[::97] = 0.0
    raw = ieee_to_vax(x)
    assert np.array_equal(np.asarray(_vax_to_ieee_single_float(raw), dtype=np.float32), x)
    assert np.array_equal(vax_to_ieee(raw), x)


def test_format_detection_is_by_content_not_the_name(plain, tmp_path):
    renamed = tmp_path / "scan_without_suffix"
    renamed.write_bytes((plain / "s.nii.gz").read_bytes())
    assert open_recording(renamed).scan.source == "nifti-mrs"
    rda = tmp_path / "export.txt"
    write_simulation(tmp_path, name="r", formats="rda", averages=20, n_coils=1, n_points=512, events=False)
    rda.write_bytes((tmp_path / "r.rda").read_bytes())
    assert open_recording(rda).scan.source == "rda (spec2nii)"


@pytest.mark.parametrize("fmt,name,water", [
    ("nifti", "s.nii.gz", "s_wref.nii.gz"), ("sdat", "s.SDAT", "s_wref.SDAT"), ("datalist", "s_raw.list", None),
    ("rda", "s.rda", None), ("uih", "s_uih.dcm", None), ("ge", "P00003.7", None),
    ("bruker", "s_bruker/1", "s_bruker/2")])
def test_patient_fields_of_every_format_never_reach_the_outputs(tmp_path, capsys, fmt, name, water):
    fake = FakePatient()
    src = tmp_path / "in"
    write_simulation(src, name="s", formats=fmt, averages=20, n_coils=2, n_points=512, seed=3, events=False)
    import gzip

    def raw(p):
        return gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()

    assert any(fake.name.encode() in raw(p) for p in src.rglob("*") if p.is_file())  # the input carries it
    out = tmp_path / "out"
    args = ["check", str(src / name), "--out", str(out)] + (["--water", str(src / water)] if water else [])
    assert main(args) == 0
    printed = capsys.readouterr()
    text = printed.out + printed.err
    text += "".join(raw(p).decode("latin-1") for p in out.rglob("*") if p.is_file())  # .nii.gz decompressed
    for secret in (fake.name, fake.name.split("^")[0], fake.patient_id, fake.birth_date):
        assert secret not in text


# ---- the NIfTI-MRS reader's dimension rules (property tests)

TAGS = st.permutations(["DIM_COIL", "DIM_DYN", "DIM_EDIT", "DIM_MEAS"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tags=TAGS, n=st.integers(1, 3), sizes=st.lists(st.integers(1, 3), min_size=3, max_size=3),
       extra=st.sampled_from([None, "DIM_USER_0", "DIM_ISIS"]))
def test_nifti_mrs_dimensions_map_onto_coils_sets_and_acquisition_order(tags, n, sizes, extra):
    dims = list(tags[:n])
    shape = [64] + sizes[:n]
    if extra and len(dims) < 3:
        dims.append(extra)
        shape.append(1)  # a one-entry dimension of any tag is ignored
    rng = np.random.default_rng(len(dims))
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    hdr = {"SpectrometerFrequency": [123.2], "ResonantNucleus": ["1H"], "RepetitionTime": 2.0}
    hdr.update({f"dim_{5 + k}": d for k, d in enumerate(dims)})
    rec = nmrs_recording(data[None, None, None], 5e-4, hdr, "x.nii", "id", role="water")
    size = dict(zip(dims, shape[1:]))
    n_coils, n_meas, n_dyn, n_edit = (size.get(d, 1) for d in ("DIM_COIL", "DIM_MEAS", "DIM_DYN", "DIM_EDIT"))
    assert rec.scan.n_coils == n_coils and len(rec.transients) == n_meas * n_dyn * n_edit
    assert rec.scan.n_sets == n_edit
    for t in rec.transients:  # acquisition order: MEAS slowest, then DYN, then EDIT
        m, rest = divmod(t.index, n_dyn * n_edit)
        d, e = divmod(rest, n_edit)
        assert t.set == e and t.time_s == pytest.approx(2.0 * t.index)
        index = {"DIM_MEAS": m, "DIM_DYN": d, "DIM_EDIT": e}
        sl = tuple(slice(None) if tag == "DIM_COIL" else index.get(tag, 0) for tag in dims)
        expected = data[(slice(None), *sl)]
        expected = expected.T if "DIM_COIL" in dims else expected[None]
        assert np.array_equal(t.data, expected.conj())  # the stored NIfTI-MRS frame is mrsqc's conjugate


@pytest.mark.parametrize("tag", ["DIM_ISIS", "DIM_PHASE_CYCLE", "DIM_INDIRECT_0", "DIM_USER_1", "DIM_METCYCLE"])
def test_an_unsupported_nifti_mrs_dimension_is_named(tmp_path, tag):
    data = np.ones((64, 2, 4), dtype=np.complex64)
    path = write_nifti_mrs(tmp_path / "x.nii.gz", data, 5e-4, 123.2, ["DIM_COIL", tag])
    with pytest.raises(InputError, match=f"{tag} \\(4\\) is not supported"):
        open_recording(path)


def test_nifti_mrs_header_values_are_read_with_units(tmp_path):
    data = np.ones((128, 3), dtype=np.complex64)
    hdr = {"EchoTime": 0.068, "RepetitionTime": 1.5, "SequenceName": "mega-press"}
    rec = open_recording(write_nifti_mrs(tmp_path / "x.nii", data, 4e-4, 297.2, ["DIM_DYN"], hdr))
    s = rec.scan
    assert (s.te_ms, s.tr_ms, s.f0_hz, s.dwell_s) == pytest.approx((68.0, 1500.0, 297.2e6, 4e-4))
    assert s.sequence == "mega-press" and s.n_coils == 1
    assert [t.time_s for t in rec.transients] == pytest.approx([0.0, 1.5, 3.0])


# ---- one frame for every reader, checked against spec2nii on the real files

def _match(ours: np.ndarray, theirs: np.ndarray) -> float:
    """|<ours, theirs>| / (|ours| |theirs|): 1 when equal up to a scale, ~0.2-0.9 for the mirror image."""
    return float(abs(np.vdot(ours, theirs)) / np.linalg.norm(ours) / np.linalg.norm(theirs))


def _spec2nii_frame(img) -> np.ndarray:
    from qc_daemon.sources.spec2nii_formats import _stored

    return _stored(img)[0].conj()[0, 0, 0]  # what nmrs_recording makes of spec2nii's output


@pytest.mark.parametrize("name", ["SVS_30.IMA", "SVS_XA60.dcm"])
def test_mrsqc_s_dicom_reader_and_spec2nii_give_one_frame(real_dir, name):
    import contextlib
    import io

    from spec2nii.Siemens.dicomfunctions import multi_file_dicom

    from qc_daemon.sources.dicom import read_dicom

    with contextlib.redirect_stdout(io.StringIO()):
        images, _ = multi_file_dicom([real_dir / name], None, None, False)
    theirs = _spec2nii_frame(images[0]).reshape(-1)
    ours = read_dicom(real_dir / name).transients[0].data[0]
    assert _match(ours, theirs) > 0.9999 and _match(ours, theirs.conj()) < 0.95


def test_mrsqc_s_twix_reader_and_spec2nii_give_one_frame(real_dir):
    """spec2nii conjugates twix data into the NIfTI-MRS frame; mrsqc keeps them: the same once both are in
    mrsqc's frame (mrsqc read twix conjugated, mirrored, before issue 16)."""
    import contextlib
    import io

    from mapvbvd import mapVBVD
    from spec2nii.Siemens.twixfunctions import process_twix

    from qc_daemon.sources.twix import read_twix

    path = real_dir / "sub-SiemensBrainPhantom_seq-svsse_ref-1_avg-2.twix"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        twix = mapVBVD(str(path), quiet=True)
        twix = twix[-1] if isinstance(twix, list) else twix
        images, _ = process_twix(twix, None, path.name, "image", {"dims": (None,) * 3, "tags": (None,) * 3},
                                 True, False, remove_os=False)
    theirs = _spec2nii_frame(images[0])  # points (untrimmed) x coils x Ave x Phs
    rec = read_twix(path)
    pre = 12  # this file's mdh.CutOff pre (data README)
    for t, (ave, phs) in zip(rec.transients, [(0, 0), (0, 1), (1, 1)]):
        block = theirs[pre:pre + t.data.shape[1], :, ave, phs].T  # coils x points
        assert _match(t.data.ravel(), block.ravel()) > 0.9999
        assert _match(t.data.ravel(), block.conj().ravel()) < 0.99


# ---- every entry point takes every format: replay into the daemon, the offline view

def test_replaying_a_nifti_mrs_file_gives_the_results_of_check(daemon, plain):
    from qc_daemon.client import FeedClient
    from qc_daemon.replay import replay

    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    delivery = replay(plain / "s.nii.gz", eps.ingest, speed=None)
    msgs = list(viewer.messages("summary", timeout_s=60))
    viewer.close()
    live = [m["result"] for m in msgs if m["type"] == "result"]
    assert delivery.complete and live == [r.to_dict() for r in run_check(plain / "s.nii.gz").results]


def test_the_offline_view_takes_nifti_mrs_with_its_water_file(plain):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "qc_daemon.cli", "tui", str(plain / "s.nii.gz"), "--water",
                          str(plain / "s_wref.nii.gz")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert sum(1 for line in res.stdout.splitlines() if line[:4].strip().isdigit()) == 42  # 2 water + 40


def test_nifti_mrs_patient_fields_never_reach_the_feed_the_journal_or_the_logs(daemon, plain, caplog):
    import gzip
    import json
    import logging

    from qc_daemon.client import FeedClient
    from qc_daemon.replay import replay

    fake = FakePatient()
    assert fake.name.encode() in gzip.decompress((plain / "s.nii.gz").read_bytes())
    caplog.set_level(logging.DEBUG)
    d, eps, ctx = daemon
    viewer = FeedClient(eps.feed, eps.snapshot, ctx)
    viewer.sync(5)
    assert replay(plain / "s.nii.gz", eps.ingest, speed=None).complete
    msgs = list(viewer.messages("summary", timeout_s=60))
    viewer.close()
    from tests.daemon_support import wait_until

    folder = d.data_dir / next(m["summary"]["scan_id"] for m in msgs if m["type"] == "summary")
    wait_until(lambda: (folder / "accepted_aligned.tsv").is_file(), what="the scan's outputs")
    text = json.dumps(msgs) + caplog.text  # the feed, the logs, and every text file the daemon wrote
    binary = ""  # the raw spool and the NIfTI-MRS (decompressed): 3 random bytes can spell a short surname there
    for p in d.data_dir.rglob("*"):
        if p.is_file():
            raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
            if p.suffix in (".json", ".jsonl", ".tsv", ".txt", ".log"):
                text += raw.decode("latin-1")
            else:
                binary += raw.decode("latin-1")
    for secret in (fake.name, fake.name.split("^")[0], fake.patient_id, fake.birth_date):
        assert secret not in text
    for secret in (fake.name, fake.patient_id, fake.birth_date):
        assert secret not in binary


@pytest.mark.parametrize("name,water", [("small_nifti.nii.gz", "small_nifti_wref.nii.gz"),
                                        ("small_philips.SDAT", "small_philips_wref.SPAR")])
def test_the_committed_nifti_and_philips_fixtures_check_to_their_truth(name, water):
    import json

    from tests.conftest import FIXTURES

    truth = json.loads((FIXTURES / (name.split(".")[0] + ".truth.json")).read_text())
    run = run_check(FIXTURES / name, water=FIXTURES / water)
    s = run.summary
    assert (s.n_metabolite, s.n_water_ref) == (truth["params"]["averages"], truth["params"]["water_refs_before"])
    # no events, a slow drift: PASS, nothing flagged (small_nifti's residual water once false-flagged `lipid`)
    assert s.n_flagged == 0 and s.verdict == "pass"
    assert abs(s.fwhm_water_hz - truth["water_fwhm_hz"]) < 0.3
    metab = [t for t in truth["transients"] if t["kind"] == "metabolite"]
    slope = np.polyfit([t["time_s"] for t in metab], [t["freq_hz"] for t in metab], 1)[0] * 60.0  # Hz/min
    assert s.drift_hz_per_min == pytest.approx(slope, abs=0.5)  # 0.3 Hz/min + the simulator's slow sinusoid
