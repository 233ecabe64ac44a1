"""API keys in the metadata store (SQLite and PostgreSQL), and the ``api-key`` and ``plans``
commands of ``cloud-service`` on a temporary SQLite configuration."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud_service import cli
from cloud_service.api import ApiKeyError, ApiKeyExistsError, Scope, SqlApiKeyStore
from cloud_service.api.errors import UnknownApiKeyError
from cloud_service.api.keys import TOUCH_EVERY_MS, token_hash
from cloud_service.metadata import MetadataStore
from cloud_service.metadata.schema import api_keys
from cloud_service.plans.codec import parse_plan_json
from cloud_service.settings import load_settings

TOKEN = re.compile(r"fd_[A-Za-z0-9_-]{43}")


async def test_keys_are_created_verified_listed_and_revoked(metadata: MetadataStore) -> None:
    clock = [1000]
    keys = SqlApiKeyStore(metadata.engine, clock=lambda: clock[0])
    key, token = await keys.create("dashboard")
    assert TOKEN.fullmatch(token)
    assert (key.name, key.scope, key.created_ms) == ("dashboard", Scope.READ, 1000)
    assert key.active
    async with metadata.engine.connect() as conn:
        (row,) = (await conn.execute(select(api_keys))).all()
    assert row.token_hash == token_hash(token)
    assert token not in repr(tuple(row))  # only the hash is stored

    clock[0] = 2000
    assert await keys.verify(token) == key  # as it was before this use
    assert (await keys.list())[0].last_used_ms == 2000
    clock[0] = 2000 + TOUCH_EVERY_MS - 1
    await keys.verify(token)
    assert (await keys.list())[0].last_used_ms == 2000  # not one write per request
    assert await keys.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert await keys.verify("not-a-token") is None

    clock[0] = 5000
    revoked = await keys.revoke("dashboard")
    assert revoked.revoked_ms == 5000
    assert await keys.verify(token) is None
    clock[0] = 6000
    assert (await keys.revoke("dashboard")).revoked_ms == 5000  # idempotent
    with pytest.raises(UnknownApiKeyError):
        await keys.revoke("nobody")


async def test_names_are_unique_among_active_keys(metadata: MetadataStore) -> None:
    keys = SqlApiKeyStore(metadata.engine)
    _, first = await keys.create("ci", Scope.ADMIN)
    with pytest.raises(ApiKeyExistsError) as info:
        await keys.create("ci")
    assert info.value.name == "ci"
    await keys.revoke("ci")
    again, second = await keys.create("ci")  # a revoked name may be used again
    assert again.scope == Scope.READ
    assert await keys.verify(first) is None
    assert await keys.verify(second) == again
    with pytest.raises(ApiKeyError):
        await keys.create("two words")
    assert [k.name for k in await keys.list()] == ["ci"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.toml"
    db = tmp_path / "meta.sqlite"
    path.write_text(f'[metadata]\nurl = "sqlite+aiosqlite:///{db}"\nsqlite_synchronous = "NORMAL"')
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _verify(config: Path, token: str) -> str | None:
    store = MetadataStore.from_settings(load_settings(config).metadata)
    try:
        key = await SqlApiKeyStore(store.engine).verify(token)
        return None if key is None else f"{key.name}:{key.scope.value}"
    finally:
        await store.aclose()


def test_api_key_commands(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "api-key", "create", "ops", "--scope", "admin", "--config",
                         str(config))  # fmt: skip
    assert code == 0
    token = out.strip()
    assert TOKEN.fullmatch(token)
    assert "shown only once" in err
    assert asyncio.run(_verify(config, token)) == "ops:admin"
    assert run(capsys, "api-key", "create", "ops", "--config", str(config))[0] == 1
    code, out, _ = run(capsys, "api-key", "list", "--config", str(config))
    assert code == 0
    assert re.match(r"ops\s+admin\s+sites \*\s+created \S+\s+last used \S+\s+active$", out.strip())
    assert token not in out
    code, out, _ = run(capsys, "api-key", "revoke", "ops", "--config", str(config))
    assert code == 0
    assert "revoked" in out
    assert asyncio.run(_verify(config, token)) is None
    code, _, err = run(capsys, "api-key", "revoke", "ghost", "--config", str(config))
    assert code == 1
    assert "ghost" in err


def test_api_key_scopes_and_sites_on_the_command_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ("--config", str(config))
    code, out, err = run(capsys, "api-key", "create", "p1-ops", "--scope", "ack",
                         "--site", "plant-1", "--site", "plant-3", *cfg)  # fmt: skip
    assert code == 0
    assert "plant-1, plant-3" in err
    assert asyncio.run(_verify(config, out.strip())) == "p1-ops:ack"
    code, out, _ = run(capsys, "api-key", "list", *cfg)
    assert re.match(r"p1-ops\s+ack\s+sites plant-1,plant-3\s+created ", out.strip())
    code, _, err = run(capsys, "api-key", "create", "boss", "--scope", "admin",
                       "--site", "plant-1", *cfg)  # fmt: skip
    assert code == 1
    assert "every site" in err
    with pytest.raises(SystemExit):  # argparse: not a scope any more
        cli.main(["api-key", "create", "old", "--scope", "write", *cfg])
    assert "invalid choice: 'write'" in capsys.readouterr().err


def test_plans_commands(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[skus]]\nsite = "p1"\nsku = "A"\nlead_time_h = 4\n\n'
        '[[demand]]\nsite = "p1"\nsku = "A"\nstart = "2025-06-02"\nend = "2025-06-03"\n'
        "quantity = 24\n"
    )
    code, out, _ = run(capsys, "plans", "import", str(plan), "--config", str(config))
    assert code == 0
    assert "1 SKU policies" in out
    code, out, _ = run(capsys, "plans", "export", "--format", "json", "--config", str(config))
    assert code == 0
    book = parse_plan_json(out)
    assert book.policy("p1", "A") is not None
    assert book.demand[0].quantity == 24
    code, toml_out, _ = run(capsys, "plans", "export", "--config", str(config))
    assert "[[demand]]" in toml_out
    plan.write_text('[[skus]]\nsite = "p1"\n')
    code, _, err = run(capsys, "plans", "import", str(plan), "--config", str(config))
    assert code == 2
    assert "skus[0].sku: required" in err
