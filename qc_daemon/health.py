"""The daemon's health as its heartbeat reports it (docs/protocol.md): messages received by kind, rejected by
reason, the time from receiving a transient to its results being published (p50/p99/max of the last 1000),
and the spool's use."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from . import feed


def percentiles(values) -> dict[str, float] | None:
    """p50/p99/max (ms) and the count of ``values``; None for none."""
    if not values:
        return None
    v = sorted(values)
    return {"p50": v[len(v) // 2], "p99": v[min(len(v) - 1, int(0.99 * len(v)))], "max": v[-1], "n": len(v)}


class Health:
    def __init__(self) -> None:
        self.received: Counter[str] = Counter()  # messages taken, by kind (and "duplicate")
        self.rejected: Counter[str] = Counter()  # messages refused, by reason
        self.handle_ms: deque[float] = deque(maxlen=1000)  # receive -> results published, per message

    def handled(self, ms: float) -> None:
        self.handle_ms.append(ms)

    def heartbeat(self, feed_seq: int, daemon_id: str, scan, error: str | None, seq_gaps: int,
                  store) -> dict[str, Any]:
        """The heartbeat message (``scan``: the open scan or None; ``store``: the spool store)."""
        return feed.heartbeat(
            time=time.time(), feed_seq=feed_seq, daemon_id=daemon_id, scan_id=scan.scan.scan_id if scan else None,
            error=error, received=dict(self.received), rejected=dict(self.rejected), seq_gaps=seq_gaps,
            handle_ms=percentiles(self.handle_ms),
            spool={"used_mb": round(store.used / 1e6, 1), "budget_mb": round(store.budget_bytes / 1e6, 1) or None,
                   "durable": scan.durable if scan else None, "positions": scan.positions if scan else None})
