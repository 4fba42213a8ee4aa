"""One way to run daemons in tests: in a thread (random loopback ports) or as a `mrsqc daemon` process on fixed
free loopback ports (so a restarted daemon is found by producers and viewers where the old one was)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from qc_daemon.client import Delivery, FeedClient, Producer
from qc_daemon.daemon import Daemon, Endpoints

RANDOM = Endpoints("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")


@contextlib.contextmanager
def running_daemon(data_dir: Path, endpoints: Endpoints = RANDOM, warm: bool = True, **kw):
    """A Daemon serving in a thread; yields (daemon, bound endpoints, its zmq context)."""
    ctx = zmq.Context()
    kw.setdefault("heartbeat_s", 0.2)
    kw.setdefault("fsync", False)
    d = Daemon(endpoints, data_dir=data_dir, context=ctx, **kw)
    eps = d.bind()
    if warm:
        d.warm_up()
    stop = threading.Event()
    thread = threading.Thread(target=d.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        yield d, eps, ctx
    finally:
        stop.set()
        thread.join(5)
        d.close()
        ctx.destroy(linger=0)


def free_endpoints() -> Endpoints:
    """Three loopback endpoints on ports free right now."""
    probe = zmq.Context.instance()
    ports = []
    for _ in range(3):
        s = probe.socket(zmq.REP)
        ports.append(s.bind_to_random_port("tcp://127.0.0.1"))
        s.close(0)
    return Endpoints(*(f"tcp://127.0.0.1:{p}" for p in ports))


class DaemonProcess:
    """`mrsqc daemon` in a child process on fixed endpoints and one data folder; start() again after kill()."""

    def __init__(self, data_dir: Path, endpoints: Endpoints | None = None, *extra: str):
        self.data_dir = data_dir
        self.eps = endpoints or free_endpoints()
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"{data_dir.name}-daemon.log"

    def start(self) -> DaemonProcess:
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qc_daemon.cli", "daemon", "--ingest", self.eps.ingest, "--feed",
                 self.eps.feed, "--snapshot", self.eps.snapshot, "--data-dir", str(self.data_dir),
                 "--heartbeat", "0.2", *self.extra], stdout=subprocess.PIPE, stderr=err, text=True)
        line = self.proc.stdout.readline()
        assert line, self.log.read_text()[-2000:]
        self.started = json.loads(line)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a crash or a power cut."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def stream(eps: Endpoints, ctx: zmq.Context, scan, transients, **producer_kw) -> Delivery:
    """One whole scan through a Producer: scan_start, every transient, scan_end; returns the Delivery."""
    with Producer(eps.ingest, context=ctx, **producer_kw) as p:
        p.start_scan(scan)
        for t in transients:
            p.send(t)
        return p.end_scan()


def collect(viewer: FeedClient, until: str = "summary", timeout_s: float = 60.0) -> list[dict]:
    """Feed messages (heartbeats and status included) up to and including the first of type ``until``."""
    out = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for m in viewer.poll(100):
            out.append(m)
            if m.get("type") == until:
                return out
    raise TimeoutError(until)


def wait_until(condition, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        time.sleep(0.02)


@contextlib.contextmanager
def running_bridge(eps: Endpoints, ctx: zmq.Context, **settings):
    """An MRD server (the scanner bridge) in a thread on a free loopback port, passing to the daemon at ``eps``;
    yields the MrdServer (its ``address`` and, after each connection, ``reports``)."""
    from qc_daemon.bridge import BridgeSettings, MrdServer

    settings.setdefault("text_interval_s", 0.2)
    s = BridgeSettings(ingest=eps.ingest, feed=eps.feed, snapshot=eps.snapshot, **settings)
    server = MrdServer(s, "127.0.0.1", 0, context=ctx)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(15)
