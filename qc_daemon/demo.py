"""`mrsqc demo`: a daemon, a replay of the bundled scan at an accelerated pace, and the live view of its feed.

Everything runs in this process (daemon and replay in threads) on random loopback ports, with journals in a
temporary folder, and leaves nothing running. On a terminal the view is the Textual UI (``mrsqc tui``), which
stays open on the final verdict until q; otherwise (or with --text) plain lines, ending at the summary.
"""

from __future__ import annotations

import contextlib
import select
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

from . import feed
from .client import FeedClient
from .daemon import Daemon, Endpoints
from .errors import InputError
from .model import ScanSummary
from .replay import DeliveryError, replay
from .text_view import TextView

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "demo_drift_motion.dat"
@contextlib.contextmanager
def _demo_daemon(ctx: zmq.Context):
    """A warmed-up daemon serving in a thread on random loopback ports; yields its endpoints."""
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="mrsqc-demo-") as data:
        daemon = Daemon(Endpoints("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),
                        data_dir=Path(data), fsync=False, heartbeat_s=0.5, context=ctx)
        eps = daemon.bind()
        daemon.warm_up()
        serving = threading.Thread(target=daemon.serve, args=(stop,), name="mrsqc-daemon", daemon=True)
        serving.start()
        try:
            yield eps
        finally:
            stop.set()
            serving.join(5)
            daemon.close()


@contextlib.contextmanager
def demo_app(speed: float = 10.0, path: Path = FIXTURE, bell: bool = True):
    """Yield the demo's QCApp, watching a running demo daemon; the replay starts 1 s after the view is up."""
    from tui.app import QCApp
    from tui.feed_watcher import FeedWatcher

    if not path.exists():
        raise InputError(path, "bundled demo fixture missing (run `make fixtures`)")
    ctx = zmq.Context()
    try:
        with _demo_daemon(ctx) as eps:
            def replay_later() -> None:
                time.sleep(1.0)
                try:
                    replay(path, eps.ingest, speed, send_timeout_s=10)
                except DeliveryError:
                    pass  # the view was closed first

            def factory(app: QCApp) -> FeedWatcher:  # called on the UI thread when the view is up
                app.state.log("info", f"demo: replaying {path.name} at {speed:g}x scan pace (simulated drift and "
                                      "one motion event of each kind)")
                threading.Thread(target=replay_later, name="mrsqc-replay", daemon=True).start()
                return FeedWatcher(app, eps.feed, eps.snapshot)

            yield QCApp(factory, source=f"demo {eps.feed}", bell=bell)
    finally:
        ctx.destroy(linger=0)


def run_demo_tui(speed: float = 10.0, path: Path = FIXTURE, bell: bool = True) -> None:
    """The demo with the terminal UI; it stays on the final verdict until q."""
    with demo_app(speed, path, bell) as app:
        app.run()


@contextlib.contextmanager
def _keys():
    """Yield a function returning True once 'q' was typed (stdin in cbreak mode when it is a terminal)."""
    if not sys.stdin.isatty():
        yield lambda: False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield lambda: bool(select.select([sys.stdin], [], [], 0)[0]) and sys.stdin.read(1).lower() == "q"
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def run_demo(speed: float = 10.0, path: Path = FIXTURE, out=print) -> ScanSummary | None:
    """Run the demo; returns the scan summary (None when stopped early)."""
    if not path.exists():
        raise InputError(path, "bundled demo fixture missing (run `make fixtures`)")
    ctx = zmq.Context()
    summary = None
    try:
        with _demo_daemon(ctx) as eps:
            viewer = FeedClient(eps.feed, eps.snapshot, ctx)
            feeder = None
            try:
                viewer.sync(5)
                out(f"mrsqc demo: daemon on {eps.ingest}; replaying {path.name} at {speed:g}x scan pace "
                    "(simulated: drift + one motion event of each kind). q or Ctrl-C stops.")
                view = TextView(out)
                feeder = threading.Thread(target=replay, args=(path, eps.ingest, speed), name="mrsqc-replay",
                                          daemon=True)
                feeder.start()
                with _keys() as quit_requested:
                    while summary is None and not quit_requested():
                        for m in viewer.poll(100):
                            if m.get("type") in (feed.SCAN_START, feed.RESULT):
                                view.show(m)
                            elif m.get("type") == feed.SUMMARY:
                                summary = m["summary"]
            except KeyboardInterrupt:
                pass
            finally:
                viewer.close()
                if feeder is not None:
                    feeder.join(2)
    finally:
        ctx.destroy(linger=0)
    if summary is None:
        out("stopped.")
        return None
    out("")
    for line in view.summary_lines(summary):
        out(line)
    return summary
