"""Bodies nested deeper than the parsers can recurse are invalid input (422), not a 500."""

from __future__ import annotations

import pytest
from conftest import Api, assert_problem

DEPTH = 100_000
JSON = b'{"rules": ' + b"[" * DEPTH + b"]" * DEPTH + b"}"
TOML = b"a = " + b"[" * DEPTH + b"]" * DEPTH


@pytest.mark.parametrize(
    ("path", "body", "content_type", "code"),
    [
        ("/api/v1/rules", JSON, "application/json", "invalid-rules"),
        ("/api/v1/rules", TOML, "application/toml", "invalid-rules"),
        ("/api/v1/plans", JSON.replace(b"rules", b"skus"), "application/json", "invalid-plan"),
        ("/api/v1/plans", TOML, "application/toml", "invalid-plan"),
    ],
)
async def test_deeply_nested_bodies_are_refused(
    api: Api, path: str, body: bytes, content_type: str, code: str
) -> None:
    headers = {**api.writer, "Content-Type": content_type}
    response = await api.client.put(path, content=body, headers=headers)
    problem = assert_problem(response, 422, code)
    assert problem["errors"] == [{"field": "(syntax)", "message": "nested too deeply"}]
    assert (await api.client.get(path, headers=api.auth())).status_code == 200
