"""Stream a recording (twix, DICOM, simulated) to a daemon through the protocol, at scan pace, N x, or max."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .client import Producer
from .model import Transient
from .security import ClientCurve
from .sources.open import open_recording
from .sources.recording import Recording


def replay_recording(rec: Recording, endpoint: str, speed: float | None, key: bytes | None = None,
                     on_sent: Callable[[Transient, int], None] | None = None, curve: ClientCurve | None = None,
                     send_timeout_s: float | None = 30.0) -> int:
    """Send ``rec``; ``speed`` None = as fast as the daemon takes it, else acquisition time / speed
    (1 = scan pace from the transients' times, which come from the headers or TR). Raises TimeoutError when
    the daemon takes nothing for ``send_timeout_s``. Returns transients sent."""
    n_total = len(rec.transients)
    sent = 0
    with Producer(endpoint, key=key, curve=curve, send_timeout_s=send_timeout_s) as producer:
        producer.start_scan(rec.scan)
        t_start = time.monotonic()
        for t in rec.transients:
            if speed:
                wait = t_start + t.time_s / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            producer.send(t)
            sent += 1
            if on_sent:
                on_sent(t, n_total)
        producer.end_scan("complete")
    return sent


def replay(path: str | Path, endpoint: str, speed: float | None, key: bytes | None = None,
           on_sent: Callable[[Transient, int], None] | None = None, curve: ClientCurve | None = None,
           send_timeout_s: float | None = 30.0) -> int:
    """Open a twix file, DICOM file or folder and replay it (see :func:`replay_recording`)."""
    return replay_recording(open_recording(path), endpoint, speed, key, on_sent, curve, send_timeout_s)
