"""Where one scan's results go (docs/architecture.md): the feed with its snapshot, the journal, the raw spool,
and the end-of-scan outputs. Each sink owns its failure policy: one that cannot write says why
(``take_errors``: the daemon reports it on the feed and in the heartbeat) and stops; it never raises into the
loop, and QC goes on without it.

The per-scan session (open_scan.OpenScan) calls every sink in the same order:
- ``open(session)`` once; ``publish(messages)`` as soon as feed messages are made (a result never waits for a
  disk); after each burst ``record(pos, transient, results)`` / ``skip(pos, reason)`` in stream order and
  ``verdict(record)`` when the live verdict changes; ``sync()`` before the daemon acknowledges (what is
  acknowledged is on disk); ``finish(status, tail, summary, messages, results)`` at scan end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import feed
from .journal import Journal
from .model import ScanInfo, ScanSummary, Transient, TransientQC
from .report import write_outputs
from .spool import Spool, SpooledScan, SpoolStore

if TYPE_CHECKING:
    from .open_scan import OpenScan
    from .output_writer import OutputWriter

log = logging.getLogger("mrsqc.daemon")


class Sink:
    """Default: takes nothing. Subclasses override what they take."""

    def __init__(self) -> None:
        self._errors: list[str] = []

    def open(self, session: OpenScan) -> None:
        pass

    def publish(self, messages: list[dict[str, Any]]) -> None:
        pass

    def record(self, pos: int, transient: Transient, results: list[TransientQC] | None) -> None:
        pass

    def skip(self, pos: int, reason: str) -> None:
        pass

    def verdict(self, record: dict[str, Any]) -> None:
        pass

    def sync(self) -> None:
        pass

    def finish(self, status: str, tail: list[TransientQC], summary: ScanSummary, messages: list[dict[str, Any]],
               results: list[TransientQC]) -> None:
        pass

    def take_errors(self) -> list[str]:
        out, self._errors = self._errors, []
        return out

    def _error(self, text: str) -> None:
        self._errors.append(text)


class Messages(Sink):
    """Feed messages to a callback (in-process viewers, tests)."""

    def __init__(self, callback: Callable[[list[dict[str, Any]]], None]):
        super().__init__()
        self.callback = callback

    def publish(self, messages: list[dict[str, Any]]) -> None:
        if messages:
            self.callback(messages)

    def finish(self, status, tail, summary, messages, results) -> None:
        self.publish(messages)


class FeedSink(Sink):
    """One scan on the daemon's feed: stamps and sends its messages (``send``: the socket's send of the
    encoded frames) and answers the snapshot of this scan for late joiners (docs/protocol.md). The results
    are held once, by the engine: the snapshot rebuilds their messages from them and the feed_seq each was
    published with; of the other messages it keeps scan_start, the summary and the latest progress."""

    def __init__(self, stamper: feed.Stamper, scan_id: str, send: Callable[[list[bytes]], None]):
        super().__init__()
        self.stamper, self.scan_id, self.send = stamper, scan_id, send
        self._results: list[TransientQC] = []
        self._result_seqs: list[int] = []  # feed_seq of each published result, in engine order
        self._start: dict[str, Any] | None = None
        self._progress: dict[str, Any] | None = None
        self._summary: dict[str, Any] | None = None

    def open(self, session: OpenScan) -> None:
        self._results = session.live.engine.results  # a reference: the engine's own list

    def publish(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            m = self.stamper.stamp(self.scan_id, m)
            kind = m["type"]
            if kind == feed.RESULT:
                self._result_seqs.append(m["feed_seq"])
            elif kind == feed.PROGRESS:
                self._progress = m
            elif kind == feed.SCAN_START:
                self._start = m
            elif kind == feed.SUMMARY:
                self._summary = m
            self.send(feed.encode(m))

    def finish(self, status, tail, summary, messages, results) -> None:
        self.publish(messages)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every message of this scan so far in feed order, of the progress messages only the latest."""
        out = [self._start] if self._start else []
        out += [dict(feed.result(r), feed_seq=seq, scan_id=self.scan_id)
                for r, seq in zip(self._results, self._result_seqs)]
        out += [m for m in (self._summary, self._progress) if m is not None]
        return out


class SpoolSink(Sink):
    """The raw transients, as received (spool.py), within the daemon's disk budget: fsync'd at ``sync``.
    A spool that cannot be written stops for this scan; what is already durable stays acknowledged."""

    def __init__(self, spool: Spool | None, store: SpoolStore | None, error: str | None = None):
        super().__init__()
        self.spool, self.store = spool, store
        self.failed = spool is None
        if error:
            self._stop(error)

    @classmethod
    def create(cls, folder: Path, scan: ScanInfo, stream: str, fsync: bool, store: SpoolStore | None) -> SpoolSink:
        try:
            spool = Spool.create(folder, scan, stream, fsync)
        except OSError as exc:
            return cls(None, store, f"spool not writable: {exc}")
        sink = cls(spool, store)
        sink._charge(spool.bytes)
        return sink

    @classmethod
    def resume(cls, spooled: SpooledScan, fsync: bool, store: SpoolStore | None) -> SpoolSink:
        if spooled.end_status is not None:
            return cls(None, store)  # its end was spooled already: nothing more to write
        try:
            return cls(Spool(spooled.path, fsync, resume=spooled), store)
        except OSError as exc:
            return cls(None, store, f"spool not writable: {exc}")

    @property
    def durable(self) -> int:
        """Positions fsync'd in the spool (0 without a spool)."""
        return self.spool.durable if self.spool is not None else 0

    def record(self, pos, transient, results) -> None:
        need = self.spool.record_size(transient) if self.spool is not None else 0
        self._write(lambda sp: sp.append_transient(pos, transient), need)

    def skip(self, pos, reason) -> None:
        self._write(lambda sp: sp.append_skip(pos, reason), 64)

    def sync(self) -> None:
        if self.spool is not None and not self.failed:
            try:
                self.spool.sync()
            except OSError as exc:
                self._stop(f"spool write failed: {exc}")

    def finish(self, status, tail, summary, messages, results) -> None:
        if self.spool is not None and not self.failed:
            try:
                self.spool.end(status)
            except OSError as exc:
                self._stop(f"spool write failed: {exc}")

    def _charge(self, n: int) -> None:
        if self.store is not None:
            self.store.charge(n)

    def _write(self, write: Callable[[Spool], None], need: int) -> None:
        if self.spool is None or self.failed:
            return
        store = self.store
        if store is not None and not store.fits(need):
            store.tidy(keep=self.spool.path, need_bytes=need)
            if not store.fits(need):
                self._stop(f"spool budget of {store.budget_bytes / 1e6:.0f} MB exceeded "
                           f"({store.used / 1e6:.0f} MB in use)")
                return
        before = self.spool.bytes
        try:
            write(self.spool)
        except OSError as exc:
            self._stop(f"spool write failed: {exc}")
            return
        self._charge(self.spool.bytes - before)

    def _stop(self, what: str) -> None:
        self.failed = True
        if self.spool is not None:
            try:  # what was written whole before the failure becomes durable, if the disk still takes it
                self.spool.sync()
            except OSError:
                pass
            self.spool.abandon()
        self._error(f"{what}: the rest of this scan is checked but not spooled (a daemon crash now loses "
                    f"transients after {self.durable} unless the producer still holds them)")


class JournalSink(Sink):
    """The scan's journal (journal.py): results, live verdict changes and the summary, fsync'd at ``sync``.
    A journal that cannot be written stops for this scan (QC and the feed go on)."""

    def __init__(self, journal: Journal | None, error: str | None = None):
        super().__init__()
        self.journal = journal
        if error:
            self._error(error)

    @classmethod
    def create(cls, folder: Path, scan: ScanInfo, fsync: bool, checks: list[dict], provenance: dict,
               records: list[dict] | None = None) -> JournalSink:
        try:
            return cls(Journal(folder, scan, fsync, records=records, checks=checks, provenance=provenance))
        except OSError as exc:
            return cls(None, f"journal not writable: {exc}")

    def record(self, pos, transient, results) -> None:
        if results:
            self._write(lambda j: [j.result(qc) for qc in results])

    def verdict(self, record) -> None:
        self._write(lambda j: j.write(record))

    def sync(self) -> None:
        self._write(lambda j: j.sync())

    def finish(self, status, tail, summary, messages, results) -> None:
        self._write(lambda j: [j.result(qc) for qc in tail])
        self._write(lambda j: j.close(summary))

    def _write(self, action: Callable[[Journal], Any]) -> None:
        if self.journal is None:
            return
        try:
            action(self.journal)
        except OSError as exc:
            self.journal = None
            self._error(f"journal write failed: {exc}")


class OutputsSink(Sink):
    """At scan end: transients.jsonl and summary.json at once; the analysts' NIfTI-MRS (nifti_out.py) and
    report.html after them, by ``writer`` when there is one (the daemon's: off its loop, output_writer.py),
    else at once. The same files `mrsqc check --out` writes."""

    def __init__(self, folder: Path, writer: OutputWriter | None = None):
        super().__init__()
        self.folder = folder
        self.writer = writer
        self._session: OpenScan | None = None

    def open(self, session: OpenScan) -> None:
        self._session = session

    def finish(self, status, tail, summary, messages, results) -> None:
        try:
            write_outputs(self.folder, results, summary)
        except OSError as exc:
            self._error(f"scan outputs not writable: {exc}")
            return
        if self._session is None:
            return
        job = derived_outputs_job(self.folder, self._session.live.engine, list(results), summary)
        if self.writer is None:
            for text in job():
                self._error(text)
        else:
            self.writer.submit(f"scan {summary.scan_id}", job)


def derived_outputs_job(folder: Path, engine, results: list[TransientQC], summary: ScanSummary
                        ) -> Callable[[], list[str]]:
    """The NIfTI-MRS and report writing of a finished scan as one call returning its error texts. What it
    needs from the engine is taken now; the engine is not touched when it runs."""
    from .report_data import noise_of
    from .session import limits
    from .tracking import FilterParams

    scan, acquired, config = engine.scan, engine.acquired, engine.config
    tracking = FilterParams.from_config(config["tracking"])
    checks, scan_limits, noise_sd = engine.contract.describe(), limits(engine), noise_of(engine)

    def job() -> list[str]:
        from .check import write_report
        from .nifti_out import write_nifti_outputs

        errors = []
        try:
            for note in write_nifti_outputs(folder, scan, results, acquired, summary.provenance, tracking):
                log.info("scan %s: %s", scan.scan_id, note)
        except (OSError, ValueError) as exc:
            errors.append(f"NIfTI-MRS outputs not written: {exc}")
        try:
            write_report(folder, scan, results, summary, checks, acquired, config, scan_limits, noise_sd)
        except (OSError, ValueError) as exc:
            errors.append(f"report.html not written: {exc}")
        return errors

    return job
