"""The technologist's view, driven with Textual's Pilot: empty start, a scan streaming in, a motion event in
the table, a BAD banner with the bell, pause, export, help, history, the daemon-error line, opening mid-scan,
and reconnecting after a daemon restart (real daemons on random loopback ports, linger 0, time-outs everywhere)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import zmq

from qc_daemon.daemon import Daemon, Endpoints
from qc_daemon.replay import replay
from tests.daemon_support import stream
from tests.tui_support import FIXTURE, bad_messages, bad_scan, fixture_messages, settle, wait_for
from tui.app import QCApp
from tui.banner import Banner
from tui.feed_watcher import FeedWatcher
from tui.file_watcher import FileWatcher
from tui.messages import ConnectionChanged, FeedMessages
from tui.panels import ErrorLine, FlaggedTable, ScanLine
from tui.plots import BraillePlot
from tui.scan_state import CONNECTED, NO_DAEMON
from tui.screens import HelpScreen, HistoryScreen

SIZE = (120, 40)
RANDOM = Endpoints("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")


@pytest.fixture(scope="module")
def demo_msgs():
    return fixture_messages()


@pytest.fixture(scope="module")
def bad_msgs():
    return bad_messages()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=90))


def banner_text(app: QCApp) -> str:
    b = app.query_one(Banner)
    return str(b.query_one("#banner-text").render())


def banner_class(app: QCApp) -> str:
    return next(c for c in ("ok", "warn", "bad", "idle", "down") if app.query_one(Banner).has_class(c))


def feed(app: QCApp, messages: list[dict]) -> None:
    app.post_message(FeedMessages(list(messages)))


async def feed_and_settle(pilot, messages: list[dict]) -> None:
    """Post feed messages and wait until the view was redrawn from the last of them."""
    feed(pilot.app, messages)
    await settle(pilot, messages[-1]["feed_seq"])


# ---------------------------------------------------------------------------------------------- pilot tests
def test_empty_start_says_it_is_waiting_and_draws_empty_plots():
    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            app.post_message(ConnectionChanged(CONNECTED, "tcp://127.0.0.1:5556", reset=True))
            await wait_for(pilot, lambda: app.state.connection == CONNECTED)
            await settle(pilot)
            assert banner_class(app) == "idle" and "Waiting for scan" in banner_text(app)
            assert "no scan yet" in str(app.query_one(ScanLine).render())
            assert app.query_one(FlaggedTable).row_count == 0
            assert "waiting for a scan" in str(app.query_one("#trace", BraillePlot).render())
            assert not app.query_one(ErrorLine).display
    run(main())


def test_no_daemon_is_shown_and_the_watcher_keeps_retrying():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)  # take two free ports, then free them: nothing listens there
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(0)
    ctx.destroy(0)
    feed_ep = snap_ep = f"tcp://127.0.0.1:{port}"

    async def main():
        app = QCApp(lambda a: FeedWatcher(a, feed_ep, snap_ep, sync_timeout_s=0.3, retry_s=0.2), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.connection == NO_DAEMON)
            await settle(pilot)
            assert banner_class(app) == "down" and "No daemon" in banner_text(app)
            await pilot.pause(1.0)  # retries, and still says so
            assert app.state.connection == NO_DAEMON
            assert sum("no daemon" in e.text for e in app.state.events) >= 1
    run(main())


def test_scan_streams_in_and_ends_with_the_engine_verdict(demo_msgs):
    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await feed_and_settle(pilot, demo_msgs[:40])  # mid-scan
            st = app.state.current
            assert st is not None and not st.finished
            line = str(app.query_one(ScanLine).render())
            assert "svs_se" in line and "TE 30 ms" in line and "TR 2000 ms" in line and "123.200 MHz" in line
            assert f"{st.n_metabolite}/48 averages" in line and "left" in line
            assert "live" in banner_text(app)
            freq = str(app.query_one("#trace", BraillePlot).render())
            assert any(0x2800 < ord(c) < 0x2900 for c in freq)  # dots were drawn
            assert "Hz/min" in app.query_one("#trace", BraillePlot).border_subtitle
            await feed_and_settle(pilot, demo_msgs[40:])
            final = demo_msgs[-1]["summary"]
            assert st.finished and banner_class(app) == {"pass": "ok", "warn": "warn", "fail": "bad"}[final["verdict"]]
            assert final["reasons"][0] in banner_text(app) and "final verdict" in banner_text(app)
            assert "48/48 averages" in str(app.query_one(ScanLine).render())
            assert "average of" in app.query_one("#spectrum", BraillePlot).border_subtitle
    run(main())


def test_motion_event_appears_in_the_flagged_table(demo_msgs):
    first_flag = next(i for i, m in enumerate(demo_msgs) if m["type"] == "result" and not m["result"]["accepted"])

    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await feed_and_settle(pilot, demo_msgs[:first_flag])
            table = app.query_one(FlaggedTable)
            assert table.row_count == 0
            await feed_and_settle(pilot, [demo_msgs[first_flag]])
            assert table.row_count == 1
            row = [str(c) for c in table.get_row_at(0)]
            r = demo_msgs[first_flag]["result"]
            n_avg = sum(1 for m in demo_msgs[:first_flag + 1]
                        if m["type"] == "result" and m["result"]["kind"] == "metabolite")
            assert row[0] == f"avg {n_avg}" and row[2] == ", ".join(r["flags"])  # the scanner's average number
            assert any(f"avg {n_avg} " in e.text and "flagged" in e.text for e in app.state.events)
            await feed_and_settle(pilot, demo_msgs[first_flag + 1:])
            flagged = demo_msgs[-1]["summary"]["flagged_indices"]
            assert table.row_count == len(flagged) == 4
            ordinal = app.state.current.ordinal
            assert [str(table.get_row_at(i)[0]) for i in range(4)] == [ordinal[i] for i in sorted(flagged)[::-1]]
    run(main())


@pytest.mark.parametrize("bell", [True, False], ids=["bell-on", "bell-off"])
def test_bad_banner_rings_the_bell_once_unless_turned_off(bad_msgs, bell):
    async def main():
        app = QCApp(bell=bell)
        rung = []
        app.bell = lambda: rung.append(1)
        async with app.run_test(size=SIZE) as pilot:
            await feed_and_settle(pilot, bad_msgs)
            assert banner_class(app) == "bad"
            text = banner_text(app)
            reasons = bad_msgs[-1]["summary"]["reasons"]  # 30 Hz/min over 64 s: ~0.23 ppm
            assert any(r.startswith("frequency drift 0.2") for r in reasons) and all(r in text for r in reasons[:2])
            assert "motion-corrupted averages" in text
            # a new BAD state rings once, not on every message; --no-bell: never
            assert len(rung) == (1 if bell else 0)
            assert str(app.query_one(Banner).query_one("#banner-word").render()).count("\n") == 4  # the big word
    run(main())


def test_redraws_are_coalesced_to_the_timer(demo_msgs):
    """A burst of 95 batches is a handful of redraws (the 10 Hz timer), and the view ends up current."""
    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.2)
            before = app.redraws
            t0 = time.monotonic()
            for m in demo_msgs:  # a burst: one message per post, no waiting
                feed(app, [m])
            await settle(pilot, demo_msgs[-1]["feed_seq"])
            elapsed = time.monotonic() - t0
            assert app.redraws - before <= elapsed / app.redraw_interval_s + 2
            assert app.state.feed_seq == demo_msgs[-1]["feed_seq"] and app.state.current.finished
            assert "final verdict" in banner_text(app)
    run(main())


def test_quitting_while_redraws_are_due_is_clean(demo_msgs):
    """Textual stops the app running, then removes widgets bottom-up, then stops the timers: a redraw tick in
    that window once found the banner without its children (NoMatches; 1 CI run failed on it). Here the
    timer ticks every 1 ms with the state always changing while the app quits; before the fix, 17 of 20
    quits raised."""
    for _ in range(8):
        async def main():
            app = QCApp(bell=False, redraw_interval_s=0.001)
            async with app.run_test(size=SIZE) as pilot:
                feed(app, demo_msgs[:20])
                await pilot.pause(0.05)

                async def keep_changing():
                    while True:
                        app.state.version += 1  # what every applied message does: the view is due a redraw
                        await asyncio.sleep(0)
                churn = asyncio.create_task(keep_changing())
                await pilot.pause(0.02)
            churn.cancel()
            return app.redraws
        assert run(main()) > 0


def test_a_small_terminal_keeps_the_banner_and_scrolls_the_rest(demo_msgs):
    """80 x 24: the banner (compact), the scan line and the trend plots are on screen; the tables below can be
    scrolled to; the help screen scrolls too."""
    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await feed_and_settle(pilot, demo_msgs[:60])
            screen = app.screen.region
            banner, scan_line = app.query_one(Banner), app.query_one(ScanLine)
            assert banner.region.y == 0 and banner.region.height == 5 and banner_class(app) in ("ok", "warn")
            assert screen.contains_region(scan_line.region)
            assert screen.contains_region(app.query_one("#trace", BraillePlot).region)
            body = app.query_one("#body")
            assert body.scroll_y == 0 and body.max_scroll_y > 0  # the plots first; the tables below the fold
            await pilot.press("tab", "end")  # the keyboard reaches the body: tab to it, End scrolls down
            await pilot.pause(0.1)
            assert body.has_focus and body.scroll_y == body.max_scroll_y
            assert screen.contains_region(app.query_one(FlaggedTable).region)
            assert banner.region.y == 0  # scrolling the body never moves the banner
            await pilot.press("question_mark")
            await pilot.pause(0.1)
            help_body = app.screen.query_one("#help-body")
            assert help_body.has_focus and help_body.max_scroll_y > 0
            await pilot.press("end")
            await pilot.pause(0.1)
            assert help_body.scroll_y == help_body.max_scroll_y
    run(main())


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_pause_freezes_the_plots_but_not_the_banner(demo_msgs, bad_msgs, size):
    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=size) as pilot:
            await feed_and_settle(pilot, demo_msgs[:30])
            spectrum = app.query_one("#spectrum", BraillePlot).border_subtitle
            await pilot.press("p")
            await settle(pilot)
            assert app.paused and "PAUSED" in banner_text(app)
            line = app.query_one(ScanLine)
            assert line.render().plain.startswith(" PAUSED ")  # on screen at any width: it comes first
            assert line.region.width == size[0] and line.region.y < size[1]
            await feed_and_settle(pilot, demo_msgs[30:])
            assert app.query_one("#spectrum", BraillePlot).border_subtitle == spectrum  # frozen
            assert "final verdict" in banner_text(app)  # the banner stays live
            await pilot.press("p")
            await pilot.pause(0.2)
            assert not app.paused and app.query_one("#spectrum", BraillePlot).border_subtitle != spectrum
    run(main())


def test_export_writes_the_report_of_the_shown_scan(demo_msgs, tmp_path):
    async def main():
        app = QCApp(bell=False, export_dir=tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await feed_and_settle(pilot, demo_msgs)
            await pilot.press("e")
            await pilot.pause(0.1)
    run(main())
    (folder,) = tmp_path.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == demo_msgs[-1]["summary"]
    rows = [json.loads(line) for line in (folder / "transients.jsonl").read_text().splitlines()]
    assert rows == [m["result"] for m in demo_msgs if m["type"] == "result"]
    assert "VERDICT: WARN" in (folder / "summary.txt").read_text()


def test_help_and_history_screens(demo_msgs, bad_msgs):
    second = [dict(m, feed_seq=m["feed_seq"] + 1000) for m in bad_msgs]

    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            feed(app, demo_msgs)
            await feed_and_settle(pilot, second)
            assert app.state.current.scan_id == bad_msgs[0]["scan_id"]  # follows the newest
            await pilot.press("h")
            await pilot.pause(0.1)
            assert isinstance(app.screen, HistoryScreen)
            table = app.screen.query_one("#history")
            assert table.row_count == 2
            reasons = str(table.get_row_at(0)[-1])
            assert reasons.splitlines() == bad_msgs[-1]["summary"]["reasons"]  # whole, one per line
            assert table.virtual_size.width <= table.size.width  # nothing cut off at 120 columns
            await pilot.press("down", "enter")  # the older scan
            await pilot.pause(0.2)
            assert app.state.current.scan_id == demo_msgs[0]["scan_id"] and not app.state.following
            assert "history" in str(app.query_one(ScanLine).render())
            assert banner_class(app) == "warn"
            await pilot.press("l")
            await pilot.pause(0.1)
            assert app.state.following and banner_class(app) == "bad"
    run(main())


def test_daemon_error_line_shows_a_journal_failure(tmp_path):
    """The daemon cannot write its journal (data dir is a file): QC goes on, the view says so loudly."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    ctx = zmq.Context()
    d = Daemon(RANDOM, data_dir=blocker, heartbeat_s=0.2, fsync=False, context=ctx)
    eps = d.bind()
    stop = threading.Event()
    thread = threading.Thread(target=d.serve, args=(stop,), daemon=True)
    thread.start()

    async def main():
        app = QCApp(lambda a: FeedWatcher(a, eps.feed, eps.snapshot), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.connection == CONNECTED)
            await asyncio.to_thread(replay, FIXTURE, eps.ingest, None)
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished)
            await settle(pilot)
            line = app.query_one(ErrorLine)
            assert line.display and "journal not writable" in str(line.render())
            assert "NOT being saved" in str(line.render())
            assert app.state.current.final["n_transients"] == 50  # QC went on
    try:
        run(main())
    finally:
        stop.set()
        thread.join(5)
        d.close()
        ctx.destroy(linger=0)


def test_daemon_error_line_shows_a_full_spool(tmp_path):
    """The spool budget runs out mid-scan: the red line says so and that the rest is not spooled; QC goes on."""
    from tests.daemon_support import running_daemon

    per_transient = 4 * 2048 * 8

    async def main(eps):
        app = QCApp(lambda a: FeedWatcher(a, eps.feed, eps.snapshot), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.connection == CONNECTED)
            delivery = await asyncio.to_thread(replay, FIXTURE, eps.ingest, None)
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished)
            await settle(pilot)
            line = app.query_one(ErrorLine)
            assert line.display and "spool budget" in str(line.render()) and "not spooled" in str(line.render())
            assert app.state.current.final["n_transients"] == 50 and delivery.durable < 50  # QC went on

    with running_daemon(tmp_path / "data", spool_budget_bytes=12 * per_transient) as (d, eps, ctx):
        run(main(eps))


def test_reconnects_and_resyncs_after_the_daemon_restarts(tmp_path):
    ctx = zmq.Context()

    def start(endpoints):
        d = Daemon(endpoints, data_dir=tmp_path / "data", heartbeat_s=0.2, fsync=False, context=ctx)
        eps = d.bind()
        stop = threading.Event()
        thread = threading.Thread(target=d.serve, args=(stop,), daemon=True)
        thread.start()
        return d, eps, stop, thread

    def halt(d, stop, thread):
        stop.set()
        thread.join(5)
        d.close()

    d1, eps, stop1, thread1 = start(RANDOM)
    running = [(d1, stop1, thread1)]

    async def main():
        app = QCApp(lambda a: FeedWatcher(a, eps.feed, eps.snapshot, heartbeat_timeout_s=1.0, retry_s=0.2,
                                          sync_timeout_s=0.5), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.connection == CONNECTED)
            await asyncio.to_thread(replay, FIXTURE, eps.ingest, None)
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished)
            first = app.state.current.scan_id
            halt(*running.pop())  # the daemon dies
            await wait_for(pilot, lambda: app.state.connection == NO_DAEMON)
            await settle(pilot)
            assert banner_class(app) == "down"
            d2, _, stop2, thread2 = start(eps)  # back on the same endpoints, feed_seq from 1 again
            running.append((d2, stop2, thread2))
            await wait_for(pilot, lambda: app.state.connection == CONNECTED)
            sim = bad_scan()
            await asyncio.to_thread(stream, eps, ctx, sim.scan, sim.transients)
            await wait_for(pilot, lambda: len(app.state.scans) == 2 and app.state.current.finished)
            st = app.state.current
            assert st.scan_id == sim.scan.scan_id != first and st.scan_id in app.state.scans
            await settle(pilot)
            assert len(st.results) == len(sim.transients) and banner_class(app) == "bad"  # nothing lost
    try:
        run(main())
    finally:
        for r in running:
            halt(*r)
        ctx.destroy(linger=0)


def test_starts_mid_scan_from_the_snapshot_and_goes_on_live(tmp_path):
    """The view opens while a scan is running: the daemon's snapshot fills in what was missed, the live feed
    continues it, and every transient is shown exactly once."""
    from qc_daemon.client import Producer
    from qc_daemon.sources.open import open_recording

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    ctx = zmq.Context()
    d = Daemon(RANDOM, data_dir=tmp_path / "data", heartbeat_s=0.2, fsync=False, context=ctx)
    eps = d.bind()
    stop = threading.Event()
    thread = threading.Thread(target=d.serve, args=(stop,), daemon=True)
    thread.start()
    producer = Producer(eps.ingest, context=ctx)

    async def main():
        producer.start_scan(rec.scan)
        for t in transients[:30]:
            producer.send(t)
        deadline = time.monotonic() + 20
        while d.counters.get("transient", 0) < 30:  # the daemon has taken the first 30 before the view opens
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        app = QCApp(lambda a: FeedWatcher(a, eps.feed, eps.snapshot), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.current is not None and len(app.state.current.results) >= 30)
            assert any("synced scan" in e.text and "snapshot" in e.text for e in app.state.events)
            for t in transients[30:]:
                producer.send(t)
            producer.end_scan()
            await wait_for(pilot, lambda: app.state.current.finished)
            await settle(pilot)
            st = app.state.current
            assert [r["index"] for r in st.results] == [t.index for t in transients]  # once each, in order
            assert st.final["n_transients"] == len(transients)
            assert app.query_one(ScanLine).render().plain.count(f"{rec.scan.planned_averages}/"
                                                                f"{rec.scan.planned_averages} averages") == 1
    try:
        run(main())
    finally:
        producer.close()
        stop.set()
        thread.join(5)
        d.close()
        ctx.destroy(linger=0)


def test_snapshot_marks_scans_the_daemon_no_longer_has_open(demo_msgs):
    """FeedState alone: a running scan missing from a later snapshot of the same daemon ended while the view was
    away; one still in the snapshot is re-synced, not marked."""
    from tui.scan_state import FeedState

    start = next(i for i, m in enumerate(demo_msgs) if m["type"] == "progress")
    partial = demo_msgs[: start + 1]
    state = FeedState()
    state.apply_snapshot(partial, daemon_id="d1")
    st = state.current
    assert not st.ended and st.remaining_s() is not None
    state.apply_snapshot(partial, daemon_id="d1")  # the same scan still open: re-synced, not marked
    assert not state.current.ended and len(state.current.results) == len(st.results)
    state.apply_snapshot([], daemon_id="d1")  # reconnected to the same daemon: the scan is gone
    note = state.current.unfinished_note
    assert note and "disconnected" in note and "restarted" not in note
    assert state.current.remaining_s() is None


def reconnecting_app(eps) -> QCApp:
    """A view that notices a dead daemon within 1 s and retries every 0.2 s."""
    return QCApp(lambda a: FeedWatcher(a, eps.feed, eps.snapshot, heartbeat_timeout_s=1.0, retry_s=0.2,
                                       sync_timeout_s=0.5), bell=False)


async def stream_part(pilot, producer, scan, transients) -> None:
    """Once connected, start a scan and send ``transients``; return when the view shows all their results."""
    app = pilot.app
    await wait_for(pilot, lambda: app.state.connection == CONNECTED)
    producer.start_scan(scan)
    for t in transients:
        producer.send(t)
    await wait_for(pilot, lambda: app.state.current is not None and len(app.state.current.results) == len(transients))


def halt_all(daemons, ctx) -> None:
    while daemons:
        d, stop, thread = daemons.pop()
        stop.set()
        thread.join(5)
        d.close()
    ctx.destroy(linger=0)


def _crashable_daemons(tmp_path, ctx, **kw):
    """start(endpoints) -> bound endpoints; crash() stops the newest daemon like SIGKILL (loop and sockets gone,
    the open scan not ended); the list holds the running ones for clean-up."""
    daemons = []

    def start(endpoints):
        d = Daemon(endpoints, data_dir=tmp_path / "data", heartbeat_s=0.2, fsync=False, context=ctx, **kw)
        eps = d.bind()
        d.warm_up()  # resumes or closes what a crash left open, as `mrsqc daemon` does at start-up
        stop = threading.Event()
        thread = threading.Thread(target=d.serve, args=(stop,), daemon=True)
        thread.start()
        daemons.append((d, stop, thread))
        return eps

    def crash():
        d, stop, thread = daemons.pop()
        stop.set()
        thread.join(5)
        for sock in (d.ingest, d.pub, d.router):
            sock.close(0)

    return start, crash, daemons


def test_a_daemon_crash_mid_scan_resumes_the_live_scan_with_nothing_missing(tmp_path):
    """The daemon dies mid-scan and a new one starts on the same data: the view goes NO DAEMON, then back to the
    same live scan (resumed from the spool: every transient so far, not NOT FINISHED), and the producer, which
    never stopped, finishes it: every transient shown once, in order."""
    from qc_daemon.client import Producer
    from qc_daemon.sources.open import open_recording

    rec = open_recording(FIXTURE)
    transients = list(rec.transients)
    ctx = zmq.Context()
    start, crash, daemons = _crashable_daemons(tmp_path, ctx)
    eps = start(RANDOM)
    producer = Producer(eps.ingest, context=ctx)

    async def main():
        app = reconnecting_app(eps)
        async with app.run_test(size=SIZE) as pilot:
            await stream_part(pilot, producer, rec.scan, transients[:30])
            producer.poll(200)  # the acks of the first 30 (so the spool holds them)
            crash()
            await wait_for(pilot, lambda: app.state.connection == NO_DAEMON)
            start(eps)
            await wait_for(pilot, lambda: app.state.connection == CONNECTED)
            await wait_for(pilot, lambda: len(app.state.current.results) == 30)
            st = app.state.current
            await settle(pilot)
            assert not st.ended and st.unfinished_note is None and "NOT FINISHED" not in banner_text(app)
            assert any("resumed" in e.text for e in app.state.events)
            for t in transients[30:]:
                await asyncio.to_thread(producer.send, t)
            delivery = await asyncio.to_thread(producer.end_scan)
            await wait_for(pilot, lambda: app.state.current.finished)
            await settle(pilot)
            st = app.state.current
            assert [r["index"] for r in st.results] == [t.index for t in transients]  # once each, in order
            assert delivery.complete and st.final["status"] == "complete"
    try:
        run(main())
    finally:
        producer.close()
        halt_all(daemons, ctx)


def test_a_resumed_scan_whose_producer_never_returns_ends_interrupted_with_its_findings(tmp_path):
    """A BAD scan (drift), the daemon crashes and the producer is gone: the restarted daemon resumes the scan,
    waits --producer-timeout, then closes it as interrupted; the view shows that summary, every finding kept."""
    from qc_daemon.client import Producer

    sim = bad_scan()
    ctx = zmq.Context()
    start, crash, daemons = _crashable_daemons(tmp_path, ctx, producer_timeout_s=1.0)
    eps = start(RANDOM)
    producer = Producer(eps.ingest, context=ctx)

    async def main():
        app = reconnecting_app(eps)
        async with app.run_test(size=SIZE) as pilot:
            await stream_part(pilot, producer, sim.scan, sim.transients[:28])
            producer.poll(200)
            producer.close()  # the producer goes away with the daemon
            crash()
            await wait_for(pilot, lambda: app.state.connection == NO_DAEMON)
            start(eps)
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished, 30)
            await settle(pilot)
            final = app.state.current.final
            assert final["status"] == "interrupted" and final["verdict"] == "fail"
            assert any("drift" in r for r in final["reasons"])
            n_avg = final["n_metabolite"]
            assert f"scan interrupted: {n_avg} of {sim.scan.planned_averages} planned averages checked" in \
                final["reasons"]
            assert banner_class(app) == "bad"
    try:
        run(main())
    finally:
        halt_all(daemons, ctx)
    summary = json.loads((tmp_path / "data" / sim.scan.scan_id / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["verdict"] == "fail"


def test_offline_review_of_a_file_runs_the_same_engine(demo_msgs):
    async def main():
        app = QCApp(lambda a: FileWatcher(a, FIXTURE), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished)
            st = app.state.current
            assert st.results == [m["result"] for m in demo_msgs if m["type"] == "result"]
            assert st.final == demo_msgs[-1]["summary"]
            await wait_for(pilot, lambda: "checked" in app.state.connection_detail)
    run(main())


def test_offline_review_of_a_bad_file_says_why(tmp_path):
    bad = tmp_path / "broken.dat"
    bad.write_bytes(b"\0" * 100)

    async def main():
        app = QCApp(lambda a: FileWatcher(a, bad), bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "cannot check" in app.state.connection_detail)
    run(main())


def test_demo_shows_the_scan_in_the_ui_and_leaves_no_thread_behind():
    """`make demo` on a terminal: daemon + replay + this UI; the scan ends on its verdict, q quits cleanly."""
    from qc_daemon.demo import demo_app

    async def main(app):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished, 60)
            await settle(pilot)
            assert app.state.current.final["flagged_indices"] == [15, 16, 39, 43]
            assert banner_class(app) == "warn" and app.query_one(FlaggedTable).row_count == 4
            await pilot.press("q")

    with demo_app(speed=200.0, bell=False) as app:
        run(main(app))
    time.sleep(0.2)
    names = ("mrsqc-daemon", "mrsqc-replay", "mrsqc-feed-watcher")
    assert not [t for t in threading.enumerate() if t.name in names and t.is_alive()]


def test_no_patient_identifier_on_screen_or_in_an_export(tmp_path):
    """The fixture's header holds a fake name, ID and birth date: none reaches any screen or the export."""
    from qc_daemon.sources.twix_write import FakePatient

    fake = FakePatient()
    assert fake.name.encode() in FIXTURE.read_bytes()
    screens: list[str] = []

    async def main():
        app = QCApp(lambda a: FileWatcher(a, FIXTURE), bell=False, export_dir=tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.state.current is not None and app.state.current.finished)
            await settle(pilot)
            screens.append(app.export_screenshot())
            await pilot.press("e", "h")
            await pilot.pause(0.3)
            screens.append(app.export_screenshot())
            await pilot.press("escape", "question_mark")
            await pilot.pause(0.3)
            screens.append(app.export_screenshot())
            screens.append(" ".join(e.text for e in app.state.events))
    run(main())
    outputs = "".join(screens) + "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert "svs_se" in outputs  # the screens were captured
    for secret in (fake.name, fake.name.split("^")[0], fake.patient_id, fake.birth_date):
        assert secret not in outputs


def test_data_arriving_under_the_help_screen_are_shown_when_it_closes(demo_msgs):
    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("question_mark")
            await feed_and_settle(pilot, demo_msgs)  # redraws happen while the help screen is on top
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await settle(pilot)
            assert "final verdict" in banner_text(app) and app.query_one(FlaggedTable).row_count == 4
    run(main())


def test_wait_not_pass_until_the_reference_is_set(demo_msgs):
    """Water references and the first 7 averages give no verdict: the banner says WAIT (collecting the
    reference), not a green PASS; the first metabolite result (the reference is set) brings the verdict."""
    first_metab = next(i for i, m in enumerate(demo_msgs) if m["type"] == "result"
                       and m["result"]["kind"] == "metabolite")

    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=SIZE) as pilot:
            await feed_and_settle(pilot, demo_msgs[:first_metab])
            assert any(m["type"] == "progress" for m in demo_msgs[:first_metab])  # a live summary was there
            assert banner_class(app) == "idle" and "Collecting the reference" in banner_text(app)
            assert "water reference" in banner_text(app)
            await feed_and_settle(pilot, demo_msgs[first_metab:first_metab + 2])
            assert banner_class(app) in ("ok", "warn", "bad") and "Collecting" not in banner_text(app)
    run(main())


def test_at_80x24_the_help_key_the_frequency_scale_and_the_ppm_ticks_are_on_screen(demo_msgs):
    from textual.widgets._footer import FooterKey

    from tui import braille

    async def main():
        app = QCApp(bell=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await feed_and_settle(pilot, demo_msgs[:60])

            def laid_out_help_key():
                # The footer recomposes its keys after a binding change; a key just composed has no region
                # until the next layout, so wait for one that has been placed.
                keys = {k.key_display or k.key: k for k in app.query(FooterKey)}
                key = keys.get("?")
                return key if key is not None and key.region.width > 0 else None

            for _ in range(100):
                if laid_out_help_key() is not None:
                    break
                await pilot.pause(0.05)
            help_key = laid_out_help_key()
            assert help_key is not None and help_key.region.right <= 80
            freq = app.query_one("#trace", BraillePlot)
            assert "Hz" in freq.border_title and "band ±" in freq.border_title
            assert "Hz (" in freq.border_subtitle and "ppm)" in freq.border_subtitle  # the shift, Hz and ppm
            lines = braille.render(freq.plot, freq.content_size.width, freq.content_size.height).plain.splitlines()
            assert sum("┤" in line for line in lines) >= 2  # a scale needs two labels
            spec = app.query_one("#spectrum", BraillePlot)
            last = braille.render(spec.plot, spec.content_size.width, spec.content_size.height).plain.splitlines()[-1]
            assert "ppm" in last and sum(ch.isdigit() for ch in last) >= 2
    run(main())
