"""A text progress bar for long runs (the backfill), with no dependency.

On a terminal it redraws one line in place; into a file or pipe it writes a line per 10 %,
so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import IO


class ProgressBar:
    def __init__(self, label: str, *, out: IO[str] | None = None, width: int = 30) -> None:
        self.label = label
        self.out = out if out is not None else sys.stderr
        self.width = width
        self._tty = self.out.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def __call__(self, done: int, total: int, points: int) -> None:
        fraction = min(1.0, done / total) if total > 0 else 1.0
        now = time.monotonic()
        decile = int(fraction * 10)
        if self._tty:
            if now - self._last_draw < 0.1 and fraction < 1.0:
                return
        elif decile == self._last_decile:
            return
        self._last_draw, self._last_decile = now, decile
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = now - self._started
        line = f"{self.label} [{bar}] {fraction:6.1%}  {points:,} points  {elapsed:5.1f} s"
        if self._tty:
            self.out.write("\r" + line + ("\n" if fraction >= 1.0 else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()
