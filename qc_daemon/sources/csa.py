"""Parser for Siemens CSA headers (private DICOM elements), CSA1 and CSA2 ("SV10").

Layout (nibabel / spec2nii documentation): [CSA2: b"SV10" + 4 bytes] uint32 n_tags, uint32 unused; then per tag:
name (64 bytes, NUL-terminated), int32 vm, char[4] vr, int32 syngodt, int32 n_items, int32 marker;
then n_items items of 4 x int32 (the second is the value length) followed by the value padded to 4 bytes.
Every length is bounds-checked: corrupt input raises ValueError, never reads past the buffer.
"""

from __future__ import annotations

import struct

MAX_TAGS = 4096
MAX_ITEMS = 4096


def parse_csa(buf: bytes) -> dict[str, list[str]]:
    """Tag name -> list of item strings (NUL-stripped). Raises ValueError for malformed data."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise ValueError("CSA header is not bytes")
    buf = bytes(buf)
    pos = 8 if buf[:4] == b"SV10" else 0
    if len(buf) < pos + 8:
        raise ValueError("CSA header too short")
    n_tags, _ = struct.unpack_from("<2I", buf, pos)
    if not 0 < n_tags <= MAX_TAGS:
        raise ValueError(f"CSA header claims {n_tags} tags")
    pos += 8
    csa2 = buf[:4] == b"SV10"
    out: dict[str, list[str]] = {}
    for _ in range(n_tags):
        if pos + 84 > len(buf):
            raise ValueError("CSA header truncated in a tag")
        name = buf[pos:pos + 64].split(b"\0", 1)[0].decode("latin-1")
        n_items = struct.unpack_from("<i", buf, pos + 76)[0]
        pos += 84
        if not 0 <= n_items <= MAX_ITEMS:
            raise ValueError(f"CSA tag {name!r} claims {n_items} items")
        values = []
        for _ in range(n_items):
            if pos + 16 > len(buf):
                raise ValueError("CSA header truncated in an item")
            lens = struct.unpack_from("<4i", buf, pos)
            item_len = lens[1]
            pos += 16
            if item_len < 0 or pos + item_len > len(buf):
                raise ValueError(f"CSA item of tag {name!r} overruns the header")
            values.append(buf[pos:pos + item_len].split(b"\0", 1)[0].decode("latin-1").strip())
            pos += (item_len + 3) // 4 * 4 if csa2 else item_len
        out[name] = [v for v in values if v != ""]
    return out


def csa_float(tags: dict[str, list[str]], name: str) -> float | None:
    """First value of tag ``name`` as a float, or None."""
    vals = tags.get(name) or []
    try:
        return float(vals[0]) if vals else None
    except ValueError:
        return None
