"""One scan the daemon has open: the per-scan session between the sources and the sinks (docs/architecture.md).

It holds the engine (session.LiveScan), the producer stream's positions, and the scan's sinks (sinks.py: the
feed with its snapshot, the journal, the raw spool, the end-of-scan outputs), and applies the one order every
transient follows: engine -> feed at once (:meth:`take`); once the burst is over, spool and journal records and
live progress (:meth:`settle`); fsync (:meth:`sync`) before the daemon acknowledges. An acknowledged transient
is always on disk, and a result never waits for a disk nor for bookkeeping. The results are held once, by the
engine. A sink that fails says why (:meth:`take_errors`) and stops; QC goes on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from . import feed
from .config import Config
from .journal import interrupted_summary, old_verdicts, result_record, scan_folder, verdict_record
from .model import SEVERITY_RANK, WARN, ScanInfo, ScanSummary, Transient, TransientQC
from .output_writer import OutputWriter
from .plugin_api import Finding
from .session import LiveScan
from .sinks import JournalSink, OutputsSink, Sink, SpoolSink
from .spool import SpooledScan, SpoolStore

log = logging.getLogger("mrsqc.daemon")

STREAM_FILE = "stream.json"  # written at scan end: which producer stream the folder holds, and how it ended


class OpenScan:
    def __init__(self, folder: Path | None, scan: ScanInfo, stream: str, config: Config,
                 writer: OutputWriter | None = None):
        self.folder = folder
        self.writer = writer  # where the slow end-of-scan files are written (None: at once)
        self.scan = scan
        self.stream = stream
        self.live = LiveScan(scan, config)
        self.sinks: list[Sink] = []
        self.spool: SpoolSink | None = None
        self.positions = 0  # transient positions taken: the next transient of this stream must have this pos
        self.resumed = False  # rebuilt from the spool by a restarted daemon
        self.producer_back = False  # a message of this stream arrived since the resume
        self.last_message_at = time.monotonic()
        self._errors: list[str] = []
        # taken, published, not yet spooled or journaled: (pos, transient, results) or (pos, None, skip reason)
        self._unsettled: list[tuple[int, Transient | None, Any]] = []
        self._verdict: str | None = None  # the last live verdict journaled
        self.worst_live: dict[str, Any] | None = None  # the worst live verdict reached: verdict_record form
        self._last_live: dict[str, Any] | None = None  # the latest live verdict record
        self._progress_failed = False  # the live summary raised (reported once)

    def _attach(self, feed: Sink, spool: SpoolSink | None, journal: Sink | None) -> None:
        """The sinks, in the order they are called: feed, spool, journal, outputs."""
        self.spool = spool
        outputs = OutputsSink(self.folder, self.writer) if self.folder else None
        self.sinks = [s for s in (feed, spool, journal, outputs) if s]
        for sink in self.sinks:
            sink.open(self)

    # ------------------------------------------------------------------ opening
    @classmethod
    def begin(cls, data_dir: Path, scan: ScanInfo, stream: str, config: Config, fsync: bool,
              store: SpoolStore | None, feed: Sink, writer: OutputWriter | None = None) -> OpenScan:
        """A new scan: its folder, spool and journal; its first feed message is published."""
        try:
            folder = scan_folder(data_dir, scan.scan_id)
        except OSError as exc:
            obj = cls(None, scan, stream, config, writer)
            obj._attach(feed, None, None)
            obj._error(f"journal not writable, nor the spool: {exc}")
            obj._publish(obj.live.start())
            return obj
        obj = cls(folder, scan, stream, config, writer)
        engine = obj.live.engine
        obj._attach(feed, SpoolSink.create(folder, scan, stream, fsync, store),
                    JournalSink.create(folder, scan, fsync, engine.contract.describe(), engine.provenance))
        obj._publish(obj.live.start())
        return obj

    @classmethod
    def resume(cls, spooled: SpooledScan, config: Config, fsync: bool, store: SpoolStore | None,
               feed: Sink, writer: OutputWriter | None = None) -> OpenScan:
        """A scan a stopped daemon left open: the engine re-run over its spool (deterministic: the same results
        as before the stop), the journal rewritten from them; every feed message of the scan so far
        (scan_start, results, one progress) is published, for the snapshot."""
        folder = spooled.path.parent
        obj = cls(folder, spooled.scan, spooled.stream, config, writer)
        obj.resumed = True
        messages = obj.live.start(resumed_from_spool=spooled.n_positions)  # viewers say so (docs/protocol.md)
        for _pos, t in spooled.transients:
            messages += obj.live.process(t)[1]
        obj.positions = spooled.n_positions
        if obj.live.engine.results:
            messages.append(obj.live.progress())
        verdicts = old_verdicts(folder)
        for v in verdicts:
            obj._note_worst({"verdict": v["verdict"], "findings": v["findings"]})
        obj._verdict = verdicts[-1]["verdict"] if verdicts else None
        records = [result_record(r) for r in obj.live.engine.results] + verdicts
        records.append({"record": "resumed", "time": time.time(), "positions": obj.positions,
                        "torn_spool_bytes": spooled.torn_bytes})
        obj._attach(feed, SpoolSink.resume(spooled, fsync, store),
                    JournalSink.create(folder, spooled.scan, fsync, obj.live.engine.contract.describe(),
                                       obj.live.engine.provenance, records))
        obj._publish(messages)
        return obj

    # ------------------------------------------------------------------ transients
    def take(self, pos: int, transient: Transient) -> list[TransientQC]:
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
        self._publish(messages)
        self._unsettled.append((pos, transient, results))
        return results

    def skip(self, pos: int, reason: str) -> None:
        """Position ``pos`` held a transient rejected for its content: used up, recorded in the spool."""
        self.touch()
        self._unsettled.append((pos, None, reason))
        self.positions = pos + 1

    def settle(self, progress: bool = True) -> None:
        """The bookkeeping of the transients taken since the last call, in stream order (spool and journal
        records, not yet fsync'd), then a live progress message when one is due (``progress``)."""
        unsettled, self._unsettled = self._unsettled, []
        for pos, transient, outcome in unsettled:
            for sink in self.sinks:
                if transient is None:
                    sink.skip(pos, outcome)
                else:
                    sink.record(pos, transient, outcome)
        if not progress:
            return
        try:
            messages = self.live.progress_if_due()
        except Exception as exc:  # a bug in a check's live summary: the results go on, the live view waits
            if not self._progress_failed:
                log.exception("live summary of scan %s failed", self.scan.scan_id)
                self._error(f"internal error in the live summary: {type(exc).__name__}: {exc} (results go on)")
            self._progress_failed = True
            return
        if messages:
            self._publish(messages)
            self._note_verdict(messages[0]["summary"])

    def touch(self) -> None:
        self.last_message_at = time.monotonic()
        if self.resumed:
            self.producer_back = True

    @property
    def durable(self) -> int:
        """Positions fsync'd in the spool (0 without a spool)."""
        return self.spool.durable if self.spool is not None else 0

    def sync(self) -> int:
        """Settle what is unsettled (without progress), fsync every sink; returns the durable positions."""
        self.settle(False)
        for sink in self.sinks:
            sink.sync()
        return self.durable

    def finish(self, status: str, notes: tuple[str, ...] = ()) -> ScanSummary:
        """End the scan. The stream's outcome is saved first (so a producer that asks again after a crash
        learns the scan is closed, and a restarted daemon closes it rather than resuming it), then every
        sink finishes: the last results and the summary published, the journal closed, the outputs written,
        the spool ended."""
        self.settle(False)
        try:
            tail, summary, messages = self.live.finish(status)
        except Exception as exc:  # a bug at scan end must not lose the scan: a summary from its results
            tail, summary, messages = self._fallback_finish(status, exc)
        if notes:  # the producer's, after the reader's (as a file reader's own notes come)
            at = len(self.scan.notes)
            summary.notes[at:at] = [n for n in notes if n not in summary.notes]
        if status != "complete":
            self._keep_worst_live(summary)
        if notes or status != "complete":
            messages[-1]["summary"] = summary.to_dict()
        if self.folder is not None:
            try:
                write_stream_file(self.folder, self.outcome(status, summary.verdict))
            except OSError:
                pass  # the same folder's journal error is reported by its sink
        for sink in self.sinks:
            sink.finish(status, tail, summary, messages, self.live.engine.results)
        return summary

    def _fallback_finish(self, status: str, exc: Exception) -> tuple[list, ScanSummary, list[dict[str, Any]]]:
        """The scan's end when the engine's fails (a bug in a check): the summary rebuilt from the results so
        far as a journal-only recovery rebuilds it (journal.interrupted_summary), with the error as a WARN."""
        log.exception("end of scan %s failed", self.scan.scan_id)
        what = f"internal error at scan end: {type(exc).__name__}: {exc}"
        self._error(what)
        engine = self.live.engine
        summary = interrupted_summary(
            self.scan, engine.results, status, f"{what}; summary rebuilt from the per-transient results",
            [self._last_live] if self._last_live else [], engine.contract.describe(), engine.provenance,
            extra=[Finding(WARN, f"{what} (summary rebuilt from the per-transient results)", "internal_error")])
        return [], summary, [feed.final_summary(summary, None)]

    def outcome(self, status: str, verdict: str) -> dict[str, Any]:
        """What a producer asking about this stream after its end is told (stream.json)."""
        return {"stream": self.stream, "scan_id": self.scan.scan_id, "positions": self.positions,
                "durable": self.durable, "status": status, "verdict": verdict}

    def take_errors(self) -> list[str]:
        out, self._errors = self._errors, []
        for sink in self.sinks:
            out += sink.take_errors()
        return out

    # ------------------------------------------------------------------ internals
    def _publish(self, messages: list[dict[str, Any]]) -> None:
        for sink in self.sinks:
            sink.publish(messages)

    def _note_worst(self, record: dict[str, Any]) -> None:
        worst = self.worst_live
        if worst is None or SEVERITY_RANK.get(record["verdict"], 0) > SEVERITY_RANK.get(worst["verdict"], 0):
            self.worst_live = record

    def _note_verdict(self, summary: dict[str, Any]) -> None:
        record = verdict_record(summary)
        self._last_live = record
        self._note_worst(record)
        if record["verdict"] == self._verdict:
            return
        self._verdict = record["verdict"]
        for sink in self.sinks:
            sink.verdict(record)

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
