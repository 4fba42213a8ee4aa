"""Provenance in every summary (summary.json, the journal, a journal-only recovery): program, version, a digest
of the effective config, the checks that ran."""

from __future__ import annotations

import json

from qc_daemon import __version__
from qc_daemon.check import run_check
from qc_daemon.config import load_config
from qc_daemon.journal import Journal, close_from_journal
from qc_daemon.provenance import config_digest
from qc_daemon.report import write_outputs
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "demo_drift_motion.dat"


def test_summary_json_says_what_made_it(tmp_path):
    run = run_check(FIXTURE)
    write_outputs(tmp_path, run.results, run.summary)
    prov = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    assert prov == {"program": "mrsqc", "version": __version__, "config_digest": config_digest(load_config()),
                    "checks": ["frequency", "linewidth", "motion", "snr"]}
    disabled = run_check(FIXTURE, config=load_config(overrides={"checks": {"disable": ["snr"]}}))
    assert disabled.summary.provenance["checks"] == ["frequency", "linewidth", "motion"]


def test_the_config_digest_follows_the_values_not_their_source(tmp_path):
    base = config_digest(load_config())
    assert base.startswith("sha256:") and len(base) == len("sha256:") + 16
    assert config_digest(load_config()) == base
    same = tmp_path / "same.toml"
    same.write_text("[snr]\ntarget = 0.0\n")  # the default, written out
    assert config_digest(load_config(same)) == base
    assert config_digest(load_config(overrides={"snr": {"target": 20.0}})) != base


def test_a_journal_keeps_it_and_its_recovery_reports_it(tmp_path):
    run = run_check(FIXTURE)
    journal = Journal(tmp_path, run.scan, fsync=False, provenance=run.summary.provenance)
    for r in run.results[:20]:
        journal.result(r)
    journal.sync()
    start = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[0])
    assert start["provenance"] == run.summary.provenance
    recovered = close_from_journal(tmp_path)
    assert recovered.provenance == run.summary.provenance and recovered.status == "interrupted"
