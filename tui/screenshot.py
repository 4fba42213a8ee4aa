"""Write the README's screenshot: the main screen mid-scan (bundled fixture), as an SVG from Textual.

    python -m tui.screenshot docs/screenshot.svg      (make screenshot)

Deterministic: messages from qc_daemon.session.scan_messages, event times pinned, 120 x 40 cells.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from qc_daemon.demo import FIXTURE
from qc_daemon.session import scan_messages
from qc_daemon.sources.open import open_recording

from .app import QCApp
from .messages import ConnectionChanged, FeedMessages
from .scan_state import CONNECTED

SHOWN_TIME = 1_790_000_000.0


async def _shoot(out: Path, n_messages: int) -> None:
    rec = open_recording(FIXTURE)
    messages = scan_messages(rec.scan, list(rec.transients))[:n_messages]
    app = QCApp(bell=False, clock=lambda: SHOWN_TIME)
    async with app.run_test(size=(120, 40)) as pilot:
        app.post_message(ConnectionChanged(CONNECTED, "tcp://127.0.0.1:5556", reset=True))
        app.post_message(FeedMessages(messages))
        await pilot.pause(0.5)
        app.redraw(force=True)
        await pilot.pause(0.2)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/screenshot.svg")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.environ["TZ"] = "UTC"
    time.tzset()
    asyncio.run(_shoot(out, 60))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
