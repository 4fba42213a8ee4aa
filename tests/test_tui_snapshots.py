"""Snapshot tests (pytest-textual-snapshot) of the main screens at 120 x 40: SVGs in tests/__snapshots__/.
Update them deliberately with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the diff."""

from __future__ import annotations

import time

import pytest

from tests.tui_support import FIXED_TIME, bad_messages, fixture_messages, settle, wait_for
from tui.app import QCApp
from tui.messages import ConnectionChanged, FeedMessages
from tui.scan_state import CONNECTED, NO_DAEMON

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="module")
def demo_msgs():
    return fixture_messages()


def app() -> QCApp:
    return QCApp(bell=False, clock=lambda: FIXED_TIME)


def feeding(*batches, connection=(CONNECTED, "tcp://127.0.0.1:5556")):
    async def run_before(pilot) -> None:
        pilot.app.post_message(ConnectionChanged(*connection, reset=True))
        for batch in batches:
            pilot.app.post_message(FeedMessages(list(batch)))
        last = max((m["feed_seq"] for batch in batches for m in batch), default=None)
        await wait_for(pilot, lambda: pilot.app.state.connection == connection[0])
        await settle(pilot, last)
        pilot.app.redraw(force=True)
        await pilot.pause(0.1)
    return run_before


def test_mid_scan(snap_compare, demo_msgs):
    assert snap_compare(app(), terminal_size=SIZE, run_before=feeding(demo_msgs[:60]))


def test_scan_finished_warn(snap_compare, demo_msgs):
    assert snap_compare(app(), terminal_size=SIZE, run_before=feeding(demo_msgs))


def test_bad_scan(snap_compare):
    assert snap_compare(app(), terminal_size=SIZE, run_before=feeding(bad_messages()))


def test_no_daemon(snap_compare):
    assert snap_compare(app(), terminal_size=SIZE, run_before=feeding(
        connection=(NO_DAEMON, "no answer from tcp://127.0.0.1:5557; retrying every 1 s")))


def test_help_screen(snap_compare):
    assert snap_compare(app(), terminal_size=SIZE, press=["question_mark"])


SMALL = (80, 24)


def test_mid_scan_at_80x24(snap_compare, demo_msgs):
    assert snap_compare(app(), terminal_size=SMALL, run_before=feeding(demo_msgs[:60]))


def paused(*batches):
    feed = feeding(*batches)

    async def run_before(pilot) -> None:
        await feed(pilot)
        await pilot.press("p")
        await settle(pilot)
    return run_before


@pytest.mark.parametrize("size", [SIZE, SMALL], ids=["120x40", "80x24"])
def test_paused(snap_compare, demo_msgs, size):
    assert snap_compare(app(), terminal_size=size, run_before=paused(demo_msgs[:60]))
