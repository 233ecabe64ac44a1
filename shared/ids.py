"""The one identifier rule for sites, gateways, signals, SKUs, locations and lines.

Ids travel into MQTT topics, line-protocol tags, InfluxQL and SQL. An allow-list keeps every
place safe at once: no MQTT wildcard (``+``, ``#``) or level separator (``/``) can reach another
topic tree, no comma, space, ``=`` or quote can break line protocol or InfluxQL, no ``$`` can
address broker-internal topics and no ``%`` can play with ACL pattern substitution.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

ID_MAX_LENGTH: Final = 64
# ``\Z``, not ``$``: ``$`` also matches before a trailing newline.
ID_REGEX: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z"
_ID_RE: Final = re.compile(ID_REGEX)

#: A validated identifier, checked by msgspec while decoding (in C, no Python per-item cost).
Id = Annotated[str, msgspec.Meta(pattern=ID_REGEX)]


class InvalidIdError(ValueError):
    """An identifier that breaks the rule; ``kind`` says which id it was meant to be."""

    def __init__(self, kind: str, value: object) -> None:
        self.kind = kind
        self.value = value
        super().__init__(
            f"invalid {kind} id {value!r}: ids are 1-{ID_MAX_LENGTH} characters of "
            "A-Z a-z 0-9 _ . : - starting with a letter or digit"
        )


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID_RE.match(value) is not None


def check_id(value: object, kind: str = "identifier") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidIdError`."""
    if not is_valid_id(value):
        raise InvalidIdError(kind, value)
    assert isinstance(value, str)
    return value
