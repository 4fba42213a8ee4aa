"""The MRD streaming format on a TCP socket (the protocol Siemens FIRE and the python-ismrmrd-server speak):
framing, with every length checked before anything is allocated.

Each message is a 2-byte little-endian id, then: 1 CONFIG_FILE: 1024 bytes (a NUL-terminated name); 2
CONFIG_TEXT, 3 HEADER (the MRD XML), 5 TEXT: a uint32 length and that many bytes (NUL-terminated text); 4
CLOSE: nothing; 1008 ACQUISITION: the 340-byte acquisition header, then number_of_samples x
trajectory_dimensions float32 and active_channels x number_of_samples complex64; 1026 WAVEFORM: the waveform
header (40 bytes as the ``ismrmrd`` package and the reference client pack it; the format description says
240), then channels x number_of_samples uint32 (physiology, which QC skips). Acquisitions are decoded with
the ``ismrmrd`` package's own deserializer, after their header has been checked here: the package would
allocate whatever a header announces (up to 65535 channels x 65535 samples, 34 GB).

A framing error (an unknown id, a length over its limit, a connection closed mid-message) leaves the stream
unreadable from that point: :class:`WireError` says which, and the caller ends the connection.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONFIG_FILE, CONFIG_TEXT, HEADER, CLOSE, TEXT = 1, 2, 3, 4, 5
ACQUISITION, IMAGE, WAVEFORM = 1008, 1022, 1026
NAMES = {CONFIG_FILE: "CONFIG_FILE", CONFIG_TEXT: "CONFIG_TEXT", HEADER: "HEADER", CLOSE: "CLOSE", TEXT: "TEXT",
         ACQUISITION: "ACQUISITION", IMAGE: "IMAGE", WAVEFORM: "WAVEFORM"}

ID = struct.Struct("<H")
LENGTH = struct.Struct("<I")
CONFIG_FILE_BYTES = 1024

#: limits (bytes) of what one message may announce: an MRD XML header is a few 10 kB, a config text a few kB
MAX_TEXT_BYTES = 16 * 1024 * 1024
MAX_CHANNELS = 256  # ScanInfo's coil limit
MAX_TRAJECTORY_DIMENSIONS = 3
MAX_ACQUISITION_BYTES = 64 * 1024 * 1024  # as the daemon's ingest
MAX_WAVEFORM_BYTES = 16 * 1024 * 1024


class WireError(Exception):
    """The stream cannot be read on: ``reason`` is one of truncated, unknown_id, too_large, bad_header."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Message:
    """One decoded message: ``kind`` a NAMES value; ``value`` the text (CONFIG_*, HEADER, TEXT), the
    ismrmrd.Acquisition (ACQUISITION), the waveform's byte count (WAVEFORM), None (CLOSE)."""

    id: int
    value: Any
    nbytes: int

    @property
    def kind(self) -> str:
        return NAMES[self.id]


Read = Callable[[int], bytes]  # read exactly n bytes; fewer only at the end of the stream


def _exactly(read: Read, n: int, what: str) -> bytes:
    data = read(n)
    if len(data) != n:
        raise WireError("truncated", f"the connection ended inside {what} ({len(data)} of {n} bytes)")
    return data


def _text(read: Read, what: str) -> tuple[str, int]:
    (n,) = LENGTH.unpack(_exactly(read, LENGTH.size, f"the length of a {what}"))
    if n > MAX_TEXT_BYTES:
        raise WireError("too_large", f"a {what} of {n} bytes announced (limit {MAX_TEXT_BYTES})")
    raw = _exactly(read, n, f"a {what}")
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace"), n + LENGTH.size


def acquisition_size(head) -> int:
    """Bytes of trajectory and data after an acquisition header; WireError when it is not plausible."""
    if head.active_channels < 1 or head.active_channels > MAX_CHANNELS:
        raise WireError("bad_header", f"acquisition with {head.active_channels} active channels "
                                      f"(1..{MAX_CHANNELS})")
    if head.trajectory_dimensions > MAX_TRAJECTORY_DIMENSIONS:
        raise WireError("bad_header", f"acquisition with {head.trajectory_dimensions} trajectory dimensions")
    n = head.number_of_samples * (head.trajectory_dimensions * 4 + head.active_channels * 8)
    if n > MAX_ACQUISITION_BYTES:
        raise WireError("too_large", f"an acquisition of {n} bytes announced (limit {MAX_ACQUISITION_BYTES})")
    return n


def read_message(read: Read) -> Message | None:
    """The next message, or None when the stream ended cleanly between messages. Raises WireError."""
    first = read(ID.size)
    if not first:
        return None
    if len(first) != ID.size:
        raise WireError("truncated", "the connection ended inside a message id")
    (mid,) = ID.unpack(first)
    if mid == CLOSE:
        return Message(mid, None, ID.size)
    if mid == CONFIG_FILE:
        raw = _exactly(read, CONFIG_FILE_BYTES, "a CONFIG_FILE name")
        return Message(mid, raw.split(b"\0", 1)[0].decode("utf-8", errors="replace"), ID.size + CONFIG_FILE_BYTES)
    if mid in (CONFIG_TEXT, HEADER, TEXT):
        text, n = _text(read, NAMES[mid])
        return Message(mid, text, ID.size + n)
    if mid == ACQUISITION:
        return _acquisition(read)
    if mid == WAVEFORM:
        return _waveform(read)
    raise WireError("unknown_id", f"message id {mid} (this server reads 1-5, 1008 and 1026)")


def _acquisition(read: Read) -> Message:
    import ismrmrd

    size = ctypes.sizeof(ismrmrd.AcquisitionHeader)
    head_bytes = _exactly(read, size, "an acquisition header")
    head = ismrmrd.AcquisitionHeader.from_buffer_copy(head_bytes)
    n = acquisition_size(head)
    parts = iter([head_bytes])

    def feed(k: int) -> bytes:  # the header already read first, then the socket
        part = next(parts, None)
        return part if part is not None else _exactly(read, k, "acquisition data")

    return Message(ACQUISITION, ismrmrd.Acquisition.deserialize_from(feed), ID.size + size + n)


def _waveform(read: Read) -> Message:
    import ismrmrd

    size = ctypes.sizeof(ismrmrd.WaveformHeader)
    head = ismrmrd.WaveformHeader.from_buffer_copy(_exactly(read, size, "a WAVEFORM header"))
    n = int(head.number_of_samples) * int(head.channels) * 4
    if n > MAX_WAVEFORM_BYTES:
        raise WireError("too_large", f"a waveform of {n} bytes announced (limit {MAX_WAVEFORM_BYTES})")
    _exactly(read, n, "a WAVEFORM")
    return Message(WAVEFORM, n, ID.size + size + n)


def encode_text(text: str) -> bytes:
    """A TEXT message (FIRE's log viewer colours lines that begin with DBG, WRN or ERR)."""
    raw = text.encode("utf-8") + b"\0"
    return ID.pack(TEXT) + LENGTH.pack(len(raw)) + raw


def encode_close() -> bytes:
    return ID.pack(CLOSE)


def encode_config_file(name: str) -> bytes:
    raw = name.encode("utf-8")[:CONFIG_FILE_BYTES - 1]
    return ID.pack(CONFIG_FILE) + raw.ljust(CONFIG_FILE_BYTES, b"\0")


def encode_header(xml: str) -> bytes:
    raw = xml.encode("utf-8") + b"\0"
    return ID.pack(HEADER) + LENGTH.pack(len(raw)) + raw


def encode_acquisition(acq) -> bytes:
    return ID.pack(ACQUISITION) + acq.to_bytes()
