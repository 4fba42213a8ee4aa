"""The check contract (docs/plugins.md), proved from outside: a third-party check installed by entry point
shows up everywhere a built-in one does; a disabled built-in check leaves its fields absent, not wrong; a
check that returns a name it did not declare is stopped."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qc_daemon import plugin_api
from qc_daemon.config import load_config
from qc_daemon.engine import ScanQC
from qc_daemon.errors import InputError
from qc_daemon.session import scan_messages
from qc_daemon.sources.open import open_recording
from tests.conftest import FIXTURES, ROOT
from tests.tui_support import settle
from tui.app import QCApp
from tui.messages import FeedMessages
from tui.panels import MetricsPanel

THIRD_PARTY = Path(__file__).parent / "thirdparty"
FIXTURE = FIXTURES / "demo_drift_motion.dat"
MRSQC = Path(sys.executable).parent / "mrsqc"


def check(out: Path, *args: str, third_party: bool = False) -> str:
    env = dict(os.environ)
    if third_party:
        env["PYTHONPATH"] = os.pathsep.join([str(THIRD_PARTY), env.get("PYTHONPATH", "")])
    done = subprocess.run([str(MRSQC), "check", str(FIXTURE), "--out", str(out), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read(out: Path) -> tuple[list[dict], dict]:
    return [json.loads(line) for line in open(out / "transients.jsonl")], json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    text = check(out)
    return text, *read(out)


@pytest.fixture
def installed():
    """The example check on the path for this process, as `pip install` would make it."""
    sys.path.insert(0, str(THIRD_PARTY))
    importlib.invalidate_caches()
    plugin_api.rescan_checks()
    try:
        yield
    finally:
        sys.path.remove(str(THIRD_PARTY))
        sys.modules.pop("mrsqc_example_check", None)
        importlib.invalidate_caches()
        plugin_api.rescan_checks()


def test_a_third_party_check_reaches_results_summary_report_and_config(tmp_path, plain):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[residual_water]\nwarn_snr = 0.5\n")
    text = check(tmp_path / "out", "--config", str(cfg), third_party=True)
    results, summary = read(tmp_path / "out")
    metab = [r for r in results if r["kind"] == "metabolite"]
    assert all(isinstance(r["residual_water_snr"], float) and r["residual_water_snr"] > 0 for r in metab)
    assert summary["residual_water_snr_median"] > 0.5
    assert "residual water: median" in text  # its line of the text summary
    assert any(r.startswith("residual water") for r in summary["reasons"])  # its finding, at its configured limit
    assert summary["verdict"] in ("warn", "fail")
    # everything the built-in checks measured is as without it
    _, plain_results, plain_summary = plain
    for mine, theirs in zip(results, plain_results):
        assert {k: v for k, v in mine.items() if k != "residual_water_snr"} == theirs
    assert summary["drift_hz_per_min"] == plain_summary["drift_hz_per_min"]
    # a misspelt key of its section is an error that names it
    cfg.write_text("[residual_water]\nwarn_snrr = 1\n")
    env = dict(os.environ, PYTHONPATH=str(THIRD_PARTY))
    done = subprocess.run([str(MRSQC), "check", str(FIXTURE), "--config", str(cfg)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 2 and "unknown config key residual_water.warn_snrr" in done.stderr


def shown(messages: list[dict]) -> tuple[str, str, str]:
    """The live view after a whole scan's messages: (metrics panel, trace plot, growth plot) as rendered."""
    out = []

    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=(120, 40)) as pilot:
            app.post_message(FeedMessages(messages))
            await settle(pilot, messages[-1]["feed_seq"])
            out.extend(str(app.query_one(q).render()) for q in (MetricsPanel, "#trace", "#growth"))
    asyncio.run(asyncio.wait_for(main(), 90))
    return tuple(out)


def test_a_third_party_check_appears_in_the_live_view(installed):
    rec = open_recording(FIXTURE)
    messages = scan_messages(rec.scan, list(rec.transients))
    assert "residual_water" in [c["name"] for c in messages[0]["checks"]]
    assert "residual_water_warn" in messages[0]["limits"]

    panel, _, _ = shown(messages)
    assert "res. water" in panel and "x noise SD, latest" in panel


def test_a_disabled_check_leaves_its_values_absent_and_the_rest_unchanged(tmp_path, plain):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[checks]\ndisable = ["snr"]\n')
    text = check(tmp_path / "out", "--config", str(cfg))
    results, summary = read(tmp_path / "out")
    plain_text, plain_results, plain_summary = plain
    snr_fields, snr_metrics = {"snr", "snr_running"}, {m.name for m in plugin_api.installed_checks()["snr"]
                                                       .declaration.metrics}
    for mine, theirs in zip(results, plain_results):
        assert not snr_fields & set(mine) and not snr_metrics & set(mine["metrics"])
        expect = {k: v for k, v in theirs.items() if k not in snr_fields}
        expect["metrics"] = {k: v for k, v in theirs["metrics"].items() if k not in snr_metrics}
        expect["unmeasured"] = {k: v for k, v in theirs["unmeasured"].items() if k not in snr_fields | snr_metrics}
        assert mine == expect
    assert "snr_final" not in summary and "snr" not in summary["details"]
    assert summary["drift_hz_per_min"] == plain_summary["drift_hz_per_min"]
    assert "SNR (NAA" in plain_text and "SNR (NAA" not in text


def test_a_disabled_check_leaves_its_views_empty_in_the_live_view():
    rec = open_recording(FIXTURE)
    messages = scan_messages(rec.scan, list(rec.transients),
                             config=load_config(overrides={"checks": {"disable": ["snr", "frequency"]}}))

    panel, trace, growth = shown(messages)
    assert "water FWHM" in panel and "SNR 1 shot" not in panel and "phase" not in panel
    assert "no check that ran offers" in trace and "no check that ran offers" in growth


def test_unknown_disabled_check_is_a_config_error():
    with pytest.raises(InputError, match="no such check"):
        load_config(overrides={"checks": {"disable": ["snrr"]}})


@pytest.mark.parametrize("window", [[0.9, 4.0], [1.8, 0.9]])
def test_a_lipid_window_near_water_or_reversed_is_a_config_error(window):
    """The water-tail fit of lipid_power needs the window >= 1 ppm from water (its series diverges there)."""
    with pytest.raises(InputError, match="lipid_window_ppm"):
        load_config(overrides={"motion": {"lipid_window_ppm": window}})


class _Sloppy:
    """Returns a metric it never declared."""

    name = "sloppy"
    declaration = plugin_api.Declaration()

    def start(self, scan, config):
        pass

    def measure(self, ctx):
        return plugin_api.CheckResult(metrics={"made_up_hz": 1.0})

    def update(self, ctx, accepted, measured):
        return plugin_api.CheckResult()

    def finish(self, ctx):
        return plugin_api.SummaryPart()

    def limits(self, scan, config):
        return []


def test_an_undeclared_name_is_a_contract_error():
    from qc_daemon.sources.simulate import SimulationParams, simulate_scan

    sim = simulate_scan(SimulationParams(n_coils=2, n_points=512, averages=10, seed=1, events=[]))
    qc = ScanQC(sim.scan, checks=[_Sloppy()])
    with pytest.raises(plugin_api.ContractError, match="sloppy.*made_up_hz"):
        for t in sim.transients:
            qc.process(t)
    lw = plugin_api.installed_checks()["linewidth"]
    with pytest.raises(plugin_api.ContractError, match="declared by both"):
        ScanQC(sim.scan, checks=[lw(), lw()])


class _Alarmist(_Sloppy):
    """Declares nothing, but finds something."""

    name = "alarmist"

    def measure(self, ctx):
        return plugin_api.CheckResult()

    def finish(self, ctx):
        return plugin_api.SummaryPart(findings=[plugin_api.Finding(plugin_api.FAIL, "the sky is falling", "sky")])


def test_an_undeclared_finding_is_a_contract_error():
    from qc_daemon.sources.simulate import SimulationParams, simulate_scan

    sim = simulate_scan(SimulationParams(n_coils=2, n_points=512, averages=10, seed=1, events=[]))
    qc = ScanQC(sim.scan, checks=[_Alarmist()])
    for t in sim.transients:
        qc.process(t)
    with pytest.raises(plugin_api.ContractError, match="finding 'sky'"):
        qc.finish()


class _Mislabelled(_Sloppy):
    """Its panel row names a metric it never declared (a typo)."""

    name = "mislabelled"
    declaration = plugin_api.Declaration(
        metrics=(plugin_api.Metric("width_hz", "Hz", "a width"),),
        display=plugin_api.Display(panel=(plugin_api.PanelRow("width", "widht_hz", "metabolite", 1),)))


def test_a_display_that_names_an_undeclared_value_is_a_contract_error():
    from qc_daemon.sources.simulate import SimulationParams, simulate_scan

    sim = simulate_scan(SimulationParams(n_coils=2, n_points=512, averages=10, seed=1, events=[]))
    with pytest.raises(plugin_api.ContractError, match="widht_hz"):
        ScanQC(sim.scan, checks=[_Mislabelled()])
