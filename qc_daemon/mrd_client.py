"""``mrsqc replay FILE --mrd HOST:PORT``: stream a recording to an MRD server as a scanner does, paced by the
acquisition times (the reference client sends everything back to back), and collect the TEXT lines the server
sends back. Messages: CONFIG_FILE ``mrsqc``, the MRD XML header (sources.mrd.header_xml: no subject fields),
one ACQUISITION per transient (laid out as ``mrsqc to-mrd`` writes them), CLOSE; then it waits for the
server's CLOSE."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import mrd_wire
from .model import Transient
from .sources.mrd import acquisition_of, header_xml
from .sources.recording import Recording, paced


@dataclass
class MrdReplay:
    """What the server sent back: its TEXT lines in order, and whether it answered CLOSE."""

    sent: int = 0
    lines: list[str] = field(default_factory=list)
    closed_by_server: bool = False
    error: str | None = None


def _receive(sock: socket.socket, out: MrdReplay) -> None:
    def read(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    try:
        while True:
            msg = mrd_wire.read_message(read)
            if msg is None:
                return
            if msg.id == mrd_wire.TEXT:
                out.lines.append(msg.value)
            elif msg.id == mrd_wire.CLOSE:
                out.closed_by_server = True
                return
    except (mrd_wire.WireError, OSError) as exc:
        out.error = str(exc)


def replay_mrd(rec: Recording, host: str, port: int, speed: float | None,
               on_sent: Callable[[Transient, int], None] | None = None, timeout_s: float = 60.0) -> MrdReplay:
    """Send ``rec`` to the MRD server at ``host:port``; returns once the server closed the connection (or after
    ``timeout_s`` without its CLOSE)."""
    out = MrdReplay()
    transients = list(rec.transients)
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(None)
        receiver = threading.Thread(target=_receive, args=(sock, out), daemon=True)
        receiver.start()
        sock.sendall(mrd_wire.encode_config_file("mrsqc"))
        sock.sendall(mrd_wire.encode_header(header_xml(rec.scan)))
        for i, t in enumerate(paced(transients, speed)):
            sock.sendall(mrd_wire.encode_acquisition(acquisition_of(t, i, rec.scan, last=i == len(transients) - 1)))
            out.sent += 1
            if on_sent:
                on_sent(t, len(transients))
        sock.sendall(mrd_wire.encode_close())
        receiver.join(timeout_s)
    return out
