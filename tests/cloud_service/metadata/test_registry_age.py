"""The registry keeps the newest state and birth of a gateway, whatever order the writes
reach it in (two writes in flight, several workers): on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import msgspec

from cloud_service.ingest.records import BirthRecord, StateRecord
from cloud_service.metadata import MetadataStore
from shared.messages import Birth, GatewayState, SignalKind, SignalSpec, State

NOW = 1_790_000_000_000
ONLINE, OFFLINE = GatewayState.ONLINE, GatewayState.OFFLINE


def state(kind: GatewayState, boot: str, ts: int) -> StateRecord:
    return StateRecord("site-1", "gw-1", State(state=kind, boot=boot, ts=ts), ts + 3)


def birth(boot: str, started_ms: int, signals: list[str], received_ms: int) -> BirthRecord:
    b = Birth(
        gateway="gw-1", site="site-1", boot=boot, agent_version=f"v-{boot}", config_hash="h",
        started_ms=started_ms,
        signals=[SignalSpec(id=s, kind=SignalKind.STOCK_LEVEL) for s in signals],
    )  # fmt: skip
    return BirthRecord("site-1", b, received_ms)


async def row(metadata: MetadataStore) -> tuple[object, ...]:
    (gw,) = await metadata.registry.gateways()
    return gw["boot"], gw["state"], gw["state_ms"]


async def test_an_older_state_recorded_late_does_not_overwrite_a_newer_one(
    metadata: MetadataStore,
) -> None:
    reg = metadata.registry
    await reg.record([birth("b2", NOW + 4000, ["s1"], NOW + 4000)], [])
    await reg.record([], [state(ONLINE, "b2", NOW + 5000)])
    await reg.record([], [state(OFFLINE, "b1", NOW)])  # the previous boot's, late
    assert await row(metadata) == ("b2", "online", NOW + 5000)
    await reg.record([], [state(ONLINE, "b2", NOW + 5000)])  # a redelivery: harmless
    assert await row(metadata) == ("b2", "online", NOW + 5000)
    await reg.record([], [state(OFFLINE, "b2", NOW + 9000)])  # newer: applies
    assert await row(metadata) == ("b2", "offline", NOW + 9000)
    await reg.record([], [state(ONLINE, "b2", NOW + 5000)])  # older: refused
    assert await row(metadata) == ("b2", "offline", NOW + 9000)


async def test_states_without_a_row_or_a_time_yet_apply(metadata: MetadataStore) -> None:
    reg = metadata.registry
    await reg.record([], [state(OFFLINE, "b1", NOW)])
    assert await row(metadata) == (None, "offline", NOW)
    await reg.record([], [state(ONLINE, "b1", NOW + 1)])
    assert await row(metadata) == (None, "online", NOW + 1)


async def test_the_will_of_the_recorded_boot_overrides_its_online(
    metadata: MetadataStore,
) -> None:
    """The will is stamped when the gateway connects, before the *online* it follows: it must
    still win over the *online* of its own boot (but not over another boot's)."""
    reg = metadata.registry
    await reg.record([birth("b1", NOW, ["s1"], NOW + 10)], [state(ONLINE, "b1", NOW + 20)])
    await reg.record([], [state(OFFLINE, "b1", NOW + 15)])  # the will, set at connect
    assert await row(metadata) == ("b1", "offline", NOW + 15)
    await reg.record([], [state(ONLINE, "b1", NOW + 30)])  # a reconnect
    await reg.record([], [state(OFFLINE, "b0", NOW + 25)])  # an older boot's will: refused
    assert await row(metadata) == ("b1", "online", NOW + 30)


async def test_an_older_birth_recorded_late_changes_nothing(metadata: MetadataStore) -> None:
    reg = metadata.registry
    await reg.record([birth("b2", NOW + 100, ["s1", "s3"], NOW + 101)], [])
    await reg.record([birth("b1", NOW, ["s1", "s2"], NOW + 1)], [])  # the previous boot's
    (gw,) = await reg.gateways()
    assert (gw["boot"], gw["agent_version"], gw["started_ms"], gw["birth_ms"]) == (
        "b2", "v-b2", NOW + 100, NOW + 101,
    )  # fmt: skip
    signals = {s["signal"]: s["active"] for s in await reg.signals("site-1", "gw-1")}
    assert signals == {"s1": True, "s3": True}  # its catalog was not applied either
    (loaded,) = await reg.load_births()
    assert (loaded.birth.boot, [s.id for s in loaded.birth.signals]) == ("b2", ["s1", "s3"])


async def test_a_newer_birth_of_the_same_boot_applies(metadata: MetadataStore) -> None:
    """A re-birth of a boot (reconnect, config reload) is ordered by its receive time."""
    reg = metadata.registry
    await reg.record([birth("b1", NOW, ["s1"], NOW + 10)], [])
    await reg.record([birth("b1", NOW, ["s1", "s2"], NOW + 20)], [])
    await reg.record([birth("b1", NOW, ["s9"], NOW + 15)], [])  # received before the last
    signals = {s["signal"]: s["active"] for s in await reg.signals("site-1", "gw-1")}
    assert signals == {"s1": True, "s2": True}
    await reg.record([birth("b2", NOW + 50, ["s2"], NOW + 60)], [])  # a new boot
    signals = {s["signal"]: s["active"] for s in await reg.signals("site-1", "gw-1")}
    assert signals == {"s1": False, "s2": True}


async def test_a_new_boot_whose_clock_restarted_behind_takes_over(
    metadata: MetadataStore,
) -> None:
    """A gateway without a real-time clock boots an hour behind its last boot (before NTP):
    its birth and states apply by arrival, and the last boot's late will does not."""
    reg = metadata.registry
    await reg.record([birth("b1", NOW, ["s1"], NOW)], [state(ONLINE, "b1", NOW)])
    await reg.record([], [state(OFFLINE, "b1", NOW + 10)])
    behind = NOW - 3_600_000
    await reg.record(
        [birth("b2", behind, ["s1", "s2"], NOW + 60_000)], [state(ONLINE, "b2", behind + 10)]
    )
    assert await row(metadata) == ("b2", "online", behind + 10)
    (loaded,) = await reg.load_births()
    assert (loaded.birth.boot, [s.id for s in loaded.birth.signals]) == ("b2", ["s1", "s2"])
    await reg.record([], [state(OFFLINE, "b1", NOW + 20)])  # b1's will, late: not b2's
    assert await row(metadata) == ("b2", "online", behind + 10)
    await reg.record([], [state(OFFLINE, "b2", behind + 5)])  # b2's own will: applies
    assert await row(metadata) == ("b2", "offline", behind + 5)


async def test_drop_counts_summing_past_int64_are_capped_not_a_crash(
    metadata: MetadataStore,
) -> None:
    # each count fits the contract's int64; their sum overflowed the column and the retained
    # birth crashed ingest on every restart
    rec = birth("b1", NOW, ["s1"], NOW)
    b = msgspec.structs.replace(rec.birth, dropped={"s1": 2**63 - 1, "s2": 5})
    await metadata.registry.record([BirthRecord("site-1", b, NOW)], [])
    (gw,) = await metadata.registry.gateways()
    assert gw["dropped"] == 2**63 - 1
