"""One scan the daemon has open: its engine (LiveScan), its journal and its raw spool, and the producer's
stream positions. The daemon wires sockets to it; this class owns the per-scan record keeping and its
failure policy (a journal or spool that cannot be written is an error the daemon reports; QC goes on).

Order per transient: engine -> publish the results (:meth:`take`); then, once the burst is over,
spool write, journal and live progress (:meth:`settle`), and fsync of spool and journal (:meth:`sync`)
before the daemon acknowledges. An acknowledged transient is always on disk, and a result never waits for
a disk nor for bookkeeping.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Config
from .journal import Journal, old_verdicts, result_record, scan_folder, verdict_record
from .model import SEVERITY_RANK, ScanInfo, ScanSummary, Transient, TransientQC
from .session import LiveScan
from .spool import Spool, SpooledScan, SpoolStore

log = logging.getLogger("mrsqc.daemon")

Publish = Callable[[list[dict[str, Any]]], None]
STREAM_FILE = "stream.json"  # written at scan end: which producer stream the folder holds, and how it ended


class OpenScan:
    def __init__(self, folder: Path | None, scan: ScanInfo, stream: str, config: Config, fsync: bool,
                 store: SpoolStore | None):
        self.folder = folder
        self.scan = scan
        self.stream = stream
        self.live = LiveScan(scan, config)
        self.fsync = fsync
        self.store = store
        self.journal: Journal | None = None
        self.spool: Spool | None = None
        self.positions = 0  # transient positions taken: the next transient of this stream must have this pos
        self.resumed = False  # rebuilt from the spool by a restarted daemon
        self.producer_back = False  # a message of this stream arrived since the resume
        self.last_message_at = time.monotonic()
        self.spool_failed = False
        self._errors: list[str] = []
        # taken, published, not yet spooled or journaled: (pos, transient, results) or (pos, None, skip reason)
        self._unsettled: list[tuple[int, Transient | None, Any]] = []
        self._verdict: str | None = None  # the last live verdict journaled
        self.worst_live: dict[str, Any] | None = None  # the worst live verdict reached: verdict_record form

    # ------------------------------------------------------------------ opening
    @classmethod
    def begin(cls, data_dir: Path, scan: ScanInfo, stream: str, config: Config, fsync: bool,
              store: SpoolStore | None) -> tuple[OpenScan, list[dict[str, Any]]]:
        """A new scan: its folder, spool and journal. Returns it and its first feed messages."""
        folder = None
        try:
            folder = scan_folder(data_dir, scan.scan_id)
        except OSError as exc:
            obj = cls(None, scan, stream, config, fsync, store)
            obj._error(f"journal not writable, nor the spool: {exc}")
            obj.spool_failed = True
            return obj, obj.live.start()
        obj = cls(folder, scan, stream, config, fsync, store)
        try:
            obj.spool = Spool.create(folder, scan, stream, fsync)
            obj._charge(obj.spool.bytes)
        except OSError as exc:
            obj._spool_error(f"spool not writable: {exc}")
        try:
            obj.journal = Journal(folder, scan, fsync, checks=obj.live.engine.contract.describe())
        except OSError as exc:
            obj._error(f"journal not writable: {exc}")
        return obj, obj.live.start()

    @classmethod
    def resume(cls, spooled: SpooledScan, config: Config, fsync: bool,
               store: SpoolStore | None) -> tuple[OpenScan, list[dict[str, Any]]]:
        """A scan a stopped daemon left open: the engine re-run over its spool (deterministic: the same results
        as before the stop), the journal rewritten from them. Returns it and every feed message of the scan so
        far (scan_start, results, one progress), for the snapshot."""
        folder = spooled.path.parent
        obj = cls(folder, spooled.scan, spooled.stream, config, fsync, store)
        obj.resumed = True
        messages = obj.live.start(resumed_from_spool=spooled.n_positions)  # viewers say so (docs/protocol.md)
        for _pos, t in spooled.transients:
            messages += obj.live.process(t)[1]
        obj.positions = spooled.n_positions
        if obj.live.engine.results:
            messages.append(obj.live.progress())
        if spooled.end_status is None:
            try:
                obj.spool = Spool(spooled.path, fsync, resume=spooled)
            except OSError as exc:
                obj._spool_error(f"spool not writable: {exc}")
        verdicts = old_verdicts(folder)
        for v in verdicts:
            obj._note_verdict({"verdict": v["verdict"], "details": {"findings": v["findings"]}})
        obj._verdict = verdicts[-1]["verdict"] if verdicts else None
        records = [result_record(r) for r in obj.live.engine.results] + verdicts
        records.append({"record": "resumed", "time": time.time(), "positions": obj.positions,
                        "torn_spool_bytes": spooled.torn_bytes})
        try:
            obj.journal = Journal(folder, spooled.scan, fsync, records=records,
                                  checks=obj.live.engine.contract.describe())
        except OSError as exc:
            obj._error(f"journal not writable: {exc}")
        return obj, messages

    # ------------------------------------------------------------------ transients
    def take(self, pos: int, transient: Transient, publish: Publish) -> list[TransientQC]:
        """Check the transient at ``pos`` (== self.positions) and publish its results at once; its spool
        write and journal records wait for :meth:`settle` (called before the acknowledgement), so the result
        leaves before the bookkeeping competes with it for the CPU. A transient the engine fails on is
        spooled all the same."""
        self.touch()
        self.positions = pos + 1
        try:
            results, messages = self.live.process(transient)
        except Exception:
            self._unsettled.append((pos, transient, None))
            raise
        publish(messages)
        self._unsettled.append((pos, transient, results))
        return results

    def skip(self, pos: int, reason: str) -> None:
        """Position ``pos`` held a transient rejected for its content: used up, recorded in the spool."""
        self.touch()
        self._unsettled.append((pos, None, reason))
        self.positions = pos + 1

    def settle(self, publish: Publish | None) -> None:
        """The bookkeeping of the transients taken since the last call, in stream order: spool records
        (written, not yet fsync'd), journal records, then a live progress message when one is due."""
        unsettled, self._unsettled = self._unsettled, []
        for pos, transient, outcome in unsettled:
            if transient is None:
                self._spool(lambda sp, p=pos, why=outcome: sp.append_skip(p, why), 64)
                continue
            self._spool(lambda sp, p=pos, t=transient: sp.append_transient(p, t), self._record_bytes(transient))
            if outcome is not None:
                self._journal(outcome)
        if publish is None:
            return
        progress = self.live.progress_if_due()
        if progress:
            publish(progress)
            self._note_verdict(progress[0]["summary"])

    def touch(self) -> None:
        self.last_message_at = time.monotonic()
        if self.resumed:
            self.producer_back = True

    @property
    def durable(self) -> int:
        """Positions fsync'd in the spool (0 without a spool)."""
        return self.spool.durable if self.spool is not None else 0

    def sync(self) -> int:
        """Settle what is unsettled (without progress), fsync spool and journal; returns the durable positions."""
        self.settle(None)
        if self.spool is not None and not self.spool_failed:
            try:
                self.spool.sync()
            except OSError as exc:
                self._spool_error(f"spool write failed: {exc}")
        if self.journal is not None:
            try:
                self.journal.sync()
            except OSError as exc:
                self._journal_failed(exc)
        return self.durable

    def finish(self, status: str, publish: Publish) -> ScanSummary:
        """End the scan. The stream's outcome is saved first (so a producer that asks again after a crash
        learns the scan is closed, and a restarted daemon closes it rather than resuming it), then the last
        results and the summary are published, the journal closed and the spool ended."""
        self.settle(None)
        tail, summary, messages = self.live.finish(status)
        if status != "complete":
            self._keep_worst_live(summary)
            messages[-1]["summary"] = summary.to_dict()
        if self.folder is not None:
            try:
                write_stream_file(self.folder, self.outcome(status, summary.verdict))
            except OSError:
                pass  # the same folder's journal error is reported below
        publish(messages)
        self._journal(tail)
        if self.journal is not None:
            try:
                self.journal.close(self.live.engine.results, summary)
            except OSError as exc:
                self._journal_failed(exc)
        if self.spool is not None and not self.spool_failed:
            try:
                self.spool.end(status)
            except OSError as exc:
                self._spool_error(f"spool write failed: {exc}")
        return summary

    def outcome(self, status: str, verdict: str) -> dict[str, Any]:
        """What a producer asking about this stream after its end is told (stream.json)."""
        return {"stream": self.stream, "scan_id": self.scan.scan_id, "positions": self.positions,
                "durable": self.durable, "status": status, "verdict": verdict}

    def take_errors(self) -> list[str]:
        out, self._errors = self._errors, []
        return out

    # ------------------------------------------------------------------ internals
    def _record_bytes(self, t: Transient) -> int:
        return self.spool.record_size(t) if self.spool is not None else t.data.nbytes

    def _charge(self, n: int) -> None:
        if self.store is not None:
            self.store.charge(n)

    def _spool(self, write: Callable[[Spool], None], need: int) -> None:
        if self.spool is None or self.spool_failed:
            return
        store = self.store
        if store is not None and not store.fits(need):
            store.tidy(keep=self.spool.path, need_bytes=need)
            if not store.fits(need):
                self._spool_error(f"spool budget of {store.budget_bytes / 1e6:.0f} MB exceeded "
                                  f"({store.used / 1e6:.0f} MB in use)")
                return
        before = self.spool.bytes
        try:
            write(self.spool)
        except OSError as exc:
            self._spool_error(f"spool write failed: {exc}")
            return
        self._charge(self.spool.bytes - before)

    def _spool_error(self, what: str) -> None:
        """The spool stops for this scan; what is already durable stays acknowledged and on disk."""
        self.spool_failed = True
        if self.spool is not None:
            try:  # what was written whole before the failure becomes durable, if the disk still takes it
                self.spool.sync()
            except OSError:
                pass
            self.spool.abandon()
        self._error(f"{what}: the rest of this scan is checked but not spooled (a daemon crash now loses "
                    f"transients after {self.durable} unless the producer still holds them)")

    def _journal(self, results: list[TransientQC]) -> None:
        if self.journal is None:
            return
        try:
            for qc in results:
                self.journal.result(qc)
        except OSError as exc:
            self._journal_failed(exc)

    def _note_verdict(self, summary: dict[str, Any]) -> None:
        record = verdict_record(summary)
        worst = self.worst_live
        if worst is None or SEVERITY_RANK.get(record["verdict"], 0) > SEVERITY_RANK.get(worst["verdict"], 0):
            self.worst_live = record
        if self.journal is None or record["verdict"] == self._verdict:
            return
        self._verdict = record["verdict"]
        try:
            self.journal.write(record)
        except OSError as exc:
            self._journal_failed(exc)

    def _keep_worst_live(self, summary: ScanSummary) -> None:
        """A scan that did not end normally keeps the worst verdict it reached live, with that moment's reasons
        (its later data may have looked better, but nobody saw the scan to its end)."""
        worst = self.worst_live
        if worst is None or SEVERITY_RANK.get(worst["verdict"], 0) <= SEVERITY_RANK[summary.verdict]:
            return
        summary.verdict = worst["verdict"]
        reasons = [f["text"] for f in worst["findings"] if f.get("severity") == worst["verdict"]]
        summary.reasons.insert(0, f"{worst['verdict'].upper()} live before the scan stopped"
                                  + (f": {'; '.join(reasons)}" if reasons else ""))

    def _journal_failed(self, exc: OSError) -> None:
        self.journal = None
        self._error(f"journal write failed: {exc}")

    def _error(self, text: str) -> None:
        self._errors.append(text)


def write_stream_file(folder: Path, record: dict[str, Any]) -> None:
    tmp = folder / (STREAM_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / STREAM_FILE)


def read_stream_file(folder: Path) -> dict[str, Any] | None:
    try:
        rec = json.loads((folder / STREAM_FILE).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("stream") else None


def read_stream_files(data_dir: Path, newest: int = 64) -> list[dict[str, Any]]:
    """The outcomes of the most recently closed streams (oldest first)."""
    paths = sorted(Path(data_dir).glob(f"*/{STREAM_FILE}"), key=lambda p: p.stat().st_mtime)[-newest:]
    return [rec for rec in (read_stream_file(p.parent) for p in paths) if rec is not None]
