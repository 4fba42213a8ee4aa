"""`mrsqc study` (issue 18): discovery and water pairing, parallel checks, study.tsv, index.html, re-runs,
unreadable files as rows."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from qc_daemon.cli import main
from qc_daemon.simulate_files import write_simulation
from qc_daemon.study import discover, pair_water, progress_line
from tests.conftest import FIXTURES, ROOT


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """Two simulated twix scans (one in a subfolder), a NIfTI-MRS pair with its water reference, a per-transient
    DICOM folder, an empty .dat, a file that is no recording, and a previous study's output (to be skipped)."""
    root = tmp_path_factory.mktemp("study")
    write_simulation(root, name="a", averages=24, n_coils=4, n_points=1024, seed=1)
    write_simulation(root / "sub", name="b", formats="twix,nifti", averages=24, n_coils=4, n_points=1024, seed=2)
    shutil.copytree(FIXTURES / "small_dicom_dicom", root / "dicom_series")
    (root / "empty.dat").write_bytes(b"")
    (root / "notes.md").write_text("not a scan")
    (root / "old_study").mkdir()
    (root / "old_study" / "study.tsv").write_text("scan\n")
    shutil.copy(FIXTURES / "demo_drift_motion.dat", root / "old_study" / "x.dat")
    return root


def test_discovery_finds_every_scan_and_pairs_the_unambiguous_water(study_dir):
    scans = {s.name: s for s in discover([study_dir])}
    assert set(scans) == {"a.dat", "dicom_series", "empty.dat", "sub__b.dat", "sub__b.nii.gz"}
    assert scans["sub__b.nii.gz"].water.name == "b_wref.nii.gz"  # NAME + NAME_wref of the same format
    assert scans["a.dat"].water is None and scans["dicom_series"].path.is_dir()


def test_pairing_rules():
    def pairs(*names):
        return {s.path.name: (s.water.name if s.water else None) for s in pair_water([Path("d") / n for n in names])}

    assert pairs("metab_raw.nii.gz", "wref_raw.nii.gz") == {"metab_raw.nii.gz": "wref_raw.nii.gz"}
    assert pairs("s1.SDAT", "s1_water.SDAT", "s2.SDAT") == {"s1.SDAT": "s1_water.SDAT", "s2.SDAT": None}
    # ambiguous: two metabolite files beside one water file; a water file of another format
    assert pairs("a_raw.nii.gz", "b_raw.nii.gz", "wref_raw.nii.gz") == {"a_raw.nii.gz": None, "b_raw.nii.gz": None,
                                                                          "wref_raw.nii.gz": None}
    assert pairs("metab.dat", "wref.nii.gz") == {"metab.dat": None, "wref.nii.gz": None}
    # BIDS entities with '-' are not words: 'ref-1' names no water reference
    assert pairs("sub-1_seq-svsse_ref-1_avg-1.twix", "sub-1_seq-svsse_ref-1_avg-2.twix") == \
        {"sub-1_seq-svsse_ref-1_avg-1.twix": None, "sub-1_seq-svsse_ref-1_avg-2.twix": None}


def test_a_study_checks_everything_in_parallel_and_writes_its_table_and_index(study_dir, tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "out"
    assert main(["study", str(study_dir), "--out", str(out), "--jobs", "2"]) == 0
    table = pd.read_csv(out / "study.tsv", sep="\t", keep_default_na=False)
    assert len(table) == 5
    rows = table.set_index("scan")
    assert rows.loc["empty.dat", "verdict"] == "error" and "empty" in rows.loc["empty.dat", "error"]
    checked = rows.drop(index="empty.dat")
    assert set(checked["verdict"]) <= {"pass", "warn", "fail"} and (checked["error"] == "").all()
    assert rows.loc["sub__b.nii.gz", "water_file"].endswith("b_wref.nii.gz")
    assert float(rows.loc["a.dat", "te_ms"]) == 30.0 and int(rows.loc["a.dat", "n_metabolite"]) == 24
    for col in ("drift_hz_per_min", "fwhm_metab_hz", "snr_final"):
        assert col in table.columns
    # a scan's outputs equal `mrsqc check --out` of it
    assert main(["check", str(study_dir / "a.dat"), "--out", str(tmp_path / "single"), "-q"]) == 0
    assert (out / "scans" / "a.dat" / "transients.jsonl").read_text() == \
        (tmp_path / "single" / "transients.jsonl").read_text()
    assert (out / rows.loc["a.dat", "report"]).is_file()
    # the index links every report, filters by verdict, fetches nothing
    index = (out / "index.html").read_text()
    for name in checked.index:
        assert f"href='scans/{name}/report.html'" in index
    assert "id='verdict'" in index and "sortBy(" in index
    assert not re.search(r"""(\bsrc\s*=|href\s*=\s*['"]https?:|url\(|@import|<link\b)""", index)
    # every column is defined in docs/results.md
    docs = (ROOT / "docs" / "results.md").read_text().split("## study.tsv", 1)[1].split("\n## ", 1)[0]
    for col in table.columns:
        assert re.search(rf"\b{col}\b", docs), col
    err = capsys.readouterr().err
    assert "5/5 scans" in err and "ETA" in err and "unreadable:" in err


def test_a_rerun_skips_what_is_done_unless_forced(study_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["study", str(study_dir / "sub"), "--out", str(out)]) == 0
    first = (out / "study.tsv").read_text()
    key = out / "scans" / "b.dat" / "study_key.json"
    mtime = key.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["study", str(study_dir / "sub"), "--out", str(out)]) == 0
    assert "(unchanged)" in capsys.readouterr().err and key.stat().st_mtime_ns == mtime
    assert (out / "study.tsv").read_text() == first
    assert main(["study", str(study_dir / "sub"), "--out", str(out), "--force", "-q"]) == 0
    assert key.stat().st_mtime_ns > mtime
    # another config is another study of the same files: checked again
    cfg = tmp_path / "c.toml"
    cfg.write_text("[motion]\nz_limit = 5.0\n")
    capsys.readouterr()
    assert main(["study", str(study_dir / "sub"), "--out", str(out), "--config", str(cfg)]) == 0
    assert "(unchanged)" not in capsys.readouterr().err


def test_nothing_checkable_is_exit_2_and_an_unreadable_file_alone_too(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert main(["study", str(tmp_path / "in"), "--out", str(tmp_path / "o1")]) == 2
    assert "no scan found" in capsys.readouterr().err
    (tmp_path / "in" / "broken.dat").write_bytes(b"")
    assert main(["study", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "-q"]) == 2
    assert "no scan could be checked" in capsys.readouterr().err
    assert (tmp_path / "o2" / "study.tsv").read_text().count("\n") == 2  # the header and the error's row


def test_progress_line_has_counts_and_an_eta():
    line = progress_line(3, 12, 90.0, "x.dat PASS")
    assert line.startswith("[######..................] 3/12 scans, 1m30s elapsed, ETA 4m30s; last: x.dat PASS")
    assert json.dumps(line)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_index_filters_and_sorts_in_a_browser(study_dir, tmp_path):
    """The page's own script run by Chromium: filter to one verdict, then sort by a column."""
    import subprocess

    out = tmp_path / "out"
    assert main(["study", str(study_dir), "--out", str(out), "-q"]) == 0
    page = (out / "index.html").read_text()
    probe = out / "probe.html"  # the index with two clicks' worth of script at its end
    probe.write_text(page.replace("</body>", "<script>document.getElementById('verdict').value='error';filt();"
                                             "sortBy(0);sortBy(0);</script></body>"))
    dom = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=60, check=True).stdout
    rows = re.findall(r"<tr data-verdict=\"(\w+)\"( style=\"display: none;\")?", dom)
    assert len(rows) == 5
    assert [v for v, hidden in rows if not hidden] == ["error"]  # only the unreadable file's row is shown
    assert all(hidden for v, hidden in rows if v != "error")
    verdicts = [v for v, _ in rows]
    assert verdicts == sorted(verdicts, reverse=True) != re.findall(r"<tr data-verdict='(\w+)'", page)


SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(SOFFICE is None, reason="no LibreOffice installed (Debian: apt-get install "
                                            "libreoffice-calc-nogui)")
def test_study_tsv_opens_in_a_spreadsheet_cell_for_cell(study_dir, tmp_path):
    """LibreOffice Calc imports study.tsv as tab-separated UTF-8 and exports it again: every cell as pandas reads it."""
    import subprocess

    import pandas as pd

    out = tmp_path / "out"
    assert main(["study", str(study_dir), "--out", str(out), "-q"]) == 0
    subprocess.run([SOFFICE, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo", "--convert-to",
                    "csv:Text - txt - csv (StarCalc):44,34,76,1", "--infilter=CSV:9,34,76,1", "--outdir",
                    str(tmp_path / "csv"), str(out / "study.tsv")], capture_output=True, timeout=120, check=True)
    calc = pd.read_csv(tmp_path / "csv" / "study.csv", dtype=str, keep_default_na=False)
    ours = pd.read_csv(out / "study.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(calc.columns) == list(ours.columns) and calc.shape == ours.shape == (5, len(ours.columns))
    for col in ("scan", "file", "verdict", "reasons", "error", "report"):
        assert list(calc[col]) == list(ours[col]), col
    for col in ("te_ms", "n_transients", "drift_hz_per_min", "snr_final"):  # numbers stay numbers
        assert [float(x) if x else None for x in calc[col]] == [float(x) if x else None for x in ours[col]], col


def test_a_days_live_scans_are_rows_from_the_daemons_saved_results(daemon, tmp_path):
    """`mrsqc study DATA_DIR`: each daemon scan folder is a row from its summary, with its report; not re-checked."""
    from qc_daemon.replay import replay
    from tests.daemon_support import wait_until

    d, eps, ctx = daemon
    assert replay(FIXTURES / "demo_drift_motion.dat", eps.ingest, speed=None).complete
    wait_until(lambda: any(d.data_dir.glob("*/report.html")), what="the scan's report")
    out = tmp_path / "day"
    assert main(["study", str(d.data_dir), "--out", str(out), "-q"]) == 0
    import pandas as pd

    table = pd.read_csv(out / "study.tsv", sep="\t", keep_default_na=False)
    (row,) = table.to_dict("records")
    assert row["verdict"] == "warn" and row["n_flagged"] == 4 and "saved results (not re-checked)" in row["notes"]
    assert (out / row["report"]).read_text() == next(d.data_dir.glob("*/report.html")).read_text()
