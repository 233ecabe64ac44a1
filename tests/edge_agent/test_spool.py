"""The spool: pure policy, and the real SQLite store (durability, drops, corruption, lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from edge_agent.config import DropPolicy
from edge_agent.errors import SpoolCorruptError, SpoolLockedError
from edge_agent.spool.files import quarantine
from edge_agent.spool.policy import BatchSize, DropLedger, DropReason, SpoolLimits, plan_size_drops
from edge_agent.spool.store import SpoolStore, batch_key
from shared.messages import Reading

T0 = 1_750_000_000_000
encode = msgspec.json.Encoder().encode


def readings(n: int, signals: tuple[str, ...] = ("a", "b"), start: int = 0) -> list[Reading]:
    return [Reading(signals[i % len(signals)], T0 + start + i, float(i)) for i in range(n)]


def put(store: SpoolStore, ordinal: int, seq: int, rs: list[Reading], **kw: object) -> None:
    args: dict[str, object] = {
        "closed": True,
        "historical": False,
        "clock_step_ms": 0,
        "created_ms": T0 + seq,
    }
    args.update(kw)
    store.put_batch(ordinal, seq, encode(rs), len(rs), **args)  # type: ignore[arg-type]


# -- pure policy ----------------------------------------------------------------------------


def test_limits() -> None:
    oldest = SpoolLimits(max_bytes=100, max_age_ms=1000)
    assert oldest.admits(100, 50)  # drop-oldest always admits: the old go instead
    assert oldest.excess_bytes(150) == 50
    assert oldest.excess_bytes(90) == 0
    newest = SpoolLimits(100, 1000, DropPolicy.DROP_NEWEST)
    assert newest.admits(60, 40)
    assert not newest.admits(61, 40)
    assert newest.excess_bytes(1000) == 0  # keeps the old, refuses the new
    assert oldest.expiry_cutoff_ms(5000) == 4000


def test_plan_size_drops_takes_the_oldest_until_enough() -> None:
    sizes = [BatchSize(k, 10) for k in range(5)]
    assert plan_size_drops(0, sizes) == []
    assert plan_size_drops(10, sizes) == [0]
    assert plan_size_drops(11, sizes) == [0, 1]
    assert plan_size_drops(1000, sizes) == [0, 1, 2, 3, 4]


def test_ledger_counts_per_signal_and_reason() -> None:
    ledger = DropLedger()
    ledger.add(readings(5), DropReason.SPOOL_FULL)
    ledger.add(readings(1), DropReason.EXPIRED)
    ledger.add_unattributed(DropReason.SPOOL_CORRUPT, 7)
    assert ledger.per_signal() == {"a": 4, "b": 2}
    assert ledger.per_reason() == {"spool_full": 5, "expired": 1, "spool_corrupt": 7}
    assert ledger.total() == 13


# -- the SQLite store -----------------------------------------------------------------------


def test_batches_round_trip_and_totals(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path / "spool.db")
    ordinal = store.begin_boot("boot-1", T0)
    put(store, ordinal, 1, readings(3), closed=False)
    put(store, ordinal, 1, readings(5), closed=False)  # the open batch grew
    put(store, ordinal, 1, readings(6))  # and closed
    put(store, ordinal, 2, readings(4), historical=True, clock_step_ms=1500)
    store.commit()
    assert (store.totals.batches, store.totals.readings) == (2, 10)
    assert store.totals.bytes == len(encode(readings(6))) + len(encode(readings(4)))
    got = store.fetch(ordinal, 2)
    assert got is not None
    assert msgspec.json.decode(got.payload, type=list[Reading]) == readings(4)
    assert (got.historical, got.clock_step_ms, got.boot) == (True, 1500, "boot-1")
    assert store.fetch(ordinal, 3) is None
    assert store.delete_upto(ordinal, 1) == 6
    store.commit()
    assert (store.totals.batches, store.totals.readings) == (1, 4)
    store.close()


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    store = SpoolStore(path)
    first = store.begin_boot("boot-1", T0)
    for seq in (1, 2, 3):
        put(store, first, seq, readings(2))
    put(store, first, 4, readings(1), closed=False)  # open when the agent died
    store.save_counters({"count": (12.0, 70_000.0)})
    store.set_meta("max_ts_ms", T0 + 99)
    store.commit()
    store.drop_oldest(1, protect=set())  # drops batch 1
    store.commit()
    store.close()

    again = SpoolStore(path)
    second = again.begin_boot("boot-2", T0 + 1000)  # closes boot-1's open batch
    (old, new) = again.streams()
    assert (old.boot, old.lo, old.hi, old.batches, old.readings) == ("boot-1", 2, 4, 3, 5)
    assert (new.boot, new.batches) == ("boot-2", 0)
    assert new.ordinal == second
    assert (again.totals.batches, again.totals.readings) == (3, 5)
    assert again.load_counters() == {"count": (12.0, 70_000.0)}
    assert again.get_meta("max_ts_ms") == T0 + 99
    assert again.ledger.per_signal() == {"a": 1, "b": 1}
    # batch 4 (open before) is now closed: a drop may take it
    assert again.drop_oldest(10**9, protect=set()) == {first: 4}
    again.close()


def test_drop_oldest_counts_per_signal_and_spares_open_batches(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path / "spool.db")
    o = store.begin_boot("b", T0)
    for seq in (1, 2, 3):
        put(store, o, seq, readings(4, ("x", "y", "x", "z")))
    put(store, o, 4, readings(2), closed=False)
    one = len(encode(readings(4, ("x", "y", "x", "z"))))
    assert store.drop_oldest(one + 1, protect={batch_key(o, 4)}) == {o: 2}
    assert store.ledger.per_signal() == {"x": 4, "y": 2, "z": 2}
    assert store.drop_oldest(10**9, protect={batch_key(o, 4)}) == {o: 3}  # stops at the open
    assert store.totals.batches == 1
    store.commit()
    rows = store.query("SELECT signal, reason, count FROM drops ORDER BY signal")
    assert rows == [("x", "spool_full", 6), ("y", "spool_full", 3), ("z", "spool_full", 3)]
    store.close()


def test_expire_drops_an_old_prefix_only(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path / "spool.db")
    o = store.begin_boot("b", T0)
    put(store, o, 1, readings(1), created_ms=100)
    put(store, o, 2, readings(1), created_ms=5000)  # a clock step made this one look young
    put(store, o, 3, readings(1), created_ms=200)
    assert store.expire(1000, protect=set()) == {o: 1}
    assert store.ledger.per_reason() == {"expired": 1}
    assert store.totals.batches == 2
    store.close()


def test_a_second_agent_cannot_open_the_same_spool(tmp_path: Path) -> None:
    store = SpoolStore(tmp_path / "spool.db")
    with pytest.raises(SpoolLockedError, match="locked"):
        SpoolStore(tmp_path / "spool.db")
    store.close()
    SpoolStore(tmp_path / "spool.db").close()  # free again


@pytest.mark.parametrize("damage", ["garbage", "torn"])
def test_a_corrupt_spool_is_moved_aside_and_replaced(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "spool.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:  # a real spool with its b-tree pages overwritten
        store = SpoolStore(path)
        o = store.begin_boot("b", T0)
        for seq in range(1, 200):
            put(store, o, seq, readings(20))
        store.commit()
        store.close()
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.seek(4096 * 2)
            f.write(os.urandom(size - 4096 * 3))
    original = path.read_bytes()
    with pytest.raises(SpoolCorruptError):
        SpoolStore(path)
    store, moved = SpoolStore.open_or_quarantine(path, now_ms=T0)
    assert moved is not None
    assert moved.read_bytes() == original  # kept for recovery, byte for byte
    assert moved.name.startswith("spool.db.corrupt-")
    assert store.totals.batches == 0
    o = store.begin_boot("fresh", T0)
    put(store, o, 1, readings(1))
    store.commit()
    store.close()
    assert quarantine(path, T0).name != moved.name  # a second quarantine never overwrites


_WRITER = textwrap.dedent(
    """
    import sys, msgspec
    from edge_agent.spool.store import SpoolStore
    from shared.messages import Reading
    store = SpoolStore(sys.argv[1])
    o = store.begin_boot("b", 0)
    enc = msgspec.json.Encoder().encode
    seq = 0
    while True:
        for _ in range(5):  # batched commits: five batches per COMMIT
            seq += 1
            rs = [Reading("s", 1_750_000_000_000 + seq * 10 + i, float(i)) for i in range(10)]
            store.put_batch(o, seq, enc(rs), 10, closed=True, historical=False,
                            clock_step_ms=0, created_ms=seq)
        store.commit()
        print(seq, flush=True)
    """
)


def test_committed_batches_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 500:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    store = SpoolStore(path)  # quick_check passes: not corrupt
    (stream,) = store.streams()
    assert stream.lo == 1
    assert stream.hi >= committed  # everything reported committed is there
    assert stream.batches == stream.hi  # and nothing is missing in between
    assert store.totals.readings == 10 * stream.hi
    store.close()
