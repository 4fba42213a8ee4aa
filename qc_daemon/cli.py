"""The ``mrsqc`` command: check, simulate, daemon, replay, tui, keys, demo."""

from __future__ import annotations

import os

# One BLAS/OpenMP thread, set before numpy loads: the only BLAS call is a small matrix-vector product (coil
# combination), and worker threads competing for 2 cores put 8-10 ms stalls into 15 % of the daemon's
# latencies (bench: scan-pace p99 10.9 ms -> 3.7 ms). An explicit setting in the environment wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from . import __version__  # noqa: E402
from .errors import InputError  # noqa: E402

EXIT_BAD_INPUT = 2


def _progress(result, total: int) -> None:
    done = result.index + 1
    width = 30
    fill = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} transients")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def cmd_to_mrd(args: argparse.Namespace) -> int:
    from .sources.mrd import write_mrd
    from .sources.open import open_recording

    rec = open_recording(args.path)
    if args.water:
        from .check import merge_water

        rec = merge_water(rec, open_recording(args.water, role="water"), args.water)
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(args.out, "give the path of the .h5 file to write, in an existing folder")
    write_mrd(out, rec)
    print(f"wrote {out}: {len(rec.transients)} acquisitions ({rec.scan.n_coils} coils x "
          f"{rec.scan.samples_per_transient} samples), MRD (ISMRMRD v1) HDF5, group 'dataset'")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import run_check
    from .config import load_config
    from .report import summary_text, write_outputs

    config = load_config(args.config)
    if args.out:
        _out_dir("--out", args.out)  # before any work: a whole check must not end in an unwritable folder
    show = _progress if (sys.stderr.isatty() and not args.quiet) else None
    run = run_check(args.path, water=args.water, config=config, on_result=show)
    print(summary_text(run.scan, run.summary, run.checks))
    if args.out:
        from .nifti_out import write_nifti_outputs
        from .tracking import FilterParams

        write_outputs(args.out, run.results, run.summary)
        notes = write_nifti_outputs(args.out, run.scan, run.results, run.acquired, run.summary.provenance,
                                    FilterParams.from_config(run.config["tracking"]))
        from .check import write_report

        write_report(args.out, run.scan, run.results, run.summary, run.checks, run.acquired, run.config,
                     run.limits, run.noise_sd)
        print(f"wrote transients.jsonl, summary.json, report.html (+ report.json) and NIfTI-MRS (combined.nii.gz, "
              f"accepted_aligned.nii.gz, their .tsv) in {args.out}")
        for note in notes:
            print(f"note: {note}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render report.html from saved results (report.json, else summary.json + transients.jsonl)."""
    from .html_report import render
    from .report_data import load

    folder = Path(args.folder)
    try:
        data = load(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(folder, f"no saved mrsqc results to report ({exc})") from None
    out = Path(args.out) if args.out else folder / "report.html"
    try:
        out.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        raise InputError(out, f"not writable ({exc.strerror or exc})") from None
    print(f"wrote {out}" + ("" if data.get("spectra") else f" (no spectra: {data.get('spectra_missing')})"))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """Check every scan under the inputs in parallel: study.tsv, index.html, each scan's outputs."""
    from .config import load_config
    from .study import ERROR, run_study, stderr_progress

    load_config(args.config)  # a bad config is one line before any work
    out = _out_dir("--out", args.out)
    for p in args.inputs:
        if not Path(p).exists():
            raise InputError(p, "not found")
    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs", "must be at least 1")
    rows, _ = run_study(args.inputs, out, jobs=args.jobs, config_path=args.config, force=args.force,
                        on_progress=None if args.quiet else stderr_progress)
    if sys.stderr.isatty() and not args.quiet:
        sys.stderr.write("\n")
    checked = [r for r in rows if r.get("verdict") != ERROR]
    counts = {}
    for r in rows:
        counts[r.get("verdict")] = counts.get(r.get("verdict"), 0) + 1
    print(f"{len(rows)} scans: " + ", ".join(f"{n} {str(v).upper()}" for v, n in sorted(counts.items()))
          + f"; wrote {out / 'study.tsv'} and {out / 'index.html'}")
    for r in rows:
        if r.get("verdict") == ERROR:
            print(f"unreadable: {r['file']}: {r['error']}", file=sys.stderr)
    if not checked:
        raise InputError(" ".join(args.inputs), "no scan could be checked" if rows else "no scan found")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate_files import write_preset, write_simulation

    _out_dir("--out", args.out)
    for name, lo, hi in (("averages", 1, 100_000), ("coils", 1, 256), ("points", 256, 65536)):
        if not lo <= getattr(args, name) <= hi:
            raise InputError(f"--{name}", f"{getattr(args, name)} is outside {lo}..{hi}")
    if not (args.snr > 0 and args.snr != float("inf")) or args.drift != args.drift:
        raise InputError("--snr/--drift", "must be finite numbers, --snr > 0")

    if args.preset:
        for p in write_preset(args.preset, Path(args.out)):
            print(f"wrote {p}")
        return 0
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.name):
        raise InputError("--name", f"{args.name!r}: use letters, digits, '_', '.', '-' (a file stem, no folders)")
    if args.averages < 20 and not args.no_events:
        raise InputError("--averages", "at least 20 with motion events (8 of them, from average 12 on); or "
                                       "--no-events")
    try:
        paths = write_simulation(Path(args.out), name=args.name, formats=args.format, averages=args.averages,
                                 n_coils=args.coils, n_points=args.points, naa_snr=args.snr, seed=args.seed,
                                 drift_hz_per_min=args.drift, events=not args.no_events, mega=args.mega)
    except ValueError as exc:  # the scan the options describe is not a plausible one (ScanInfo.validate)
        raise InputError("simulate", str(exc)) from None
    for p in paths:
        print(f"wrote {p}")
    return 0


def _key(path: str | None) -> bytes | None:
    from .protocol import load_key

    try:
        return load_key(path)
    except (OSError, ValueError) as exc:
        raise InputError(path or "?", f"HMAC key unusable ({exc})") from None


def cmd_daemon(args: argparse.Namespace) -> int:
    """Run the QC daemon until SIGINT/SIGTERM."""
    import signal
    import threading

    from .config import load_config
    from .daemon import Daemon, Endpoints

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from .security import CurveConfig

    if args.curve_clients and not args.curve_secret:
        raise InputError("--curve-clients", "needs --curve-secret (the daemon's own key)")
    curve = CurveConfig(Path(args.curve_secret), Path(args.curve_clients) if args.curve_clients else None) \
        if args.curve_secret else None
    config = load_config(args.config)  # a bad config is its own one-line error, before any socket
    key = _key(args.key_file)
    for name in ("ingest", "feed", "snapshot"):
        _check_endpoint(f"--{name}", getattr(args, name), bind=True)
    try:
        daemon = Daemon(Endpoints(args.ingest, args.feed, args.snapshot), data_dir=args.data_dir,
                        config=config, key=key, heartbeat_s=args.heartbeat,
                        fsync=not args.no_fsync, allow_remote=args.allow_remote,
                        producer_timeout_s=args.producer_timeout, curve=curve,
                        spool_budget_bytes=int(args.spool_budget_gb * 1e9),
                        spool_retention_s=args.spool_retention_days * 86400.0)
        bound = daemon.bind()
    except ValueError as exc:
        raise InputError("daemon", str(exc)) from None
    except Exception as exc:  # zmq errors: address in use, bad endpoint
        raise InputError("daemon", f"cannot bind ({exc})") from None
    warm = daemon.warm_up()
    print(json.dumps({"ingest": bound.ingest, "feed": bound.feed, "snapshot": bound.snapshot,
                      "data_dir": str(daemon.data_dir), "warm_up_s": round(warm, 3)}), flush=True)
    try:
        daemon.serve(stop)
    finally:
        daemon.close()
    return 0


def cmd_mrd_server(args: argparse.Namespace) -> int:
    """The scanner bridge until SIGINT/SIGTERM (bridge.py; docs/scanner.md)."""
    import signal
    import threading

    from .bridge import BridgeSettings, MrdServer

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # the reader and forwarder threads of a connection hand each transient over: with Python's default 5 ms
    # switch interval a thread waiting for the GIL can wait that long behind the other's work
    sys.setswitchinterval(0.0005)
    if not args.allow_remote and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise InputError("--host", f"{args.host} is not the loopback interface: pass --allow-remote to listen there "
                                   "(the scanner's network only; docs/scanner.md)")
    for name in ("to", "feed", "snapshot"):
        _check_endpoint(f"--{name}", getattr(args, name))
    from .security import ClientCurve

    if bool(args.curve_secret) != bool(args.server_key):
        raise InputError("--curve-secret/--server-key", "give both for an encrypted connection to the daemon")
    curve = ClientCurve(Path(args.curve_secret), Path(args.server_key)) if args.curve_secret else None
    if curve and args.in_process:
        raise InputError("--in-process", "the in-process daemon is reached on loopback only: no CURVE keys needed")
    settings = BridgeSettings(ingest=args.to, feed=args.feed, snapshot=args.snapshot, key=_key(args.key_file),
                              curve=curve,
                              buffer_bytes=int(args.buffer_mb * 2 ** 20), text_interval_s=args.text_interval,
                              idle_timeout_s=args.idle_timeout, daemon_timeout_s=args.daemon_timeout)
    daemon = thread = None
    daemon_stop = threading.Event()
    if args.in_process:
        from .config import load_config
        from .daemon import Daemon, Endpoints

        config = load_config(args.config)
        daemon = Daemon(Endpoints("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),
                        data_dir=args.data_dir, config=config, key=settings.key)
        bound = daemon.bind()
        daemon.warm_up()
        settings.ingest, settings.feed, settings.snapshot = bound.ingest, bound.feed, bound.snapshot
        thread = threading.Thread(target=daemon.serve, args=(daemon_stop,), name="daemon", daemon=True)
        thread.start()
    try:
        server = MrdServer(settings, args.host, args.port)
    except OSError as exc:
        raise InputError("--port", f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    import gc

    import ismrmrd.xsd  # noqa: F401  (the header parser, imported now: its many objects are frozen with the rest)

    gc.collect()
    # start-up objects leave the collector's generations: a full collection over them (~20 ms, PyXB's header
    # classes among them) otherwise lands on a transient every few dozen, as the daemon found too
    gc.freeze()
    print(json.dumps({"mrd": f"{server.address[0]}:{server.address[1]}", "ingest": settings.ingest,
                      "feed": settings.feed, "snapshot": settings.snapshot,
                      "data_dir": str(daemon.data_dir) if daemon else None}), flush=True)
    try:
        server.serve(stop)
    finally:
        if daemon is not None:
            daemon_stop.set()
            thread.join(10)
            daemon.close()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import DeliveryError, replay

    speed = _speed(args.speed)
    if args.mrd:
        return _replay_mrd(args, speed)
    _check_endpoint("--to", args.to)
    from .security import ClientCurve

    if bool(args.curve_secret) != bool(args.server_key):
        raise InputError("--curve-secret/--server-key", "give both for an encrypted connection")
    curve = ClientCurve(Path(args.curve_secret), Path(args.server_key)) if args.curve_secret else None
    try:
        delivery = replay(args.path, args.to, speed, key=_key(args.key_file),
                          on_sent=(lambda t, total: _progress(t, total)) if sys.stderr.isatty() else None,
                          curve=curve, send_timeout_s=args.timeout)
    except DeliveryError as exc:
        raise InputError(args.to, f"{exc} [{exc.delivery.describe()}]") from None
    if not delivery.complete:
        raise InputError(args.to, f"the daemon closed the scan without all of it: {delivery.describe()}")
    print(f"replayed {delivery.sent} transients to {args.to}: {delivery.describe()}")
    if delivery.rejected:
        for r in delivery.rejected[:5]:
            print(f"rejected: {r['reason']}: {r['detail']}", file=sys.stderr)
    return 0


def _replay_mrd(args: argparse.Namespace, speed: float | None) -> int:
    """replay --mrd HOST:PORT: as a scanner streams MRD; prints the server's TEXT lines as they were sent."""
    from .mrd_client import replay_mrd
    from .sources.open import open_recording

    host, _, port = args.mrd.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError("--mrd", f"{args.mrd!r} is not HOST:PORT")
    rec = open_recording(args.path)
    try:
        out = replay_mrd(rec, host.strip("[]"), int(port), speed,
                         on_sent=(lambda t, total: _progress(t, total)) if sys.stderr.isatty() else None,
                         timeout_s=args.timeout)
    except OSError as exc:
        raise InputError("--mrd", f"cannot stream to {args.mrd} ({exc.strerror or exc})") from None
    for line in out.lines:
        print(line)
    print(f"sent {out.sent} acquisitions to {args.mrd}; {len(out.lines)} lines back"
          + ("" if out.closed_by_server else "; the server did not answer CLOSE"))
    return 0 if out.closed_by_server else 2


def _out_dir(option: str, path: str | Path) -> Path:
    """Create an output folder and prove it is writable (a probe file), or one line naming why not."""
    if not str(path).strip():  # Path("") is the current folder: an empty --out is a mistake, not a request
        raise InputError(option, "is empty: give a folder (. for the current one)")
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".mrsqc-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(option, f"{folder} is not a writable folder ({exc.strerror or exc})") from None
    return folder


def _check_endpoint(option: str, endpoint: str, bind: bool = False) -> None:
    """A ZeroMQ endpoint as mrsqc uses them: tcp://HOST:PORT (PORT may be * where the daemon binds: any free
    port), ipc://PATH or inproc://NAME; anything else is a one-line error naming the option, before any
    socket is made."""
    import re

    if re.fullmatch(r"tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\*|\d{1,5})", endpoint or ""):
        port = endpoint.rsplit(":", 1)[1]
        if (port == "*" and bind) or (port != "*" and 0 < int(port) < 65536):
            return
    elif re.fullmatch(r"(ipc|inproc)://.+", endpoint or ""):
        return
    raise InputError(option, f"{endpoint!r} is not a ZeroMQ endpoint (expected tcp://HOST:PORT, e.g. "
                             "tcp://127.0.0.1:5555, or ipc://PATH)")


def _positive(value: str) -> float:
    v = _non_negative(value)
    if v == 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be > 0")
    return v


def _pace(value: str) -> float:
    """A --speed number (times scan pace) within MIN_SPEED..MAX_SPEED."""
    v = _positive(value)
    if not MIN_SPEED <= v <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"{value!r} is outside {MIN_SPEED:g}..{MAX_SPEED:g}")
    return v


def _non_negative(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"{value!r} must be a finite number >= 0")
    return v


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise InputError("--speed", f"{value!r} is not a number or 'max'") from None
    if not speed > 0 or speed == float("inf"):
        raise InputError("--speed", "must be a positive number or 'max'")
    if not MIN_SPEED <= speed <= MAX_SPEED:  # beyond these a wait overflows or is meaningless: say so now
        raise InputError("--speed", f"{value} is outside {MIN_SPEED:g}..{MAX_SPEED:g} (or 'max')")
    return speed


MIN_SPEED, MAX_SPEED = 0.01, 1e6  # times scan pace: 0.01 = a 2 s TR every 200 s


def cmd_keys(args: argparse.Namespace) -> int:
    import re

    from .security import generate_keys

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.name):
        raise InputError("--name", f"{args.name!r}: use letters, digits, '_', '.', '-' (a file name, no folders)")
    _out_dir("--out", args.out)
    try:
        public, secret = generate_keys(args.out, args.name)
    except FileExistsError as exc:
        raise InputError(args.out, str(exc)) from None
    print(f"public key (share it): {public}\nsecret key (keep it, mode 0600): {secret}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Daemon + accelerated replay of the bundled scan + the live view (qc_daemon/demo.py)."""
    from .demo import run_demo, run_demo_tui

    if args.text or not (sys.stdout.isatty() and sys.stdin.isatty()):
        run_demo(speed=args.speed)
    else:
        run_demo_tui(speed=args.speed, bell=not args.no_bell)
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """The technologist's live view of a daemon, or an offline review of a file (tui/app.py); plain text lines
    when there is no terminal to draw on (qc_daemon/text_view.py)."""
    text = args.text or not (sys.stdin.isatty() and sys.stdout.isatty())
    export_dir = _export_dir(args.export_dir)  # checked before anything runs, in either mode
    config = None
    if args.path:
        from .config import load_config
        from .sources.open import open_recording

        open_recording(args.path)  # a bad file is a one-line error here, before the screen is taken over
        config = load_config(args.config)
        speed = _speed(args.speed)
        if text:
            from .text_view import review_file

            review_file(args.path, water=args.water, config=config, speed=speed)
            return 0
        from tui.file_watcher import FileWatcher

        def factory(app):
            return FileWatcher(app, args.path, water=args.water, config=config, speed=speed)

        source = Path(args.path).name
    else:
        from .security import ClientCurve

        _check_endpoint("--feed", args.feed)
        _check_endpoint("--snapshot", args.snapshot)
        if bool(args.curve_secret) != bool(args.server_key):
            raise InputError("--curve-secret/--server-key", "give both for an encrypted connection")
        curve = ClientCurve(Path(args.curve_secret), Path(args.server_key)) if args.curve_secret else None
        if text:
            from .text_view import follow_feed

            follow_feed(args.feed, args.snapshot, curve=curve, heartbeat_timeout_s=args.heartbeat_timeout)
            return 0
        from tui.feed_watcher import FeedWatcher

        def factory(app):
            return FeedWatcher(app, args.feed, args.snapshot, curve=curve,
                               heartbeat_timeout_s=args.heartbeat_timeout)

        source = args.feed
    from tui.app import QCApp

    QCApp(factory, source=source, bell=not args.no_bell, export_dir=export_dir).run()
    return 0


def _export_dir(value: str | None) -> Path:
    """Where `e` writes reports: --export-dir, else DATA_DIR/exports (created, checked writable up front)."""
    from .journal import default_data_dir

    folder = Path(value) if value else default_data_dir() / "exports"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError("--export-dir", f"{folder} cannot be created ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK):
        raise InputError("--export-dir", f"{folder} is not writable")
    return folder.resolve()


def _check_names() -> list[str]:
    """Installed checks by entry-point name (not imported: the help stays fast)."""
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group="mrsqc.checks"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mrsqc",
        description="Real-time quality control for single-voxel 1H MR spectroscopy. Frequencies in Hz "
                    "(+ = towards higher ppm, measured shift vs the scan reference), phases in degrees, "
                    "linewidths as FWHM in Hz, SNR = NAA peak height / noise SD (docs/results.md).")
    p.add_argument("--version", action="version", version=f"mrsqc {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line (for log collectors)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="check a recorded scan offline (twix, DICOM, NIfTI-MRS, Philips, GE, ...)",
                       description="Run every QC check on a recorded scan and print a summary. Formats read: "
                                   "Siemens twix (.dat, VB and VD/VE, multi-raid: the last measurement), Siemens "
                                   "spectroscopy DICOM (.IMA / CSA) and enhanced MRS DICOM (single file or a "
                                   "folder of per-transient files), single-voxel NIfTI-MRS (.nii/.nii.gz, "
                                   "as spec2nii writes it), an mrsqc spool (a daemon's raw record of a live "
                                   "scan), and through spec2nii's readers: Siemens RDA, Philips SDAT/SPAR (give "
                                   "either file) and DATA/LIST (with the scan's SPAR beside it), Philips private "
                                   "and UIH DICOM, GE P-files (.7) and Bruker scan folders. Formats are "
                                   "recognised by content; MRD (ISMRMRD) HDF5 too. Exit code 0 = checked "
                                   "(whatever the verdict), 2 = the input could not be read.",
                       epilog=f"checks installed (entry-point group mrsqc.checks): {', '.join(_check_names())}; "
                              "turn one off with [checks] disable = [\"name\"] in --config (docs/plugins.md)")
    c.add_argument("path", help="Siemens twix .dat, MRS DICOM file, a folder of per-transient DICOM files, "
                                "NIfTI-MRS, a vendor file spec2nii reads (SDAT/SPAR, DATA/LIST, RDA, .7, a Bruker "
                                "folder), or an mrsqc spool (spool.mrsqc, or the daemon's scan folder holding it)")
    c.add_argument("--water", metavar="FILE",
                   help="separate unsuppressed water-reference scan (any format above); it must match the "
                        "scan's coils x points x dwell time")
    c.add_argument("--config", metavar="FILE",
                   help="TOML file overriding defaults (every key, unit and source: the engine's in "
                        "qc_daemon/default_config.toml, each check's in plugins/<name>.toml)")
    c.add_argument("--out", metavar="DIR",
                   help="write DIR/transients.jsonl and DIR/summary.json, and NIfTI-MRS for analysts: "
                        "combined.nii.gz (coil-combined, as acquired), accepted_aligned.nii.gz (accepted "
                        "transients, frequency- and phase-corrected), each with a .tsv (docs/results.md)")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_check)

    st = sub.add_parser("study", help="check every scan under folders in parallel: study.tsv, index.html, reports",
                        description="Find every scan under the folders and files given (twix, DICOM files and "
                                    "folders, NIfTI-MRS, MRD, Philips, RDA, GE, Bruker; water references paired "
                                    "where the names leave no doubt: NAME + NAME_wref, or metab_X + wref_X alone "
                                    "in a folder), check them in parallel on all cores with a progress line and "
                                    "an ETA, and write OUT/scans/<name>/ (check --out's files and report.html), "
                                    "OUT/study.tsv (one row per scan; columns in docs/results.md) and "
                                    "OUT/index.html (sortable, filterable by verdict). A file that cannot be "
                                    "read is a row with its error. A re-run skips scans whose files and config "
                                    "are unchanged (--force re-checks). Exit 0 when at least one scan was "
                                    "checked, 2 when none could be (or none was found).")
    st.add_argument("inputs", nargs="+", help="folders (searched recursively) and files")
    st.add_argument("--out", required=True, metavar="DIR", help="the study's output folder")
    st.add_argument("--jobs", type=int, metavar="N", help="scans checked at once (default: the number of cores)")
    st.add_argument("--config", metavar="FILE", help="TOML file overriding QC defaults (all scans)")
    st.add_argument("--force", action="store_true", help="re-check scans already done with the same files and config")
    st.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    st.set_defaults(func=cmd_study)

    rpt = sub.add_parser("report", help="re-render report.html from saved results (a check --out folder or a "
                                        "daemon scan folder)",
                         description="Render report.html from the results saved in FOLDER (report.json as `check "
                                     "--out` and the daemon write it; else summary.json + transients.jsonl, "
                                     "without spectra), without reading the raw data again.")
    rpt.add_argument("folder", help="a `check --out` folder or a daemon scan folder (DATA_DIR/<scan id>)")
    rpt.add_argument("--out", metavar="FILE", help="where to write the page (default FOLDER/report.html)")
    rpt.set_defaults(func=cmd_report)

    m = sub.add_parser("to-mrd", help="write a recording as an MRD (ISMRMRD) HDF5 dataset, for the scanner client",
                       description="Write any recording mrsqc reads (twix, DICOM, NIfTI-MRS, the vendor formats) as "
                                   "an MRD (ISMRMRD v1) HDF5 dataset laid out as siemens_to_ismrmrd lays out a "
                                   "twix: the XML header (f0, TE/TR, sequence, SpecVectorSize, ReadoutOS; no "
                                   "patient fields), one acquisition per transient with every coil, its average "
                                   "and edit-set counters and its time stamp (2.5 ms ticks). Data in mrsqc's frame, "
                                   "as a twix holds them. Exit code 0 = written, 2 = the input could not be read.")
    m.add_argument("path", help="the recording (any format `check` reads)")
    m.add_argument("out", help="the .h5 file to write (replaced if it exists)")
    m.add_argument("--water", metavar="FILE", help="a separate water-reference scan: its transients come first")
    m.set_defaults(func=cmd_to_mrd)

    s = sub.add_parser("simulate", help="write a simulated scan with ground truth (*.truth.json)",
                       description="Simulate a 3T brainstem-like SVS scan (coils, noise, drift, residual "
                                   "water, motion events) and write it in the formats asked for, with its truth.")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--preset", choices=["fixtures"], help="write the committed fixture set instead")
    s.add_argument("--name", default="sim", help="file stem (default: sim)")
    s.add_argument("--format", default="twix", metavar="FORMATS",
                   help="formats written, comma-separated: twix (Siemens .dat), dicom (per-transient MRS DICOM), "
                        "nifti (NIfTI-MRS, water in *_wref.nii.gz), sdat (Philips SDAT/SPAR, coil-combined), "
                        "datalist (Philips DATA/LIST + SPAR), rda (Siemens RDA, the average), uih (UIH DICOM), "
                        "ge (GE P-file P<seed>.7), bruker (a ParaVision study: scan 1, water in 2); "
                        "both = twix,dicom; "
                        "all (default twix)")
    s.add_argument("--averages", type=int, default=128, help="metabolite averages (default 128)")
    s.add_argument("--coils", type=int, default=32, help="receive coils (default 32)")
    s.add_argument("--points", type=int, default=2048, help="points per FID after oversampling removal")
    s.add_argument("--snr", type=float, default=4.0, help="per-transient NAA SNR (FID-A definition)")
    s.add_argument("--drift", type=float, default=2.0, help="linear drift, Hz/min (default 2)")
    s.add_argument("--seed", type=int, default=1, help="random seed: the same seed writes the same scan (default 1)")
    s.add_argument("--no-events", action="store_true", help="no motion/corruption events")
    s.add_argument("--mega", action="store_true", help="MEGA-edited: alternate edit OFF/ON sets")
    s.set_defaults(func=cmd_simulate)

    dm = sub.add_parser("daemon", help="run the live QC daemon (ZeroMQ ingest, results feed, journal, spool)",
                        description="Receive transients over ZeroMQ, spool them, run the QC engine on each, "
                                    "publish results and journal them; acknowledge each transient once it is on "
                                    "disk. After a crash or stop, a restart resumes the open scan from its spool "
                                    "and the producer re-sends the rest. Binds to 127.0.0.1 unless "
                                    "--allow-remote. Prints the bound endpoints as one JSON line; stops cleanly "
                                    "on SIGINT/SIGTERM (an open scan stays resumable).")
    dm.add_argument("--ingest", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                    help="PULL endpoint for producers (default %(default)s)")
    dm.add_argument("--feed", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                    help="PUB endpoint for viewers (default %(default)s)")
    dm.add_argument("--snapshot", default="tcp://127.0.0.1:5557", metavar="ENDPOINT",
                    help="ROUTER endpoint for late joiners (default %(default)s)")
    dm.add_argument("--data-dir", type=Path, metavar="DIR",
                    help="journal folder (default $MRSQC_DATA_DIR or ~/.local/share/mrsqc)")
    dm.add_argument("--config", metavar="FILE", help="TOML file overriding QC defaults")
    dm.add_argument("--key-file", metavar="FILE", help="shared HMAC-SHA256 key: every message must be signed with it")
    dm.add_argument("--allow-remote", action="store_true", help="allow binding to addresses other than 127.0.0.1")
    dm.add_argument("--no-fsync", action="store_true",
                    help="flush spool and journal without fsync (faster; an acknowledged transient may then be "
                         "lost in a power cut, not in a crash of the daemon alone)")
    dm.add_argument("--heartbeat", type=_positive, default=1.0, metavar="SECONDS",
                    help="heartbeat period on the feed, s (default 1)")
    dm.add_argument("--producer-timeout", type=_non_negative, default=60.0, metavar="SECONDS",
                    help="close an open scan when its producer is silent this long, s (default 60; 0 = never): "
                         "as incomplete, or as interrupted when the daemon resumed it after a restart and the "
                         "producer never came back")
    dm.add_argument("--spool-budget-gb", type=_non_negative, default=20.0, metavar="GB",
                    help="disk for the raw spools of all scans together, GB (default 20; 0 = no limit). Oldest "
                         "finished scans' spools go first; when the open scan's spool does not fit, the daemon "
                         "reports an error and goes on checking without spooling")
    dm.add_argument("--spool-retention-days", type=_non_negative, default=7.0, metavar="DAYS",
                    help="delete the spools of finished scans after this many days (default 7; 0 = keep them "
                         "until the budget needs the room). Journals and results are never deleted")
    dm.add_argument("--curve-secret", metavar="FILE",
                    help="the daemon's secret key file (mrsqc keys): encrypt all three sockets")
    dm.add_argument("--curve-clients", metavar="DIR",
                    help="folder of allowed client public keys (*.key); others are refused")
    dm.set_defaults(func=cmd_daemon)

    rp = sub.add_parser("replay", help="stream a recorded scan to a daemon",
                        description="Send a twix file, DICOM file or folder, or an mrsqc spool through the "
                                    "protocol, at scan pace (--speed 1, from the transients' times), N times "
                                    "faster, or max, and wait until the daemon has closed the scan with every "
                                    "transient. A daemon restart in between is survived (the rest is re-sent). "
                                    "Exit 0 = the daemon took the whole scan; 2 = it did not (one line says how "
                                    "far it got).")
    rp.add_argument("path", help="Siemens twix .dat, MRS DICOM file, or a folder of per-transient DICOM files")
    rp.add_argument("--to", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                    help="the daemon's ingest endpoint (default %(default)s)")
    rp.add_argument("--speed", default="max", help="1 = scan pace, N = N times faster, max = as fast as taken")
    rp.add_argument("--key-file", metavar="FILE", help="shared HMAC key file (when the daemon requires signatures)")
    rp.add_argument("--timeout", type=_positive, default=30.0, metavar="SECONDS",
                    help="give up when the daemon acknowledges nothing for this long, s (default 30)")
    rp.add_argument("--curve-secret", metavar="FILE",
                    help="this client's secret key file (mrsqc keys), for a CURVE daemon")
    rp.add_argument("--server-key", metavar="FILE", help="the daemon's public key file, for a CURVE daemon")
    rp.add_argument("--mrd", metavar="HOST:PORT",
                    help="stream as a scanner does, MRD over TCP, to an mrsqc mrd-server (or any MRD server) "
                         "instead of the daemon; prints the TEXT lines the server sends back")
    rp.set_defaults(func=cmd_replay)

    mr = sub.add_parser("mrd-server", help="the scanner bridge: an MRD (ISMRMRD) streaming server, e.g. behind "
                                           "Siemens FIRE",
                        description="Listen for a scanner streaming raw data as MRD over TCP (Siemens FIRE's "
                                    "IceFire, the python-ismrmrd-server client, mrsqc replay --mrd), pass each "
                                    "transient to the QC daemon the moment it arrives, and send the verdict back "
                                    "as TEXT lines the scanner's log viewer shows (DBG white, WRN yellow, ERR "
                                    "red): when the live verdict changes (at most one per --text-interval) and "
                                    "at scan end. The scanner's stream is never held up: transients beyond "
                                    "--buffer-mb are dropped and counted (the console is told). Prints the "
                                    "listening address and the daemon's endpoints as one JSON line. "
                                    "docs/scanner.md.")
    mr.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    mr.add_argument("--port", type=int, default=9002, help="TCP port (default %(default)s, FIRE's; 0 = any free)")
    mr.add_argument("--to", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                    help="the daemon's ingest endpoint (default %(default)s)")
    mr.add_argument("--feed", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                    help="the daemon's feed endpoint, for the live lines (default %(default)s)")
    mr.add_argument("--snapshot", default="tcp://127.0.0.1:5557", metavar="ENDPOINT",
                    help="the daemon's snapshot endpoint (default %(default)s)")
    mr.add_argument("--in-process", action="store_true",
                    help="run the QC daemon inside this process (random loopback ports) instead of using --to")
    mr.add_argument("--data-dir", type=Path, metavar="DIR", help="journal folder of the --in-process daemon")
    mr.add_argument("--config", metavar="FILE", help="TOML file overriding QC defaults (--in-process)")
    mr.add_argument("--key-file", metavar="FILE", help="shared HMAC key file (when the daemon requires signatures)")
    mr.add_argument("--curve-secret", metavar="FILE",
                    help="this bridge's secret key file (mrsqc keys), for a CURVE daemon")
    mr.add_argument("--server-key", metavar="FILE", help="the daemon's public key file, for a CURVE daemon")
    mr.add_argument("--buffer-mb", type=_positive, default=1024.0, metavar="MB",
                    help="transients held between scanner and daemon at most, MiB (default 1024: ~1000 "
                         "transients of 32 coils x 4096 samples)")
    mr.add_argument("--text-interval", type=_non_negative, default=5.0, metavar="SECONDS",
                    help="at most one live line to the console per this many seconds (default 5)")
    mr.add_argument("--idle-timeout", type=_positive, default=120.0, metavar="SECONDS",
                    help="close a scan as incomplete when its scanner connection is silent this long, s "
                         "(default 120)")
    mr.add_argument("--daemon-timeout", type=_positive, default=30.0, metavar="SECONDS",
                    help="stop passing transients on when the daemon is silent this long, s (default 30)")
    mr.add_argument("--allow-remote", action="store_true",
                    help="allow --host other than the loopback interface")
    mr.set_defaults(func=cmd_mrd_server)

    k = sub.add_parser("keys", help="generate a CURVE key pair (NAME.key public, NAME.key_secret secret)",
                       description="Create a key pair for the daemon (--curve-secret) or a client. Copy client "
                                   "public keys into the daemon's --curve-clients folder to allow them.")
    k.add_argument("--out", required=True, metavar="DIR", help="folder for the key files")
    k.add_argument("--name", required=True, help="key name, e.g. daemon or scanner-bridge")
    k.set_defaults(func=cmd_keys)

    d = sub.add_parser("demo", help="live demo: daemon + replay of the bundled scan + live text view",
                       description="Starts a daemon on random loopback ports, replays the bundled simulated scan "
                                   "(drift and motion events) through it and shows the live view. The view stays "
                                   "on the final verdict until q; with --text (or without a terminal) it prints "
                                   "each result and ends at the scan summary. Ctrl-C stops either; leaves no "
                                   "process behind.")
    d.add_argument("--speed", type=_pace, default=10.0, help="times scan pace (default 10: about 10 s)")
    d.add_argument("--text", action="store_true", help="plain text lines instead of the terminal UI (the default "
                                                        "when not on a terminal)")
    d.add_argument("--no-bell", action="store_true", help="no terminal bell when the verdict turns BAD")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("tui", help="the technologist's live view (of a daemon, or of a recorded file)",
                       description="Live QC status at a glance: verdict banner, scan progress, frequency trend, "
                                   "running SNR, spectrum, linewidths, flagged transients, events. Without FILE it "
                                   "follows a daemon's feed (snapshot first; reconnects when the daemon restarts); "
                                   "with FILE it runs the recording in-process through the same engine. Keys: q "
                                   "quit, p pause view, e export report, h history, l follow live, ? help.")
    t.add_argument("path", nargs="?", metavar="FILE", help="review a recorded scan offline (any format `check` reads)")
    t.add_argument("--water", metavar="FILE", help="with FILE: a separate water-reference scan")
    t.add_argument("--config", metavar="FILE", help="with FILE: TOML overriding QC defaults")
    t.add_argument("--speed", default="max", help="with FILE: 1 = scan pace, N = N times faster, max (default)")
    t.add_argument("--feed", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                   help="the daemon's feed (PUB) endpoint (default %(default)s)")
    t.add_argument("--snapshot", default="tcp://127.0.0.1:5557", metavar="ENDPOINT",
                   help="the daemon's snapshot endpoint (default %(default)s)")
    t.add_argument("--heartbeat-timeout", type=_positive, default=3.5, metavar="SECONDS",
                   help="show 'no daemon' and reconnect after this long without a heartbeat, s (default 3.5)")
    t.add_argument("--export-dir", metavar="DIR",
                   help="where e writes reports (default: DATA_DIR/exports, DATA_DIR as for the daemon: "
                        "$MRSQC_DATA_DIR or ~/.local/share/mrsqc)")
    t.add_argument("--text", action="store_true",
                   help="plain text lines instead of the screen (the default when stdin or stdout is not a "
                        "terminal)")
    t.add_argument("--no-bell", action="store_true", help="no terminal bell when the verdict turns BAD")
    t.add_argument("--curve-secret", metavar="FILE", help="this viewer's secret key file, for a CURVE daemon")
    t.add_argument("--server-key", metavar="FILE", help="the daemon's public key file, for a CURVE daemon")
    t.set_defaults(func=cmd_tui)
    return p


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time (ISO 8601, UTC), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime

        out = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if args.log_json else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if args.command == "daemon"
                        else logging.WARNING, handlers=[handler])
    try:
        return args.func(args)
    except InputError as exc:
        print(f"mrsqc: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
