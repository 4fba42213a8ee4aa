"""Modal screens: help (keys and what every number means) and the scan history."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Markdown, Static

from qc_daemon.model import verdict_word

from .scan_state import FeedState

HELP = """\
# mrsqc — keys

| key | does |
|---|---|
| `q` | quit (the daemon and the scan go on) |
| `p` | pause / resume the plots, tables and log (the banner stays live; data keep arriving) |
| `e` | export the shown scan's report (transients.jsonl, summary.json, summary.txt) |
| `h` | history: pick a finished scan to review |
| `l` | follow the live (newest) scan again |
| `?` | this help; `escape` closes it |
| `tab` | focus the next part (plots, flagged table, event log); arrows, Page and End then scroll it |

The terminal bell rings once when the shown scan turns FAIL (`mrsqc tui --no-bell` turns it off).

# What the numbers mean

- **Banner**: the live verdict from every check so far (`PASS` / `WARN` / `FAIL`) and its reasons; at the
  end of the scan, the final verdict. `WAIT`: connected, no scan yet. `NO DAEMON`: nothing answers; retrying.
- **Frequency shift** (Hz): the measured shift of each transient vs the scan reference (the mean of the
  first 8), **positive = towards higher ppm**. Dots: single transients (red = flagged). Line: the causal
  trend (linear fit over the last 60 s). Shaded band: the warning limit (±0.04 ppm by default).
  Drift rate: whole-scan linear fit, Hz/min.
- **Running SNR**: NAA peak height (max real part, 1.8–2.2 ppm) of the running average of accepted
  transients / SD of the real noise in −2–0 ppm after a quadratic detrend (FID-A `op_getSNR`). Grey
  line: the projection to the planned averages (SNR grows as √n). Magenta rule: the target SNR, if set.
- **Spectrum**: real part, aligned and phased; grey = the latest transient, green = the running average;
  units: noise SD of one transient.
- **Water FWHM**: full width at half maximum of the water peak of the water reference (Hz; FID-A
  `op_getLW`, zero-filled ×8). **tCr / NAA FWHM**: of the running average (Hz). Colours: yellow above the
  warning limit, red above the failure limit.
- **Phase**: zero-order phase of the latest transient vs the reference (degrees).
- **Flagged**: transients whose motion/corruption features are beyond robust z-score limits; the
  reasons name which (freq_jump, phase_jump, amplitude, linewidth, lipid, residual).

Every definition, window and threshold: docs/results.md, qc_daemon/default_config.toml (the engine) and
plugins/<check>.toml (each check).
"""


class HelpScreen(ModalScreen[None]):
    """Keys and definitions; scrolls (arrows, page keys, mouse) when the terminal is short."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]
    AUTO_FOCUS = "#help-body"
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: thick $primary; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP)


class HistoryScreen(ModalScreen[str | None]):
    """Every scan seen this session, newest first; Enter shows it, escape goes back."""

    BINDINGS = [Binding("escape", "dismiss", "back")]
    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen > Vertical { width: 90%; height: 80%; border: thick $primary; background: $surface; }
    """

    def __init__(self, state: FeedState):
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Scans seen this session (newest first). Enter: show it; escape: back.", id="history-help")
            yield DataTable(id="history", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("started", "scan", "sequence", "averages", "status", "verdict", "reasons")
        for st in reversed(list(self.state.scans.values())):
            s = st.summary or {}
            status = st.final["status"] if st.final else "unfinished" if st.unfinished_note else "running"
            table.add_row(time.strftime("%H:%M:%S", time.localtime(st.started_wall)), st.scan_id[:8],
                          st.scan.sequence or "?", f"{st.n_metabolite}/{st.scan.planned_averages}",
                          status, verdict_word(s["verdict"]) if s else "-",
                          "\n".join(s.get("reasons") or []) or "-", key=st.scan_id, height=None)
        # one reason per line (the row grows): a reason is never cut in the middle of its value
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(event.row_key.value)
