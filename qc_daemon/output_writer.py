"""The daemon's end-of-scan files that take long (the analysts' NIfTI-MRS, report.html), written off its loop.

Rendering a report and writing the NIfTI-MRS of a 256-transient scan takes about a second; done in the loop
it held back the heartbeat (a viewer with a 1 s heartbeat time-out showed "no daemon" at every scan end) and
the next scan's first transients. The journal, summary.json and transients.jsonl are written in the loop as
before (everything acknowledged is on disk); only the derived files come here, in submission order, by one
thread. A failure is logged and kept for the daemon to report (``take_errors``); a stopping daemon waits for
what is queued (``close``). A daemon killed before a job ran leaves the scan without those files: ``mrsqc
report FOLDER`` re-renders the report from the saved results.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("mrsqc.daemon")


class OutputWriter:
    """One worker thread running submitted jobs in order."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[str, Callable[[], list[str]]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def submit(self, label: str, job: Callable[[], list[str]]) -> None:
        """Queue ``job`` (returns error texts, empty when all went well; may raise) under ``label``."""
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mrsqc-outputs", daemon=True)
                self._thread.start()
        self._jobs.put((label, job))

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished."""
        with self._lock:
            return self._pending

    def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted job has finished; False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def take_errors(self) -> list[str]:
        with self._lock:
            out, self._errors = self._errors, []
        return out

    def close(self, timeout_s: float = 120.0) -> bool:
        """Finish what is queued (at most ``timeout_s``), then stop the thread; False if jobs were left."""
        n = self.pending
        if n:
            log.info("waiting for %d scan output job(s) before stopping", n)
        done = self.drain(timeout_s)
        if not done:
            log.error("%d scan output job(s) not finished after %.0f s: their files are missing", self.pending,
                      timeout_s)
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(1.0 if not done else 10.0)
            self._thread = None
        return done

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            label, job = item
            t0 = time.perf_counter()
            try:
                errors = job()
            except Exception as exc:  # a bug in a writer must not take the thread (and later scans) with it
                log.exception("%s: output job failed", label)
                errors = [f"{label}: outputs not written: {type(exc).__name__}: {exc}"]
            log.debug("%s: outputs written in %.2f s", label, time.perf_counter() - t0)
            with self._idle:
                self._errors.extend(errors)
                self._pending -= 1
                self._idle.notify_all()
