"""Write one benchmark's section into bench/RESULTS.md, replacing that section of an earlier run (the sections
after it are kept), so a benchmark can be re-run alone."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, text: str) -> None:
    """``heading``: the section's '## ...' line as the text starts it (matched by its start)."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    at = old.find("\n" + heading)
    if at >= 0:
        nxt = old.find("\n## ", at + 1)
        old = old[:at] + (old[nxt:] if nxt >= 0 else "")
    RESULTS.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")
