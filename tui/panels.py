"""Text panels: the scan line with progress, the linewidth/phase/health panel, the flagged-transient table,
and the daemon-error line. Each takes a ScanState (or FeedState) and draws itself; units on every number."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import DataTable, Static

from qc_daemon import display
from qc_daemon.model import METABOLITE, WATER_REF

from .scan_state import CONNECTED, OFFLINE, FeedState, ScanState, describe, panel_value


def clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class ScanLine(Static):
    """Line 1: sequence, TE/TR, f0, voxel. Line 2: averages n/N with a bar and the time remaining."""

    DEFAULT_CSS = "ScanLine { height: 2; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }"
    BAR = 30

    def show(self, state: FeedState, st: ScanState | None, paused: bool = False) -> None:
        if st is None:
            self.update(Text("no scan yet\n", style="dim"))
            return
        t = Text(no_wrap=True, overflow="ellipsis")
        if paused:  # first, so no terminal is too narrow for it
            t.append(" PAUSED ", style="bold black on yellow")
            t.append(" plots and tables frozen, p resumes  ", style="bold")
        t.append(describe(st.scan), style="bold")
        if not state.following:
            t.append("   [history: l follows live]", style="bold magenta")
        n, total = st.n_metabolite, st.scan.planned_averages
        bar = self.BAR if self.size.width >= 100 else 16
        fill = min(bar, int(bar * n / max(total, 1)))
        t.append("\n")
        if paused:
            t.append(" PAUSED ", style="bold black on yellow")
            t.append(" ")
        t.append("█" * fill, style="green")
        t.append("░" * (bar - fill), style="grey35")
        t.append(f" {n}/{total} averages", style="bold")
        if st.finished:
            t.append("   done")
        elif st.unfinished_note:
            t.append("   not finished", style="bold")
        else:
            t.append(f"   {clock(st.remaining_s())} left")
        if st.final:
            t.append(f"   scan {st.final['status']}", style="bold")
        t.append(f"   scan {st.scan_id[:8]}", style="dim")
        self.update(t)


class MetricsPanel(Static):
    """Linewidths (water reference, tCr, NAA), phase, single-shot SNR, flagged count, daemon health."""

    DEFAULT_CSS = """
    MetricsPanel { border: round $primary-darken-1; height: 1fr; padding: 0 1; text-wrap: nowrap;
                   text-overflow: ellipsis; }
    """

    def show(self, state: FeedState, st: ScanState | None) -> None:
        self.border_title = "Linewidth · phase · health"
        t = Text(no_wrap=True, overflow="ellipsis")
        if st is not None:
            f0 = st.scan.f0_hz / 1e6
            for row in display.panel_rows(st.checks):
                _row(t, st, row, panel_value(st, row), f0)
            n_metab = st.n_metabolite
            n_flag = st.n_flagged_averages  # averages, counted as the scan line and the scanner count them
            n_ref = len(st.flagged) - n_flag
            t.append(f"{'flagged':<11}")
            t.append(f"{n_flag} of {n_metab} averages", style="bold red" if n_flag else "bold")
            t.append(f"  ({100 * n_flag / max(n_metab, 1):.0f} %)" + (f", {n_ref} water ref" if n_ref else "")
                     + "\n", style="dim")
        t.append(f"{'source':<11}")
        t.append(_health(state) + "\n", style="dim")
        self.update(t)


def _row(t: Text, st: ScanState, row: dict, value, f0_mhz: float) -> None:
    """One declared panel row (plugin_api.PanelRow): a ppm row is coloured by its limits and shows the value in
    ppm with the warning limit; another shows its note."""
    t.append(f"{row['label']:<11}")
    if not row["ppm"]:
        t.append(f"{value:{row['fmt']}}{row['suffix']}" if isinstance(value, (int, float)) else row["missing"],
                 style="bold")
        t.append(row["note"] + "\n", style="dim")
        return
    if not isinstance(value, (int, float)):
        none_yet = row["missing_kind"] and st.latest(row["kind"]) is None
        t.append((row["missing_kind"] if none_yet else row["missing"]) + "\n", style="dim")
        return
    warn, fail = st.limits.get(row["warn"]), st.limits.get(row["fail"])
    style = "bold red" if fail and value > fail else "bold yellow" if warn and value > warn else "bold green"
    t.append(f"{value:{row['fmt']}}{row['suffix']}", style=style)
    t.append(f"  {value / f0_mhz:.3f} ppm" + (f", limit {warn:.1f}" if warn else ""), style="dim")
    t.append("\n")


def _health(state: FeedState) -> str:
    if state.connection == OFFLINE:
        return f"file, in-process: {state.connection_detail}"
    if state.connection != CONNECTED:
        return f"{state.connection}: {state.connection_detail}"
    beat = state.daemon or {}
    handle = beat.get("handle_ms") or {}
    rejected = sum((beat.get("rejected") or {}).values())
    p99 = f"QC p99 {handle['p99']:.1f} ms" if handle.get("p99") is not None else "QC p99 n/a"
    return f"daemon {state.connection_detail}: {p99}, rejected {rejected}"


class FlaggedTable(DataTable):
    """Flagged transients of the shown scan, newest first, with reasons. Columns have fixed widths (cells):
    they do not shift as rows arrive, and every frame of the table is laid out the same way."""

    # (label, width in cells) around the checks' declared columns (display.table_columns): kind: metab | water,
    # plus the edit set in MEGA scans ("metab 1"); "#": the average number as the scanner counts them
    # ("avg 12"), or the water reference ("ref 1")
    HEAD = (("#", 7), ("t (s)", 6), ("reasons", 22))
    TAIL = (("kind", 5),)
    CHECK_WIDTH = 7
    KIND = {METABOLITE: "metab", WATER_REF: "water"}

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._columns: list[dict] | None = None
        self._set_columns([])
        self._shown: tuple[int | None, int] = (None, 0)  # (id of the ScanState shown, rows added)

    def _set_columns(self, declared: list[dict]) -> None:
        """The table's columns: fixed ones around those the shown scan's checks declare."""
        if declared == self._columns:
            return
        self._columns = declared
        self.clear(columns=True)
        labels = [*self.HEAD, *((f"{c['name']} {'°' if c['unit'] == 'deg' else c['unit']}".strip(),
                                 self.CHECK_WIDTH) for c in declared), *self.TAIL]
        for i, (label, width) in enumerate(labels):
            self.add_column(label, width=width, key="index" if i == 0 else label)
        self._shown = (None, 0)

    def show(self, st: ScanState | None) -> None:
        self.border_title = f"Flagged transients ({len(st.flagged) if st else 0})"
        if st is not None:
            self._set_columns(display.table_columns(st.checks))
        key = (id(st) if st else None, len(st.flagged) if st else 0)
        if key == self._shown:
            return
        if st is None or key[0] != self._shown[0] or key[1] < self._shown[1]:
            self.clear()
            self._shown = (key[0], 0)
        if st is None:
            return
        for r in st.flagged[self._shown[1]:]:
            kind = self.KIND.get(r["kind"], r["kind"]) + (f" {r['set']}" if st.scan.n_sets > 1 else "")
            cells = [_f(display.value_of(r, c["metric"]), c["table_fmt"]) for c in self._columns]
            self.add_row(st.ordinal.get(r["index"], str(r["index"])), f"{r['time_s']:.1f}",
                         Text(", ".join(r["flags"]) or "rejected", style="red"), *cells, kind,
                         key=f"{st.scan_id}:{r['index']}")
        self._shown = key
        self.sort("t (s)", key=lambda v: -float(v))  # newest first


def _f(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "n/a"


class ErrorLine(Static):
    """A loud line when the daemon reports an error: a journal that cannot be written (QC continues, results are
    not saved), a full spool (the daemon's text says what is not spooled), an internal error."""

    DEFAULT_CSS = "ErrorLine { background: $error; color: white; text-style: bold; padding: 0 1; height: auto; }"

    def show(self, state: FeedState) -> None:
        error = state.daemon_error
        self.display = bool(error)
        if error and error.startswith("journal"):
            self.update(f"DAEMON ERROR: {error} — QC continues, but results are NOT being saved to the journal")
        elif error:
            self.update(f"DAEMON ERROR: {error}")
