"""Every subcommand driven with generated argument values (issue 13): the exit code is 0 or 2 and stderr never
holds a traceback. The long-running parts (serving, following a feed, the demo) are stubbed: what is tested
is that every argument is checked and every bad one is one line."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qc_daemon import cli, demo, text_view
from qc_daemon.daemon import Daemon
from tests.conftest import FIXTURES

FIXTURE = str(FIXTURES / "demo_drift_motion.dat")
junk = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
paths = st.sampled_from([FIXTURE, "/no/such/file.dat", str(FIXTURES), "README.md", "/sys", "/dev/null", ""])
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10, 10).map(str), junk)
endpoints = st.one_of(st.sampled_from(["tcp://127.0.0.1:*", "tcp://0.0.0.0:*", "tcp://127.0.0.1:0", "foo",
                                       "tcp://127.0.0.1:99999", "ipc:///nonexistent/dir/x", "tcp://:5", ""]), junk)


def run(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


def check(argv: list[str]) -> None:
    code, err = run(argv)
    assert code in (0, 2), (argv, code, err[-800:])
    assert "Traceback" not in err, (argv, err[-800:])


@pytest.fixture(autouse=True)
def _no_long_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(Daemon, "serve", lambda self, stop: None)
    monkeypatch.setattr(Daemon, "warm_up", lambda self: 0.0)
    monkeypatch.setattr(text_view, "follow_feed", lambda *a, **k: None)
    monkeypatch.setattr(demo, "run_demo", lambda *a, **k: None)
    monkeypatch.setenv("MRSQC_DATA_DIR", str(tmp_path / "data"))


def opt(name: str, values) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), values.map(lambda v: [name, v]))


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(path=paths, water=opt("--water", paths), out=opt("--out", st.sampled_from(["/sys/x", "README.md/x", ""])),
       config=opt("--config", st.sampled_from(["/no/such.toml", "README.md", "pyproject.toml"])))
def test_check(path, water, out, config):
    check(["check", path, "-q", *water, *out, *config])


@SETTINGS
@given(out=st.sampled_from(["/sys/x", "README.md/x", ""]), averages=opt("--averages", numbers),
       coils=opt("--coils", numbers), points=opt("--points", numbers), snr=opt("--snr", numbers),
       name=opt("--name", junk), fmt=opt("--format", st.sampled_from(["twix", "dicom", "x"])))
def test_simulate(out, averages, coils, points, snr, name, fmt):
    check(["simulate", "--out", out, *averages, *coils, *points, *snr, *name, *fmt])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(averages=st.integers(20, 22), points=st.sampled_from(["256", "512"]), snr=st.floats(0.5, 20).map(repr))
def test_simulate_with_valid_values_writes(tmp_path_factory, averages, points, snr):
    out = tmp_path_factory.mktemp("sim")
    assert run(["simulate", "--out", str(out), "--averages", str(averages), "--coils", "2", "--points", points,
                "--snr", snr])[0] == 0
    assert (out / "sim.dat").exists()


@SETTINGS
@given(path=paths, to=opt("--to", endpoints), speed=opt("--speed", numbers),
       timeout=st.sampled_from([["--timeout", "0.2"], ["--timeout", "x"], ["--timeout", "-1"]]),
       key=opt("--key-file", st.sampled_from(["/no/key", "README.md", "pyproject.toml"])))
@example(path=FIXTURE, to=["--to", "tcp://127.0.0.1:*"], speed=[], timeout=["--timeout", "0.2"], key=[])
@example(path=FIXTURE, to=["--to", "ipc:///nonexistent/dir/x"], speed=["--speed", "1e308"],
         timeout=["--timeout", "0.2"], key=[])
def test_replay(path, to, speed, timeout, key):
    check(["replay", path, *to, *speed, *timeout, *key])


@SETTINGS
@given(ingest=opt("--ingest", endpoints), feed=opt("--feed", endpoints), heartbeat=opt("--heartbeat", numbers),
       config=opt("--config", st.sampled_from(["/no/such.toml", "README.md", "pyproject.toml"])),
       budget=opt("--spool-budget-gb", numbers), retention=opt("--spool-retention-days", numbers),
       timeout=opt("--producer-timeout", numbers))
@example(ingest=["--ingest", "tcp://0.0.0.0:*"], feed=[], heartbeat=[], config=[], budget=[], retention=[],
         timeout=[])
@example(ingest=[], feed=["--feed", "ipc:///nonexistent/dir/x"], heartbeat=["--heartbeat", "0"], config=[],
         budget=["--spool-budget-gb", "inf"], retention=[], timeout=[])
def test_daemon(ingest, feed, heartbeat, config, budget, retention, timeout, tmp_path_factory):
    data = tmp_path_factory.mktemp("d")
    check(["daemon", "--data-dir", str(data), "--snapshot", "tcp://127.0.0.1:*", "--feed", "tcp://127.0.0.1:*",
           "--ingest", "tcp://127.0.0.1:*", *ingest, *feed, *heartbeat, *config, *budget, *retention, *timeout])


@SETTINGS
@given(path=st.one_of(st.just([]), paths.map(lambda p: [p])), feed=opt("--feed", endpoints),
       snapshot=opt("--snapshot", endpoints), speed=opt("--speed", numbers),
       export=opt("--export-dir", st.sampled_from(["/sys/x", "README.md/x"])))
@example(path=[], feed=["--feed", "tcp://127.0.0.1:*"], snapshot=[], speed=[], export=[])
@example(path=[FIXTURE], feed=[], snapshot=[], speed=["--speed", "max"], export=[])
def test_tui(path, feed, snapshot, speed, export):
    check(["tui", *path, *feed, *snapshot, *speed, *export])


@SETTINGS
@given(out=st.sampled_from(["/sys/x", "README.md/x"]), name=junk)
def test_keys(out, name):
    check(["keys", "--out", out, "--name", name])


@SETTINGS
@given(speed=opt("--speed", numbers), text=st.sampled_from([[], ["--text"]]))
def test_demo(speed, text):
    check(["demo", *speed, *text])


def test_the_help_of_every_subcommand_explains_every_option():
    """Each subcommand has a description and every option its help text; numbers with a unit say which."""
    import argparse

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) >= {"check", "simulate", "daemon", "replay", "keys", "demo", "tui"}
    for name, sub in commands.items():
        assert sub.description and len(sub.description) > 30, name
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and len(action.help) > 8, (name, action.option_strings)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0 and out.getvalue().startswith(f"usage: mrsqc {name}")
    assert Path(FIXTURE).exists()
