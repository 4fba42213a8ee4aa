"""Stream a recording (twix, DICOM, spool, simulated) to a daemon through the protocol, at scan pace, N x, or max."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .client import Delivery, DeliveryError, Producer
from .model import Transient
from .security import ClientCurve
from .sources.open import open_recording
from .sources.recording import Recording, paced


def replay_recording(rec: Recording, endpoint: str, speed: float | None, key: bytes | None = None,
                     on_sent: Callable[[Transient, int], None] | None = None, curve: ClientCurve | None = None,
                     send_timeout_s: float = 30.0) -> Delivery:
    """Send ``rec``; ``speed`` None = as fast as the daemon takes it, else acquisition time / speed
    (1 = scan pace from the transients' times, which come from the headers or TR). Returns the Delivery once
    the daemon has closed the scan; raises DeliveryError when the daemon stops answering for
    ``send_timeout_s`` (a daemon restart in between is survived: the producer re-sends from the daemon's
    spool)."""
    n_total = len(rec.transients)
    with Producer(endpoint, key=key, curve=curve, timeout_s=send_timeout_s) as producer:
        producer.start_scan(rec.scan_with_notes)
        for t in paced(rec.transients, speed):
            producer.send(t)
            if on_sent:
                on_sent(t, n_total)
        return producer.end_scan("complete")


def replay(path: str | Path, endpoint: str, speed: float | None, key: bytes | None = None,
           on_sent: Callable[[Transient, int], None] | None = None, curve: ClientCurve | None = None,
           send_timeout_s: float = 30.0) -> Delivery:
    """Open a recording and replay it (see :func:`replay_recording`)."""
    return replay_recording(open_recording(path), endpoint, speed, key, on_sent, curve, send_timeout_s)


__all__ = ["Delivery", "DeliveryError", "replay", "replay_recording"]
