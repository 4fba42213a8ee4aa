"""Issue 15 (the architecture redesign: check contract, typed feed, registration split, sources -> session
-> sinks): per-transient time against the last commit before it, alternating passes in one run (target
<= 1.1x). Writes a Markdown section to stdout (bench/run_all.py puts it in RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from freq_phase import time_ratio  # noqa: E402

BEFORE = "6286510"  # the last commit before the redesign


def main() -> str:
    line = time_ratio(rounds=80, baseline=BEFORE, what="before the redesign", target=1.1)
    control = time_ratio(rounds=80, baseline="HEAD", what="this commit against itself: the noise floor",
                         target=1.1)
    return ("## Architecture (issue 15): the same numbers, the same speed\n\n"
            "Outputs of `mrsqc check` are identical value by value to those of " + BEFORE + " on both fixtures, "
            "three simulated scans (64 averages x 8 coils, MEGA, 128 x 32 coils) and every real file in "
            "`../shared/data/real/` (compared in the session that made the change).\n\n- " + line + "\n- control: "
            + control + "\n")


if __name__ == "__main__":
    print(main())
