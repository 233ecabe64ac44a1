"""Field types shared by the configuration models (ids, text, ports, the frozen base model).

Split out of :mod:`edge_agent.config` so the source, signal and runtime sections can live in
small modules of their own without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from shared.ids import ID_MAX_LENGTH, is_valid_id

ID_RULE: Final = (
    f"ids are 1-{ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ . : - starting with a letter or "
    "digit (no '/', '+', '#', spaces)"
)


def check_id_field(value: str) -> str:
    if not is_valid_id(value):
        raise PydanticCustomError("invalid_id", "{detail}", {"detail": f"{value!r}: {ID_RULE}"})
    return value


#: An identifier under the shared rule (:mod:`shared.ids`): safe in topics, tags and queries.
IdStr = Annotated[str, AfterValidator(check_id_field)]
#: Printable text without control characters, as the wire contract's ``Text``.
Text = Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Model(BaseModel):
    """Frozen, and unknown keys are errors (a typo must not silently become a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def bounds_error(what: str) -> PydanticCustomError:
    return PydanticCustomError("bounds", "{detail}", {"detail": what})
