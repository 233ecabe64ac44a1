"""Find the line of a TOML file where a key path such as ``lines[1].shifts[0].start`` is written.

``tomllib`` reports line numbers for syntax errors only; for a field that parses but makes no
sense we still want to point at the line. This is a light scan, not a second parser: it follows
``[table]`` and ``[[array.of.tables]]`` headers (counting the array entries the way TOML does)
and ``key = value`` lines, and maps each key path to the first line that writes it. A path it
cannot find (a field inside an inline table) falls back to its nearest enclosing path.
"""

from __future__ import annotations

import re
from typing import Final

_ARRAY_HEADER: Final = re.compile(r"^\s*\[\[\s*([^\[\]]+?)\s*\]\]")
_TABLE_HEADER: Final = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]")
_KEY: Final = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _keys(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in dotted.split(".")]


class LineIndex:
    """Key path -> first line number (1-based) in one TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        counts: dict[str, int] = {}  # resolved array path -> entries seen
        table: list[str] = []  # resolved path of the current table, as segments
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0] if '"' not in raw and "'" not in raw else raw
            if m := _ARRAY_HEADER.match(line):
                table = self._resolve(_keys(m.group(1)), counts, array=True)
                self._lines.setdefault(".".join(table), number)
            elif m := _TABLE_HEADER.match(line):
                table = self._resolve(_keys(m.group(1)), counts, array=False)
                self._lines.setdefault(".".join(table), number)
            elif m := _KEY.match(line):
                path = ".".join([*table, *_keys(m.group(1))])
                self._lines.setdefault(path, number)

    @staticmethod
    def _resolve(names: list[str], counts: dict[str, int], *, array: bool) -> list[str]:
        # Each prefix of a header names the latest entry of an array of tables, if it is one.
        resolved: list[str] = []
        for depth, name in enumerate(names):
            plain = ".".join([*resolved, name])
            last = depth == len(names) - 1
            if last and array:
                index = counts.get(plain, 0)
                counts[plain] = index + 1
                resolved.append(f"{name}[{index}]")
            elif plain in counts:
                resolved.append(f"{name}[{counts[plain] - 1}]")
            else:
                resolved.append(name)
        return resolved

    def line_of(self, path: str) -> int | None:
        """The line writing ``path`` or, failing that, its nearest enclosing path."""
        candidate = path
        while candidate:
            if candidate in self._lines:
                return self._lines[candidate]
            cut = max(candidate.rfind("."), candidate.rfind("["))
            if cut <= 0:
                break
            candidate = candidate[:cut]
        return self._lines.get(candidate)
