"""Deterministic feed messages for the UI tests (qc_daemon.session.scan_messages: a progress message after
every result; the live daemon sends them at most every 0.5 s of wall time)."""

from __future__ import annotations

import time

from qc_daemon.session import scan_messages
from qc_daemon.sources.open import open_recording
from qc_daemon.sources.simulate import Event, SimulationParams, simulate_scan
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "demo_drift_motion.dat"
FIXED_TIME = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC: event-log times in snapshots


def fixture_messages() -> list[dict]:
    rec = open_recording(FIXTURE)
    return scan_messages(rec.scan, list(rec.transients))


def bad_scan():
    """A simulated scan that ends BAD: 30 Hz/min drift (> 0.125 ppm) and 8 corrupted averages of 32 (25 %)."""
    events = [Event(i, "freq_jump", 9.0) for i in (12, 14, 16, 18)] + \
             [Event(i, "phase_amp", 70.0, 0.4) for i in (20, 22, 24, 26)]
    return simulate_scan(SimulationParams(n_coils=4, n_points=1024, dwell_s=0.5e-3, averages=32, naa_snr=6.0,
                                          drift_hz_per_min=30.0, seed=5, events=events, scan_label="bad"))


def bad_messages(first_seq: int = 1) -> list[dict]:
    sim = bad_scan()
    return scan_messages(sim.scan, sim.transients, first_seq=first_seq)


async def wait_for(pilot, condition, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` every 50 ms while the app runs; fail after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


async def settle(pilot, last_feed_seq: int | None = None, timeout_s: float = 20.0) -> None:
    """Wait until the app has applied the feed up to ``last_feed_seq`` and redrawn the view from it: what a fixed
    pause only hopes for on a loaded machine (the redraw comes from a 10 Hz timer)."""
    app = pilot.app
    await wait_for(pilot, lambda: (last_feed_seq is None or app.state.feed_seq >= last_feed_seq)
                   and app.view_is_current, timeout_s)
