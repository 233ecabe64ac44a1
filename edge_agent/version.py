"""The installed ``flightdeck`` version, read without :mod:`importlib.metadata`.

``importlib.metadata`` drags in ``email``, ``zipfile``, ``csv`` and friends: about 2 MB of RSS
on a gateway, for one string. The version sits in the ``Version:`` header of
``flightdeck-*.dist-info/METADATA`` on ``sys.path``, which is what ``importlib.metadata`` reads
too (first match in ``sys.path`` order).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from functools import cache
from typing import Final

DISTRIBUTION: Final = "flightdeck"
UNKNOWN: Final = "0+unknown"


def version_from(paths: Iterable[str], distribution: str = DISTRIBUTION) -> str | None:
    """The ``Version`` of the first ``{distribution}-*.dist-info`` found under ``paths``."""
    prefix = distribution.lower().replace("-", "_") + "-"
    for entry in paths:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            if not (name.lower().startswith(prefix) and name.endswith(".dist-info")):
                continue
            try:
                with open(os.path.join(entry, name, "METADATA"), encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            break  # end of the headers
                        key, _, value = line.partition(":")
                        if key.strip().lower() == "version":
                            return value.strip()
            except OSError:
                continue
    return None


@cache
def agent_version() -> str:
    """This agent's version, as announced in the birth message (``0+unknown`` if not installed)."""
    return version_from(sys.path) or UNKNOWN
