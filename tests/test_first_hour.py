"""The technologist's and analyst's first hour (issue 13): every bad input is one line and exit 2 before any
work; config values are checked for meaning; `mrsqc tui` without a terminal prints lines and never spins;
exports go to the data folder; the words and numbers on screen are the ones in the docs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.daemon_support import free_endpoints

FIXTURE = FIXTURES / "demo_drift_motion.dat"


def mrsqc(*args: str, timeout: float = 120, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qc_daemon.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, **kw)


def one_line(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for w in words:
        assert w in res.stderr, res.stderr


@pytest.mark.parametrize("out", ["/sys/x", "/proc/x", "README.md/x"])
def test_check_refuses_an_unwritable_out_before_checking(out):
    res = mrsqc("check", str(FIXTURE), "--out", out, cwd=ROOT)
    one_line(res, "--out", "not a writable folder")
    assert res.stdout == ""  # no check ran: its summary would be printed first


@pytest.mark.parametrize("toml,words", [
    ("[registration]\nband_ppm = [4.05, 1.85]\n", ("registration.band_ppm", "low < high")),
    ("[frequency]\nwarn_band_ppm = -1\n", ("frequency.warn_band_ppm", "> 0")),
    ("[motion]\nz_limit = 0\n", ("motion.z_limit", "> 0")),
    ("[verdict]\nflagged_warn_fraction = 5\n", ("verdict.flagged_warn_fraction", "fraction")),
    ("[linewidth]\nwater_warn_ppm = 0.2\n", ("linewidth.water_warn_ppm", "failure limit")),
    ("[frequency]\nwarn_band_pmm = 0.04\n", ("unknown config key frequency.warn_band_pmm",)),
])
@pytest.mark.parametrize("command", ["check", "daemon"])
def test_config_values_are_checked_for_meaning_naming_the_key(tmp_path, toml, words, command):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    args = ["check", str(FIXTURE)] if command == "check" else \
        ["daemon", "--data-dir", str(tmp_path / "d"), "--ingest", "tcp://127.0.0.1:*", "--feed",
         "tcp://127.0.0.1:*", "--snapshot", "tcp://127.0.0.1:*"]
    res = mrsqc(*args, "--config", str(cfg), timeout=60)
    one_line(res, *words)
    assert "cannot bind" not in res.stderr


@pytest.mark.parametrize("args,words", [
    (["replay", str(FIXTURE), "--to", "foo"], ("--to", "'foo' is not a ZeroMQ endpoint")),
    (["replay", str(FIXTURE), "--to", "tcp://127.0.0.1:*"], ("--to",)),
    (["replay", str(FIXTURE), "--speed", "fast"], ("--speed", "'fast'")),
    # hypothesis found it: a tiny pace made the replay's wait overflow time.sleep (a traceback, exit 1)
    (["tui", str(FIXTURE), "--speed", "3.0348888135481738e-226"], ("--speed", "outside")),
    (["simulate", "--out", "/sys/x"], ("--out", "not a writable folder")),
    (["simulate", "--out", ""], ("--out", "is empty")),  # not the current folder (a test once filled the checkout)
    (["simulate", "--out", "/tmp/mrsqc-unused", "--points", "3"], ("--points",)),
    (["tui", "--feed", "foo", "--snapshot", "bar"], ("--feed", "'foo'")),
    (["tui", "--export-dir", "/sys/x"], ("--export-dir",)),
])
def test_bad_values_are_one_line(args, words):
    one_line(mrsqc(*args), *words)


@pytest.mark.parametrize("name,content,words", [
    ("x.rda", b">>> Begin of header <<<\r\nPatientName: Doe^Jane\r\n", ("Siemens RDA", "could not read")),
    ("x.SPAR", b"!------\nexamination_name : x\nsynthesizer_frequency : 123\n", ("SDAT file is not beside it",)),
    ("x.SDAT", b"\0" * 64, ("Philips SDAT/SPAR", "SPAR file is not beside it")),
    ("p12345.7", b"\0" * 64, ("GE P-file", "revision 0")),
    ("x.list", b"# .list\n", ("Philips DATA/LIST", "beside it")),
    ("x.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, ("not a readable MRD (ISMRMRD) HDF5 dataset",)),
])
def test_damaged_or_incomplete_vendor_files_are_one_line_naming_the_format(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    res = mrsqc("check", str(path))
    one_line(res, *words)
    assert "PatientName" not in res.stderr and "Doe" not in res.stderr


def test_a_damaged_nifti_is_one_line(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(b"\x5c\x01" + b"\0" * 342 + b"n+1\0" + b"\0" * 16)
    one_line(mrsqc("check", str(path)), "not a readable NIfTI file")


def test_tui_of_a_file_without_a_terminal_prints_lines_and_ends():
    res = mrsqc("tui", str(FIXTURE))
    assert res.returncode == 0 and "\x1b[" not in res.stdout + res.stderr  # no escape codes
    lines = res.stdout.splitlines()
    assert sum(1 for line in lines if line[:4].strip().isdigit()) == 50 and "VERDICT: WARN" in res.stdout


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_tui_of_a_daemon_without_a_terminal_says_so_and_waits_without_spinning():
    eps = free_endpoints()
    proc = subprocess.Popen([sys.executable, "-m", "qc_daemon.cli", "tui", "--feed", eps.feed, "--snapshot",
                             eps.snapshot, "--heartbeat-timeout", "0.5"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3.0)  # started, imported, tried a few times
        before = _cpu_s(proc.pid)
        time.sleep(3.0)
        used = _cpu_s(proc.pid) - before
        assert proc.poll() is None and used < 0.5, used  # a busy loop burns ~3 s of CPU in 3 s
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert f"no daemon answering at {eps.feed}" in out and "\x1b[" not in out + err


def shown(probe, keys: tuple[str, ...] = ()):
    """Feed the whole fixture scan to a view at 120 x 40, press ``keys``, return ``probe(app)``."""
    import asyncio

    from tests.tui_support import fixture_messages, settle
    from tui.app import QCApp
    from tui.messages import FeedMessages

    msgs = fixture_messages()

    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=(120, 40)) as pilot:
            app.post_message(FeedMessages(msgs))
            await settle(pilot, msgs[-1]["feed_seq"])
            for key in keys:
                await pilot.press(key)
                await settle(pilot)
            return probe(app)

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_export_goes_to_the_data_folder_named_in_full(tmp_path, monkeypatch):
    monkeypatch.setenv("MRSQC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    exported = shown(lambda app: [e.text for e in app.state.events if "exported" in e.text], keys=("e",))
    folders = list((tmp_path / "data" / "exports").iterdir())
    assert len(folders) == 1 and (folders[0] / "summary.json").exists()
    assert str(folders[0].resolve()) in exported[0]  # the full path, not a relative one
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # nothing in the folder the view started from


def test_the_scan_line_rounds_te_and_tr_to_whole_ms():
    from dataclasses import replace

    from qc_daemon.sources.open import open_recording
    from tui.scan_state import describe

    scan = replace(open_recording(FIXTURE).scan, te_ms=31.9136, tr_ms=2000.4)
    assert "TE 32 ms" in describe(scan) and "TR 2000 ms" in describe(scan)


def test_an_axis_of_averages_has_whole_number_ticks():
    from tui import braille

    p = braille.Plot(x_label="averages", x_integer=True)
    p.x_range = (0.0, 2.0)
    p.line([0, 1, 2], [1, 2, 3], "green")
    axis = braille.render(p, 40, 6).plain.splitlines()[-1]
    ticks = axis.replace("averages", "").split()
    assert len(ticks) >= 2 and all(t.isdigit() for t in ticks), axis  # 0 and 1, never 0.5 or 1.5


def test_demo_help_says_the_view_waits_for_q_and_check_help_lists_the_formats():
    demo = mrsqc("demo", "--help").stdout
    assert "until q" in demo and "--text" in demo
    check = " ".join(mrsqc("check", "--help").stdout.split())
    for fmt in ("Siemens twix", "enhanced MRS DICOM", "mrsqc spool", "Siemens RDA", "NIfTI-MRS"):
        assert fmt in check
    assert "coils x points x dwell" in check


def test_the_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"


def test_readme_tui_doc_and_bench_give_one_lag_figure():
    readme, tui_doc = (ROOT / "README.md").read_text(), (ROOT / "docs" / "tui.md").read_text()
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    figure = results.split("view lag behind the feed, p50 / p99 / max | ")[1].split(" ms")[0].split(" / ")[2]
    assert f"{figure} ms" in readme and f"{figure} ms" in tui_doc


def test_counts_are_in_averages_everywhere_on_screen():
    """The flagged count, the scan line and the frequency plot count averages as the scanner does (the two water
    references of the fixture are not in 'of 48', nor in the plot's x axis)."""
    from tui.panels import MetricsPanel, ScanLine
    from tui.plots import BraillePlot

    panel, line, freq = shown(lambda app: (app.query_one(MetricsPanel).render().plain,
                                           app.query_one(ScanLine).render().plain,
                                           app.query_one("#trace", BraillePlot).plot))
    assert "4 of 48 averages" in panel and "48/48 averages" in line
    xs = [x for layer in freq.layers if layer.kind == "points" for x in layer.x]
    assert freq.x_label == "average" and min(xs) == 1 and max(xs) == 48
