"""report.html (issue 18): self-contained, re-rendered from saved results, written by check --out and the daemon,
and looked at in a real browser (headless Chromium, when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from qc_daemon.cli import main
from qc_daemon.html_report import COLOURS, LINE, render
from qc_daemon.model import FAIL, WARN
from qc_daemon.sources.twix_write import FakePatient
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "demo_drift_motion.dat"
# anything a browser would fetch; references to ids in the page itself (href="#..", url(#..)) are fine
EXTERNAL = re.compile(r"""(\bsrc\s*=|\bhref\s*=\s*["'](?!#)|url\((?!#)|@import|<link\b|<script\b|<iframe\b)""",
                      re.I)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert main(["check", str(FIXTURE), "--out", str(out), "-q"]) == 0
    return out


def test_the_report_is_one_self_contained_page_with_the_verdict_plots_and_numbers(checked):
    page = (checked / "report.html").read_text()
    assert not EXTERNAL.search(page)  # nothing to fetch: no src/href/url/import/link/script
    assert page.count('href="#') > 0 and EXTERNAL.search('<img src="x.png">')
    assert len(page.encode()) < 600_000
    assert "<svg" in page and page.count("<svg") >= 6  # trace, growth, spectra, per-transient panels
    assert ">WARN</div>" in page and "4 motion-corrupted averages (8%)" in page
    assert "before: all 48 as acquired" in page and "after: 44 accepted, frequency- and phase-aligned" in page
    for text in ("averages excluded", "4 (indices [15, 16, 39, 43])", "exclusion criteria", "config digest sha256:",
                 "SNR (NAA, noise", "tCr linewidth"):
        assert text in page, text
    fake = FakePatient()
    assert fake.name.encode() in FIXTURE.read_bytes()
    assert fake.name not in page and fake.patient_id not in page


def test_the_aligned_average_is_sharper_than_the_unaligned(checked):
    data = json.loads((checked / "report.json").read_text())
    (sp,) = data["spectra"]
    before, after = np.array(sp["before"]), np.array(sp["after"])
    assert after.max() > 1.15 * before.max()  # drift smears the unaligned lines: the aligned NAA stands taller
    ppm = np.linspace(sp["ppm_lo"], sp["ppm_hi"], before.size)
    assert abs(ppm[np.argmax(after)] - 2.01) < 0.05  # NAA where it belongs


def test_mrsqc_report_re_renders_from_saved_results_without_the_raw_data(checked, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(checked, folder)
    first = (folder / "report.html").read_text()
    (folder / "report.html").unlink()
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.html").read_text() == first
    (folder / "report.json").unlink()  # an older folder: summary.json + transients.jsonl only
    assert main(["report", str(folder), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert ">WARN</div>" in page and "Not available: the spectra were not saved" in page
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "no saved mrsqc results" in capsys.readouterr().err


def test_the_daemon_writes_the_report_in_the_scan_folder(daemon):
    from qc_daemon.check import run_check
    from qc_daemon.replay import replay
    from tests.daemon_support import wait_until

    d, eps, ctx = daemon
    delivery = replay(FIXTURE, eps.ingest, speed=None)
    assert delivery.complete
    folder = d.data_dir / run_check(FIXTURE).scan.scan_id
    wait_until(lambda: (folder / "report.html").is_file(), what="report.html")
    data = json.loads((folder / "report.json").read_text())
    assert data["summary"]["verdict"] == WARN and len(data["spectra"]) == 1
    # a journal folder without report.json (an older daemon's, or one recovered from its journal alone): the
    # journal's scan_start gives the scan and the checks' declarations, so the plots are drawn, the spectra not
    (folder / "report.json").unlink()
    assert main(["report", str(folder), "--out", str(folder / "again.html")]) == 0
    page = (folder / "again.html").read_text()
    assert "Frequency shift, Hz" in page and "Running SNR" in page and "Not available: the spectra" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(page, png, height=1100) -> np.ndarray:
    subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size=1200,{height}", f"--screenshot={png}", page.as_uri()],
                   capture_output=True, timeout=60, check=True)
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def _share(img: np.ndarray, colour: str, tol: int = 12) -> float:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return float((np.abs(img - rgb).max(axis=2) <= tol).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium; "
                                             "make test installs nothing system-wide)")
def test_chromium_shows_the_verdict_and_the_plots(checked, tmp_path):
    from tests.tui_support import bad_scan

    img = screenshot(checked / "report.html", tmp_path / "warn.png")
    top = img[: img.shape[0] // 6]
    assert _share(top, COLOURS[WARN]) > 0.01  # the amber WARN badge near the top
    assert _share(top, COLOURS[FAIL]) < 0.001
    assert _share(img, LINE) > 0.001  # the plots' lines drawn (0.24 % of the pixels)
    bare = tmp_path / "bare.html"  # the control: the same page without its plots has none of that colour
    bare.write_text(re.sub(r"<svg.*?</svg>", "", (checked / "report.html").read_text(), flags=re.S))
    assert _share(screenshot(bare, tmp_path / "bare.png"), LINE) < 0.0001
    # a scan that ends FAIL shows the red badge
    from qc_daemon.sources.twix_write import write_twix

    sim = bad_scan()
    write_twix(tmp_path / "bad.dat", sim.scan, sim.transients)
    assert main(["check", str(tmp_path / "bad.dat"), "--out", str(tmp_path / "bad"), "-q"]) == 0
    img = screenshot(tmp_path / "bad" / "report.html", tmp_path / "fail.png")
    top = img[: img.shape[0] // 6]
    assert _share(top, COLOURS[FAIL]) > 0.01 and _share(top, COLOURS[WARN]) < 0.001


def test_render_is_deterministic(checked):
    data = json.loads((checked / "report.json").read_text())
    assert render(data) == render(data)
