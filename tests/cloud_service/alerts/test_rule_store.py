"""Alert rules in the metadata store (SQLite and PostgreSQL): seeded once from TOML, replaced
whole with a history row, validated again when loaded; and the ``cloud-service rules``
commands."""

from __future__ import annotations

import asyncio
import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from cloud_service import cli
from cloud_service.alerts.errors import RuleError
from cloud_service.alerts.explain import METRICS
from cloud_service.alerts.records import RuleType
from cloud_service.alerts.rule_store import SqlRuleStore, rule_to_data, rules_to_toml
from cloud_service.alerts.rules import DEFAULT_RULES, Condition, Rule, load_rules, parse_rules
from cloud_service.metadata import MetadataStore
from cloud_service.metadata.schema import alert_rule_changes, alert_rules
from cloud_service.settings import MetadataSettings, load_settings
from shared.messages import Severity

NOW = 1_790_000_000_000

ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_letters + string.digits),
    st.text(alphabet=string.ascii_letters + string.digits + "_.:-", max_size=20),
)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@st.composite
def rules(draw: st.DrawFn, rule_id: str) -> Rule:
    kind = draw(st.sampled_from(list(RuleType)))
    when = draw(
        st.lists(
            st.builds(
                Condition,
                metric=st.sampled_from(sorted(METRICS[kind])),
                op=st.sampled_from(["<", "<=", ">", ">="]),
                value=finite,
                deadband=st.floats(min_value=0, max_value=1e6),
            ),
            max_size=3,
        )
    )
    return Rule.model_validate(
        {
            "id": rule_id,
            "type": kind,
            "severity": draw(st.sampled_from(list(Severity))),
            "match": draw(st.sampled_from(["any", "all"])),
            "for": draw(st.floats(min_value=0, max_value=366 * 86_400)),
            "clear_for": draw(st.integers(min_value=0, max_value=86_400)),
            "when": when,
            "scope": {
                "sites": draw(st.frozensets(ids, max_size=3)),
                "skus": draw(st.frozensets(ids, max_size=3)),
            },
            "ack_required": draw(st.booleans()),
            "enabled": draw(st.booleans()),
            "description": draw(st.text(st.characters(exclude_categories=["Cs"]), max_size=40)),
        }
    )


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    return [draw(rules(i)) for i in draw(st.lists(ids, max_size=5, unique=True))]


def store(metadata: MetadataStore, now: list[int] | None = None) -> SqlRuleStore:
    times = now if now is not None else [NOW]
    return SqlRuleStore(metadata.engine, clock=lambda: times[0])


def rule(rule_id: str, **fields: object) -> Rule:
    return Rule.model_validate({"id": rule_id, "type": "sensor_stuck", **fields})


# -- first start ------------------------------------------------------------------------------


async def test_seed_stores_the_file_once(metadata: MetadataStore) -> None:
    rules_store = store(metadata)
    assert await rules_store.load() == []
    defaults = load_rules()
    assert await rules_store.seed_if_empty(defaults) == defaults
    assert await rules_store.load() == defaults
    other = [rule("only-one")]
    assert await rules_store.seed_if_empty(other) == defaults  # stored already: untouched
    (change,) = await rules_store.history()
    assert (change.actor, change.at_ms, change.before) == ("seed", NOW, [])
    assert change.added == [r.id for r in defaults]
    assert change.after == [rule_to_data(r) for r in defaults]


async def test_rules_an_operator_deleted_are_not_seeded_again(metadata: MetadataStore) -> None:
    rules_store = store(metadata)
    assert await rules_store.seed_if_empty([]) == []  # an empty file: nothing, not "seeded"
    assert await rules_store.history() == []
    await rules_store.seed_if_empty([rule("a")])
    await rules_store.replace([], actor="api:ops")
    assert await rules_store.seed_if_empty(load_rules()) == []
    assert [c.actor for c in await rules_store.history()] == ["api:ops", "seed"]


async def test_two_workers_seeding_together_store_one_set(
    metadata: MetadataStore, metadata_url: str
) -> None:
    other = MetadataStore.from_settings(MetadataSettings(url=metadata_url))  # type: ignore[arg-type]
    try:
        first, second = [rule("a"), rule("b")], [rule("b", severity="critical"), rule("c")]
        got = await asyncio.gather(
            store(metadata).seed_if_empty(first), SqlRuleStore(other.engine).seed_if_empty(second)
        )
    finally:
        await other.aclose()
    assert got[0] == got[1]
    assert got[0] in (first, second)
    assert await store(metadata).load() == got[0]
    assert len(await store(metadata).history()) == 1


# -- changes ----------------------------------------------------------------------------------


@given(before=rule_sets(), after=rule_sets())
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
async def test_replace_then_load_round_trips(
    metadata: MetadataStore, before: list[Rule], after: list[Rule]
) -> None:
    rules_store = store(metadata)
    await rules_store.replace(before, actor="t")
    assert await rules_store.load() == before
    await rules_store.replace(after, actor="t")
    assert await rules_store.load() == after
    change = (await rules_store.history(limit=1))[0]
    assert change.before == [rule_to_data(r) for r in before]
    assert change.after == [rule_to_data(r) for r in after]


@given(rule_sets())
@settings(max_examples=50, deadline=None)
def test_the_toml_export_reads_back_the_same(rules_: list[Rule]) -> None:
    assert parse_rules(rules_to_toml(rules_)) == rules_


async def test_each_change_is_recorded_with_who_when_and_what(metadata: MetadataStore) -> None:
    now = [NOW]
    rules_store = store(metadata, now)
    await rules_store.replace([rule("a"), rule("b"), rule("c")], actor="cli")
    now[0] += 60_000
    await rules_store.replace(
        [rule("c"), rule("b", severity="critical"), rule("d"), rule("a")], actor="api:ops"
    )
    latest, first = await rules_store.history()
    assert (latest.actor, latest.at_ms, first.actor, first.at_ms) == (
        "api:ops", NOW + 60_000, "cli", NOW,
    )  # fmt: skip
    assert (latest.added, latest.removed, latest.changed) == (["d"], [], ["b"])
    assert latest.reordered
    assert not first.reordered
    assert [r["id"] for r in latest.before] == ["a", "b", "c"]
    body = latest.as_json()
    assert body["at"] == "2026-09-21T14:14:20.000+00:00"
    assert body["after"][1]["severity"] == "critical"
    async with metadata.engine.connect() as conn:
        rows = {r.id: (r.position, r.updated_ms, r.updated_by)
                for r in await conn.execute(select(alert_rules))}  # fmt: skip
    # A rule only moved keeps who changed it last; a changed or new one gets this change.
    assert rows == {"c": (0, NOW, "cli"), "b": (1, NOW + 60_000, "api:ops"),
                    "d": (2, NOW + 60_000, "api:ops"), "a": (3, NOW, "cli")}  # fmt: skip
    assert [c.id for c in await rules_store.history(limit=1)] == [latest.id]


async def test_duplicate_ids_are_refused_and_nothing_changes(metadata: MetadataStore) -> None:
    rules_store = store(metadata)
    await rules_store.replace([rule("a")], actor="t")
    with pytest.raises(RuleError) as info:
        await rules_store.replace([rule("b"), rule("b", severity="info")], actor="t")
    assert info.value.problems == [("rules.1.id", "duplicate rule id 'b'")]
    assert await rules_store.load() == [rule("a")]
    assert len(await rules_store.history()) == 1


async def test_a_corrupted_row_is_a_rule_error_by_field(metadata: MetadataStore) -> None:
    rules_store = store(metadata)
    await rules_store.replace([rule("a"), rule("b")], actor="t")

    async def corrupt(rule_id: str, body: str) -> None:
        async with metadata.engine.begin() as conn:
            await conn.execute(
                update(alert_rules).where(alert_rules.c.id == rule_id).values(body=body)
            )

    bad = rule_to_data(rule("b")) | {"severity": "urgent", "when": [{"metric": "x"}]}
    await corrupt("b", json.dumps(bad))
    with pytest.raises(RuleError) as info:
        await rules_store.load()
    assert info.value.source == "metadata store"
    assert [f for f, _ in info.value.problems] == [
        "rules.1.severity", "rules.1.when.0.op", "rules.1.when.0.value",
    ]  # fmt: skip
    await corrupt("b", "{not json")
    with pytest.raises(RuleError, match=r"rules\.1: row 'b': not JSON"):
        await rules_store.load()
    await corrupt("b", json.dumps(rule_to_data(rule("a"))))
    with pytest.raises(RuleError) as info:
        await rules_store.load()
    assert info.value.problems[0][0] in ("rules.1.id", "rules.0.id")


async def test_history_keeps_the_bodies_as_stored(metadata: MetadataStore) -> None:
    rules_store = store(metadata)
    await rules_store.replace([rule("a", scope={"sites": ["s2", "s1"]})], actor="t")
    async with metadata.engine.connect() as conn:
        after = (await conn.execute(select(alert_rule_changes.c.after))).scalar_one()
    assert json.loads(after)[0]["scope"]["sites"] == ["s1", "s2"]  # sorted: stable diffs


# -- cloud-service rules ----------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _load(config: Path) -> tuple[list[Rule], list[str]]:
    metadata = MetadataStore.from_settings(load_settings(config).metadata)
    try:
        rules_store = SqlRuleStore(metadata.engine)
        return await rules_store.load(), [c.actor for c in await rules_store.history()]
    finally:
        await metadata.aclose()


def test_rules_commands(
    metadata_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text(f'[metadata]\nurl = "{metadata_url}"\n')
    code, out, _ = run(capsys, "rules", "export", "--config", str(config))
    assert (code, parse_rules(out)) == (0, [])
    code, out, _ = run(capsys, "rules", "import", str(DEFAULT_RULES), "--config", str(config))
    assert code == 0
    assert f"imported {len(load_rules())} alert rules" in out
    assert asyncio.run(_load(config)) == (load_rules(), ["cli"])
    code, exported, _ = run(capsys, "rules", "export", "--config", str(config))
    assert code == 0
    assert parse_rules(exported) == load_rules()
    edited = tmp_path / "rules.toml"
    edited.write_text(exported.replace('severity = "critical"', 'severity = "info"', 1))
    code, out, _ = run(capsys, "rules", "check", str(edited))
    assert (code, out) == (0, f"{edited}: {len(load_rules())} alert rules, all valid\n")
    assert run(capsys, "rules", "import", str(edited), "--config", str(config))[0] == 0
    rules_, actors = asyncio.run(_load(config))
    assert rules_[0].severity == Severity.INFO
    assert actors == ["cli", "cli"]


def test_invalid_rule_files_are_reported_by_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rules]]\nid = "a"\ntype = "no_data"\nseverity = "urgent"\nfor = "soon"\n'
        '\n[[rules]]\nid = "a"\ntype = "sensor_stuck"\n'
    )
    code, out, err = run(capsys, "rules", "check", str(bad))
    assert (code, out) == (2, "")
    assert "  rules.0.severity: " in err
    assert "  rules.0.for: " in err
    config = tmp_path / "cloud.toml"  # never written: the file is checked before the store
    code, _, err = run(capsys, "rules", "import", str(bad), "--config", str(config))
    assert code == 2
    assert "rules.0.severity" in err
    bad.write_text('[[rules]]\nid = "a"\ntype = "sensor_stuck"\n\n[[rules]]\nid = "a"\n'
                   'type = "no_data"\n')  # fmt: skip
    code, _, err = run(capsys, "rules", "check", str(bad))
    assert code == 2
    assert "rules.1.id: duplicate rule id 'a'" in err
    code, _, err = run(capsys, "rules", "check", str(tmp_path / "missing.toml"))
    assert code == 2
    assert "(file)" in err
