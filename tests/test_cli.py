"""The public `mrsqc check` contract and clean failures."""

import json
import subprocess
import sys

import pytest

from qc_daemon.cli import main
from tests.conftest import FIXTURES

TRANSIENT_KEYS = {"index", "average", "set", "kind", "time_s", "freq_hz", "phase_deg", "fwhm_hz", "snr",
                  "snr_running", "flags", "accepted"}
SUMMARY_KEYS = {"n_transients", "n_flagged", "flagged_indices", "drift_hz_per_min", "drift_total_hz",
                "fwhm_water_hz", "fwhm_metab_hz", "snr_final", "verdict", "reasons"}


def test_check_writes_the_documented_outputs(tmp_path, capsys):
    assert main(["check", str(FIXTURES / "demo_drift_motion.dat"), "--out", str(tmp_path), "-q"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "transients.jsonl").read_text().splitlines()]
    truth = json.loads((FIXTURES / "demo_drift_motion.truth.json").read_text())
    assert [r["index"] for r in rows] == list(range(len(truth["transients"])))
    assert all(TRANSIENT_KEYS <= set(r) for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and summary["verdict"] in ("pass", "warn", "fail")
    corrupted = {t["index"] for t in truth["transients"] if t["corrupted"]}
    assert corrupted <= set(summary["flagged_indices"])
    assert "VERDICT" in capsys.readouterr().out


def test_check_dicom_folder_fixture(tmp_path):
    assert main(["check", str(FIXTURES / "small_dicom_dicom"), "-q"]) == 0


@pytest.mark.parametrize("name", ["sub-SiemensBrainPhantom_seq-svsse_ref-1_avg-2.twix", "SVS_30.IMA",
                                  "SVS_XA60.dcm", "xa60_7t_svs_se_combined"])
def test_check_every_real_file(real_dir, name, capsys):
    assert main(["check", str(real_dir / name), "-q"]) == 0


def _run(*args):
    return subprocess.run([sys.executable, "-m", "qc_daemon.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_inputs_exit_2_with_one_line_and_no_traceback(tmp_path, real_dir):
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x01\x02" * 4000)
    for path in (real_dir / "sub-SiemensBrainPhantom_seq-svslcosy_incomplete.twix", empty, junk,
                 tmp_path / "missing.dat"):
        res = _run("check", str(path))
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path.name) in lines[0] and "Traceback" not in res.stderr


def test_help_explains_units():
    res = _run("check", "--help")
    assert res.returncode == 0 and "--water" in res.stdout
    assert "Hz" in _run("--help").stdout


@pytest.mark.parametrize("name", ["demo_drift_motion.dat", "small_dicom_dicom"])
def test_patient_identifiers_never_reach_the_outputs(tmp_path, capsys, name):
    from qc_daemon.sources.twix_write import FakePatient

    fake = FakePatient()
    source = FIXTURES / name
    header_bytes = source.read_bytes() if source.is_file() else next(source.iterdir()).read_bytes()
    assert fake.name.encode() in header_bytes  # the input really carries them
    assert main(["check", str(source), "--out", str(tmp_path), "-q"]) == 0
    printed = capsys.readouterr()
    import gzip

    outputs = printed.out + printed.err + "".join(
        (gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()).decode("latin-1")
        for p in tmp_path.iterdir())  # the NIfTI-MRS outputs too
    for secret in (fake.name, fake.name.split("^")[0], fake.patient_id, fake.birth_date):
        assert secret not in outputs


def test_all_zero_twix_exits_2_naming_the_transient(tmp_path):
    import numpy as np

    from qc_daemon.sources.simulate import SimulationParams, simulate_scan
    from qc_daemon.sources.twix_write import write_twix

    sim = simulate_scan(SimulationParams(n_coils=2, n_points=256, averages=4, seed=1, events=[]))
    for t in sim.transients:
        t.data = np.zeros_like(t.data)
    path = write_twix(tmp_path / "zeros.dat", sim.scan, sim.transients, cutoff=(0, 0))
    res = _run("check", str(path))
    assert res.returncode == 2 and "all zero" in res.stderr and "Traceback" not in res.stderr


def test_json_logs_are_one_object_per_line():
    res = _run("--log-json", "check", str(FIXTURES / "missing.dat"))
    assert res.returncode == 2  # the error line itself is for people; logging setup must not break it
    import logging

    from qc_daemon.cli import JsonLogFormatter

    rec = logging.LogRecord("mrsqc.daemon", logging.WARNING, __file__, 1, "rejected message: %s", ("bad_json",), None)
    line = json.loads(JsonLogFormatter().format(rec))
    assert line["level"] == "WARNING" and line["message"] == "rejected message: bad_json"


def test_tui_refuses_a_bad_file_or_speed_with_one_line(tmp_path, capsys):
    """Bad input fails before the screen is taken over: exit 2, one line, no traceback."""
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    assert main(["tui", str(empty)]) == 2
    assert main(["tui", str(FIXTURES / "demo_drift_motion.dat"), "--speed", "0"]) == 2
    assert main(["tui", "--curve-secret", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mrsqc: error:") for line in err)


def test_tui_help_explains_keys_and_sources():
    out = subprocess.run([sys.executable, "-m", "qc_daemon.cli", "tui", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())  # argparse wraps lines
    for word in ("FILE", "--feed", "--snapshot", "--speed", "--export-dir", "--no-bell", "q quit", "? help"):
        assert word in text
