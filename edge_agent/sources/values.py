"""Pure helpers shared by the HTTP and CSV sources: pick a field, turn text into a number."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from shared.codec import make_reading
from shared.messages import Quality, Reading

_MISSING: Final = object()


class FieldNotFoundError(LookupError):
    def __init__(self, path: str, at: str) -> None:
        self.path = path
        self.at = at
        super().__init__(f"{path!r}: nothing at {at!r}")


def select(doc: Any, path: str) -> Any:
    """The value at ``path`` in a decoded JSON document.

    ``path`` is a JSON Pointer (``/lines/L3/count``, with ``~1`` for ``/`` and ``~0`` for ``~``)
    or a dotted path (``lines.L3.count``, ``orders.0.qty``); list items are addressed by index.
    """
    if path.startswith("/"):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    else:
        parts = path.split(".")
    node = doc
    for i, part in enumerate(parts):
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            node = node[index] if -len(node) <= index < len(node) else _MISSING
        else:
            node = _MISSING
        if node is _MISSING:
            raise FieldNotFoundError(path, "/".join(parts[: i + 1]))
    return node


def to_number(value: Any, value_map: Mapping[str, float]) -> float | None:
    """A number from a JSON/CSV value: numbers as is, booleans 1/0, text through ``value_map``
    (else parsed as a number); None when it cannot be one."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, str) and value in value_map:
        return value_map[value]
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):  # not a number; an integer beyond any float (400 digits)
        return None
    return number if math.isfinite(number) else None


def reading_from(
    signal: str,
    ts_ms: int,
    value: Any,
    *,
    scale: float,
    offset: float,
    value_map: Mapping[str, float],
) -> Reading:
    """GOOD with the scaled number, or BAD/null when the value is not a number."""
    number = to_number(value, value_map)
    if number is None:
        return make_reading(signal, ts_ms, None, Quality.BAD)
    return make_reading(signal, ts_ms, number * scale + offset, Quality.GOOD)
