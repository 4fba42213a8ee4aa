"""The technologist's view: ``QCApp`` shows a FeedState that a background watcher keeps filling.

Data flow: watcher thread (daemon feed, or a file run in-process) -> FeedMessages -> FeedState.apply
(cheap) -> a 10 Hz timer redraws when the state changed. A burst of a thousand results is one redraw,
so a max-speed replay never leaves the view behind the feed (bench/tui_bench.py measures the lag).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, RichLog

from qc_daemon.journal import default_data_dir

from . import plots
from .banner import Banner
from .export import export_report
from .messages import ConnectionChanged, FeedMessages
from .panels import ErrorLine, FlaggedTable, MetricsPanel, ScanLine
from .scan_state import CONNECTING, NO_DAEMON, OFFLINE, FeedState, ScanState
from .screens import HelpScreen, HistoryScreen

REDRAW_INTERVAL_S = 0.1  # at most 10 redraws per second
LEVEL_STYLE = {"info": "", "warn": "yellow", "fail": "bold red"}


class QCApp(App):
    TITLE = "mrsqc"
    # under 36 rows the banner loses its padding; whatever does not fit scrolls below the banner and scan line,
    # which always stay on screen
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    AUTO_FOCUS = None  # a focused table would scroll the body to itself; the plots come first
    CSS = """
    Screen { layout: vertical; }
    Screen.-short Banner { height: 5; padding: 0 2; }
    #body { height: 1fr; }
    #row-trends { height: 1fr; min-height: 8; }
    #row-spectrum { height: 1fr; min-height: 8; }
    #row-tables { height: 9; }
    #trace, #growth { width: 1fr; }
    #spectrum { width: 2fr; }
    MetricsPanel { width: 1fr; min-width: 44; }
    FlaggedTable { width: 3fr; height: 1fr; border: round $primary-darken-1; }
    #events { width: 2fr; border: round $primary-darken-1; }
    """
    # help first and the command palette off: at 80 columns the footer has room for every key
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit", "quit"),
        Binding("p", "pause", "pause"),
        Binding("e", "export", "export"),
        Binding("h", "history", "history"),
        Binding("l", "follow", "follow live"),
    ]

    def __init__(self, watcher_factory=None, source: str = "", bell: bool = True,
                 export_dir: str | Path | None = None,
                 redraw_interval_s: float = REDRAW_INTERVAL_S, clock=time.time):
        """``watcher_factory(app)`` returns a started-later thread with ``stop()`` that posts FeedMessages and
        ConnectionChanged (FeedWatcher, FileWatcher); None = nothing feeds the view (tests post directly)."""
        super().__init__()
        self.state = FeedState(source, clock=clock)
        self.watcher_factory = watcher_factory
        self.watcher: threading.Thread | None = None
        self.bell_enabled = bell
        # reports go to the data folder, never into whatever folder the view was started from
        self.export_dir = Path(export_dir) if export_dir is not None else default_data_dir() / "exports"
        self.redraw_interval_s = redraw_interval_s
        self.paused = False
        self.redraws = 0  # how many times the view was redrawn (coalescing is tested on it)
        self.redraw_log: list[tuple[float, int, float]] | None = None  # bench: (perf_counter, feed_seq, ms)
        self._drawn_version = -1
        self._bells_rung = 0
        self._events_shown = 0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Banner(id="banner")
        yield ErrorLine(id="error-line")
        yield ScanLine(id="scan-line")
        with VerticalScroll(id="body"):
            with Horizontal(id="row-trends"):
                yield plots.BraillePlot(id="trace")
                yield plots.BraillePlot(id="growth")
            with Horizontal(id="row-spectrum"):
                yield plots.BraillePlot(id="spectrum")
                yield MetricsPanel(id="metrics")
            with Horizontal(id="row-tables"):
                yield FlaggedTable(id="flagged")
                with Vertical(id="events"):
                    yield RichLog(id="event-log", max_lines=500, wrap=True, markup=False, min_width=20)
        yield Footer()

    def on_mount(self) -> None:
        # the main screen's widgets, held by reference: App.query_one searches the *active* screen, which is
        # the help or history screen while one is open (data keep arriving then)
        q = self.screen.query_one
        self.banner, self.error_line, self.scan_line = q(Banner), q(ErrorLine), q(ScanLine)
        self.plots = {name: q(f"#{name}", plots.BraillePlot) for name in ("trace", "growth", "spectrum")}
        self.metrics, self.flagged, self.event_log = q(MetricsPanel), q(FlaggedTable), q("#event-log", RichLog)
        q("#events").border_title = "Events"
        self.set_interval(self.redraw_interval_s, self.redraw)
        self.redraw()
        if self.watcher_factory is not None:
            self.watcher = self.watcher_factory(self)
            self.watcher.start()

    def on_unmount(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.join(2)

    # ------------------------------------------------------------------ messages from the watcher
    def on_feed_messages(self, message: FeedMessages) -> None:
        if not message.snapshot:
            for m in message.messages:
                self.state.apply(m)
            return
        self.state.apply_snapshot(message.messages, message.daemon_id)
        st = self.state.current
        if st is not None and not st.ended:
            self.state.log("info", f"synced scan {st.scan_id[:8]} from the daemon's snapshot: {len(st.results)} "
                                   f"results, {len(st.flagged)} flagged")

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        if message.reset:
            self.state.reset_feed()
        self.state.set_connection(message.state, message.detail)

    # ------------------------------------------------------------------ drawing
    @property
    def view_is_current(self) -> bool:
        """True once the view was redrawn from the latest state (the UI tests wait on it)."""
        return self._drawn_version == self.state.version

    def redraw(self, force: bool = False) -> None:
        """Redraw everything from the state, if it changed (called by the 10 Hz timer)."""
        state = self.state
        if not self.is_running or not self.banner.is_attached:
            return  # the app is shutting down: it stops running *before* its widgets are removed, bottom-up,
            # and before its timers stop, so a tick can land on a half-removed screen
        if state.version == self._drawn_version and not force:
            return  # nothing new
        self._drawn_version = state.version
        self.redraws += 1
        t0 = time.perf_counter()
        st = state.current
        self._draw_banner(st)
        self.error_line.show(state)
        self.scan_line.show(state, st, self.paused)
        if state.bad_alerts > self._bells_rung:
            self._bells_rung = state.bad_alerts
            if self.bell_enabled:
                self.bell()
        if self.paused:
            return
        if st is not None:
            for widget_id, build in (("trace", plots.trace_plot), ("growth", plots.growth_plot),
                                     ("spectrum", plots.spectrum_plot)):
                self.plots[widget_id].show(*build(st))
        else:
            for widget_id, title in (("trace", "Frequency shift, Hz (+ = towards higher ppm)"),
                                     ("growth", "Running SNR (NAA peak / noise SD)"),
                                     ("spectrum", "Spectrum (units: noise SD of one transient)")):
                self.plots[widget_id].show(plots.braille.Plot(
                    empty_text="waiting for a scan"), title)
        self.metrics.show(state, st)
        self.flagged.show(st)
        self._draw_events()
        if self.redraw_log is not None:
            t1 = time.perf_counter()
            self.redraw_log.append((t1, state.feed_seq, (t1 - t0) * 1e3))

    def _draw_banner(self, st: ScanState | None) -> None:
        state = self.state
        banner = self.banner
        if state.connection == NO_DAEMON:
            banner.show("no daemon", "No daemon answering", state.connection_detail)
        elif st is None:
            what = "Connecting to the daemon" if state.connection == CONNECTING else \
                "Reading the file" if state.connection == OFFLINE else "Waiting for scan"
            banner.show("wait", what, state.connection_detail)
        elif st.summary is None or (st.n_metabolite == 0 and not st.ended):
            # nothing has been judged before the reference exists: water references alone say nothing
            if st.unfinished_note:
                banner.show("wait", "Scan ended before its first result", st.unfinished_note)
            else:
                refs = len(st.results)
                banner.show("wait", "Collecting the reference: the first 8 averages",
                            "no verdict before it is set · results from the 8th average on"
                            + (f" · {refs} water reference{'s' if refs != 1 else ''} checked" if refs else ""))
        else:
            s = st.summary
            reasons = s["reasons"] or ["all checks within limits"]
            if st.unfinished_note and not st.finished:
                tail = f"NOT FINISHED at {st.n_metabolite}/{st.scan.planned_averages} averages: {st.unfinished_note}"
            elif st.finished:
                tail = f"final verdict, scan {s['status']}"
                if state.following and state.connection != OFFLINE:
                    tail += " · waiting for the next scan"
            else:
                tail = f"live · {st.n_metabolite}/{st.scan.planned_averages} averages"
            headline = reasons[0] if len(reasons) == 1 else f"{reasons[0]}  ·  {reasons[1]}"
            more = "; ".join(reasons[2:])
            if self.paused:
                tail = "PAUSED: plots frozen, this banner live (p resumes) · " + tail
            banner.show(s["verdict"], headline, (more + "\n" if more else "") + tail)

    def _draw_events(self) -> None:
        log = self.event_log
        state = self.state
        new = state.events_total - self._events_shown
        if new <= 0:
            return
        for ev in list(state.events)[-min(new, len(state.events)):]:
            line = Text(time.strftime("%H:%M:%S ", time.localtime(ev.time)), style="dim")
            line.append(ev.text, style=LEVEL_STYLE.get(ev.level, ""))
            log.write(line)
        self._events_shown = state.events_total

    # ------------------------------------------------------------------ keys
    def action_pause(self) -> None:
        self.paused = not self.paused
        self.state.log("info", "view paused" if self.paused else "view resumed")
        self.redraw(force=True)

    def action_export(self) -> None:
        st = self.state.current
        if st is None:
            self.notify("nothing to export yet", severity="warning")
            return
        try:
            folder = export_report(st, self.export_dir).resolve()
        except (OSError, ValueError) as exc:
            self.notify(f"export failed: {exc}", severity="error")
            self.state.log("fail", f"export failed: {exc}")
            return
        self.notify(f"report written to {folder}")
        self.state.log("info", f"report exported to {folder}")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_history(self) -> None:
        def picked(scan_id: str | None) -> None:
            if scan_id:
                self.state.select(scan_id)
                self.redraw(force=True)

        self.push_screen(HistoryScreen(self.state), picked)

    def action_follow(self) -> None:
        self.state.select(None)
        self.redraw(force=True)
