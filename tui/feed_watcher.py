"""Background thread: follow a daemon's feed (snapshot first), reconnect and re-sync when it restarts.

States posted (ConnectionChanged): connecting -> connected, or no daemon (nothing answered the snapshot
request, or no heartbeat for ``heartbeat_timeout_s``), then retries every ``retry_s`` until it answers. A
heartbeat with another ``daemon_id`` means the daemon restarted (its feed_seq starts again): re-sync.
"""

from __future__ import annotations

import threading
import time

import zmq
from textual.app import App

from qc_daemon import feed
from qc_daemon.client import FeedClient
from qc_daemon.security import ClientCurve

from .messages import ConnectionChanged, FeedMessages
from .scan_state import CONNECTED, CONNECTING, NO_DAEMON


class FeedWatcher(threading.Thread):
    def __init__(self, app: App, feed: str, snapshot: str, curve: ClientCurve | None = None,
                 heartbeat_timeout_s: float = 3.5, retry_s: float = 1.0, sync_timeout_s: float = 2.0):
        super().__init__(name="mrsqc-feed-watcher", daemon=True)
        self.app = app
        self.feed, self.snapshot = feed, snapshot
        self.curve = curve
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.retry_s = retry_s
        self.sync_timeout_s = sync_timeout_s
        self._stop_event = threading.Event()
        self._down = False  # in "no daemon": retries stay quiet until one succeeds (no flicker)

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        ctx = zmq.Context()
        try:
            while not self._stop_event.is_set():
                self._follow(ctx)
                self._stop_event.wait(self.retry_s)
        finally:
            ctx.destroy(linger=0)

    def _follow(self, ctx: zmq.Context) -> None:
        """One connection: sync, then poll until the daemon goes silent or restarts, or we are stopped."""
        client = FeedClient(self.feed, self.snapshot, ctx, self.curve)
        try:
            if not self._down:
                self.app.post_message(ConnectionChanged(CONNECTING, self.snapshot))
            try:
                snapshot = client.sync(self.sync_timeout_s)
            except TimeoutError:
                self._went_down(f"no answer from {self.snapshot}; retrying every {self.retry_s:g} s")
                return
            self._down = False
            self.app.post_message(ConnectionChanged(CONNECTED, self.feed, reset=True))
            self.app.post_message(FeedMessages(snapshot, snapshot=True, daemon_id=client.daemon_id))
            last_heard = time.monotonic()
            while not self._stop_event.is_set():
                messages = client.poll(50)
                now = time.monotonic()
                if messages:
                    last_heard = now
                    restarted = any(m.get("type") == feed.HEARTBEAT
                                    and m.get("daemon_id") not in (None, client.daemon_id) for m in messages)
                    self.app.post_message(FeedMessages(messages))
                    if restarted:
                        self.app.post_message(ConnectionChanged(CONNECTING, "the daemon restarted: syncing again"))
                        return
                elif now - last_heard > self.heartbeat_timeout_s:
                    self._went_down(f"no heartbeat for {self.heartbeat_timeout_s:g} s from {self.feed}; reconnecting")
                    return
        finally:
            client.close()

    def _went_down(self, detail: str) -> None:
        if not self._down:
            self._down = True
            self.app.post_message(ConnectionChanged(NO_DAEMON, detail))
