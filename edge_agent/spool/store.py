"""The SQLite shell of the spool: batches, boots, drop counters, counter state, meta.

* WAL journal with ``synchronous=FULL``: a COMMIT returns only after the WAL is fsynced, so a
  committed batch survives SIGKILL *and* power loss. Commits are batched by the caller (one per
  event-loop turn), which is what makes FULL affordable.
* One row per batch, keyed ``boot_ordinal << 32 | seq`` (a rowid table: ordered by boot, then
  seq, without a second index). The payload is the readings' JSON array, so publishing only
  wraps it in an envelope. The open batch of each lane is rewritten at every poll, so a
  reading is durable long before its batch is full.
* Deletions are always a prefix of a boot's rows (acks cover seq 1..n, drops take the oldest),
  so a boot's rows stay one contiguous seq range: the delivery core only needs numbers.
* A lock file (``flock``) keeps a second agent off the same spool. A file SQLite calls corrupt
  (or not a database) is moved aside with its WAL, never deleted, and a fresh spool started.
* Any other SQLite error inside a transaction (disk full, I/O error) rolls the whole transaction
  back, here and not half-way: SQLite itself rolls some of them back and not others. What the
  file then holds is read again (totals, open batches, boots); the deletions of the lost
  transaction (acks, drops) are redone at the start of the next one, and the drop ledger, kept
  in memory, is written back whole. Batches and alerts the caller still holds are the caller's
  to write again (:class:`~edge_agent.agent.Agent` does).

Every method runs on the caller's thread (the agent's event loop). Nothing here decides policy:
:mod:`edge_agent.spool.policy` does.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from edge_agent.errors import SpoolCorruptError, SpoolError
from edge_agent.spool.files import lock, quarantine, unlock
from edge_agent.spool.policy import BatchSize, DropLedger, DropReason, plan_size_drops

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
_SEQ_BITS: Final = 32
_SEQ_MASK: Final = (1 << _SEQ_BITS) - 1
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# Counting dropped readings needs only their signal: no validation, so a reading the contract
# would now refuse (a bad timestamp) can still be counted and dropped.
_rows_decoder: Final = msgspec.json.Decoder(list[list[Any]])

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS boots(
    ordinal INTEGER PRIMARY KEY, boot TEXT NOT NULL UNIQUE, started_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches(
    id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, closed INTEGER NOT NULL,
    historical INTEGER NOT NULL, clock_step_ms INTEGER NOT NULL, readings INTEGER NOT NULL,
    payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS drops(
    signal TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(signal, reason)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters(
    signal TEXT PRIMARY KEY, prev REAL NOT NULL, total REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts(
    id TEXT PRIMARY KEY, payload BLOB NOT NULL, updated_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_acks(
    id INTEGER PRIMARY KEY, alert TEXT NOT NULL, payload BLOB NOT NULL,
    created_ms INTEGER NOT NULL);
"""


def batch_key(ordinal: int, seq: int) -> int:
    return (ordinal << _SEQ_BITS) | seq


def split_key(key: int) -> tuple[int, int]:
    return key >> _SEQ_BITS, key & _SEQ_MASK


def is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CORRUPT_CODES


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One boot's rows in the spool (``lo``..``hi``; ``hi`` < ``lo`` when it has none)."""

    boot: str
    ordinal: int
    lo: int
    hi: int
    batches: int
    readings: int


@dataclass(frozen=True, slots=True)
class StoredBatch:
    boot: str
    seq: int
    payload: bytes  # the readings' JSON array
    readings: int
    historical: bool
    clock_step_ms: int
    created_ms: int


@dataclass(slots=True)
class SpoolTotals:
    batches: int = 0
    readings: int = 0
    bytes: int = 0


class SpoolStore:
    """An open spool file (see the module docstring). Raises :class:`SpoolCorruptError`,
    :class:`SpoolLockedError` or :class:`SpoolError` when it cannot be used."""

    def __init__(self, path: str | Path, *, check_on_start: bool = True) -> None:
        self.path = Path(path)
        self.totals = SpoolTotals()
        self.ledger = DropLedger()
        self._in_tx = False
        # statements to redo should their transaction be rolled back (deletions, age shifts)
        self._tx_redoable: list[tuple[str, tuple[int, ...]]] = []
        self._redo: list[tuple[str, tuple[int, ...]]] = []  # of transactions rolled back
        self._resync = False  # totals, open batches and boots to read again from the file
        self._ledger_dirty = False  # counts in memory the file does not have yet
        self.rollbacks = 0
        self._open_sizes: dict[int, tuple[int, int]] = {}  # rows not closed: (bytes, readings)
        self._boots: dict[int, str] = {}
        self._ordinals: dict[str, int] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(self.path, f"cannot create its folder: {exc.strerror}") from None
        self._lock_fd = lock(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            unlock(self._lock_fd)
            raise SpoolError(self.path, f"cannot open: {exc}") from None
        try:
            self._setup(check_on_start)
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------

    def _setup(self, check: bool) -> None:
        with self._errors("open"):
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SpoolError(self.path, f"cannot switch to WAL (journal_mode {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA journal_size_limit=16777216")
            if check:
                rows = self._db.execute("PRAGMA quick_check").fetchall()
                if rows != [("ok",)]:
                    raise SpoolCorruptError(self.path, f"quick_check: {rows[:3]}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise SpoolError(self.path, f"schema version {version}, expected {SCHEMA_VERSION}")
            self._read_state()
            for signal, reason, n in self._db.execute("SELECT signal, reason, count FROM drops"):
                self.ledger.merge({signal: n}, reason)

    def _read_state(self) -> None:
        """Totals, open batches and boots as the file holds them."""
        count, readings, nbytes = self._db.execute(
            "SELECT COUNT(*), TOTAL(readings), TOTAL(length(payload)) FROM batches"
        ).fetchone()
        self.totals = SpoolTotals(int(count), int(readings), int(nbytes))
        self._open_sizes = {
            int(key): (int(nb), int(n))
            for key, nb, n in self._db.execute(
                "SELECT id, length(payload), readings FROM batches WHERE closed = 0"
            )
        }
        self._boots.clear()
        self._ordinals.clear()
        for ordinal, boot in self._db.execute("SELECT ordinal, boot FROM boots"):
            self._boots[ordinal] = boot
            self._ordinals[boot] = ordinal

    @classmethod
    def open_or_quarantine(
        cls, path: str | Path, *, check_on_start: bool = True, now_ms: int | None = None
    ) -> tuple[SpoolStore, Path | None]:
        """Open ``path``; if it is corrupt, move it aside and open a fresh one.

        Returns the store and where the corrupt file went (None when it was healthy).
        """
        try:
            return cls(path, check_on_start=check_on_start), None
        except SpoolCorruptError as exc:
            moved = quarantine(Path(path), now_ms)
            log.error(
                "spool %s is corrupt (%s); moved to %s, starting a fresh one", path, exc, moved
            )
            return cls(path, check_on_start=False), moved

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._in_tx:
                self._db.execute("ROLLBACK")
        self._in_tx = False
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        unlock(self._lock_fd)

    # -- transactions ------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            self._ledger_dirty = True  # counts merged in memory may not have reached the file
            if self._in_tx:
                self._rolled_back()
            if is_corruption(exc):
                raise SpoolCorruptError(self.path, f"{what}: {exc}") from exc
            raise SpoolError(self.path, f"{what}: {exc}") from exc

    def _rolled_back(self) -> None:
        """The pending transaction failed: make sure it is gone, and redo its deletions later."""
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        self._in_tx = False
        self._redo.extend(self._tx_redoable)  # kept until a commit succeeds
        self._tx_redoable.clear()
        self._resync = True
        self._ledger_dirty = True
        self.rollbacks += 1

    def _begin(self) -> None:
        if self._in_tx:
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        if self._resync:
            for sql, params in self._redo:
                self._db.execute(sql, params)
            self._read_state()

    def _catch_up(self) -> None:
        """Before reading what to delete: a transaction rolled back has its deletions and
        shifts redone first (else the reads see rows that are gone already)."""
        if self._resync and not self._in_tx:
            with self._errors("write"):
                self._begin()

    def _write_ledger(self) -> None:
        for signal, reason, n in self.ledger.rows():
            self._db.execute(
                "INSERT INTO drops(signal, reason, count) VALUES(?, ?, ?) ON CONFLICT(signal,"
                " reason) DO UPDATE SET count = excluded.count",
                (signal, reason, n),
            )

    @property
    def failed_since_commit(self) -> bool:
        """Whether a transaction was rolled back and nothing was committed since."""
        return self._resync

    def write(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """Run a write inside the pending transaction (opened on first use)."""
        with self._errors("write"):
            self._begin()
            return self._db.execute(sql, params)

    def _redoable(self, sql: str, params: tuple[int, ...]) -> None:
        """A deletion or shift, redone in the next transaction should this one be rolled
        back (once: the list is cleared by the commit that includes it)."""
        with self._errors("write"):
            self._begin()
            self._tx_redoable.append((sql, params))
            self._db.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        with self._errors("read"):
            return self._db.execute(sql, params).fetchall()

    @property
    def dirty(self) -> bool:
        return self._in_tx

    def commit(self) -> bool:
        """Make every write so far durable (fsync). Returns whether there was anything."""
        if self._ledger_dirty:
            with self._errors("write"):
                self._begin()
                self._write_ledger()
        if not self._in_tx:
            return False
        with self._errors("commit"):
            self._db.execute("COMMIT")
        self._in_tx = False
        self._ledger_dirty = False
        self._tx_redoable.clear()
        self._redo.clear()
        self._resync = False
        return True

    # -- boots -------------------------------------------------------------------------

    def begin_boot(self, boot: str, started_ms: int) -> int:
        """Register a new boot (its ordinal orders replay); rows of earlier boots are closed."""
        cur = self.write("INSERT INTO boots(boot, started_ms) VALUES(?, ?)", (boot, started_ms))
        ordinal = int(cur.lastrowid or 0)
        self.write("UPDATE batches SET closed = 1 WHERE closed = 0")
        self.commit()
        self._boots[ordinal] = boot
        self._ordinals[boot] = ordinal
        return ordinal

    def ordinal_of(self, boot: str) -> int | None:
        return self._ordinals.get(boot)

    def streams(self) -> list[StreamInfo]:
        """Every boot with its range of rows, oldest boot first."""
        out: list[StreamInfo] = []
        for ordinal in sorted(self._boots):
            lo_key, hi_key = batch_key(ordinal, 0), batch_key(ordinal, _SEQ_MASK)
            first, last, count, readings = self.query(
                "SELECT MIN(id), MAX(id), COUNT(*), TOTAL(readings) FROM batches "
                "WHERE id BETWEEN ? AND ?",
                (lo_key, hi_key),
            )[0]
            lo = split_key(first)[1] if first is not None else 1
            hi = split_key(last)[1] if last is not None else 0
            out.append(StreamInfo(self._boots[ordinal], ordinal, lo, hi, count, int(readings)))
        return out

    def forget_boot(self, boot: str) -> None:
        ordinal = self._ordinals.pop(boot, None)
        if ordinal is not None:
            del self._boots[ordinal]
            self._redoable("DELETE FROM boots WHERE ordinal = ?", (ordinal,))

    # -- batches -----------------------------------------------------------------------

    def put_batch(
        self,
        ordinal: int,
        seq: int,
        payload: bytes,
        readings: int,
        *,
        closed: bool,
        historical: bool,
        clock_step_ms: int,
        created_ms: int,
    ) -> None:
        """Insert a batch, or replace the open batch of that seq with its longer self."""
        key = batch_key(ordinal, seq)
        self.write(
            "INSERT INTO batches(id, created_ms, closed, historical, clock_step_ms, readings,"
            " payload) VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
            " closed = excluded.closed, clock_step_ms = excluded.clock_step_ms,"
            " readings = excluded.readings, payload = excluded.payload",
            (key, created_ms, int(closed), int(historical), clock_step_ms, readings, payload),
        )
        old_bytes, old_readings = self._open_sizes.pop(key, (0, 0))
        if old_bytes == 0 and old_readings == 0:
            self.totals.batches += 1
        self.totals.bytes += len(payload) - old_bytes
        self.totals.readings += readings - old_readings
        if not closed:
            self._open_sizes[key] = (len(payload), readings)

    def fetch(self, ordinal: int, seq: int) -> StoredBatch | None:
        rows = self.query(
            "SELECT payload, readings, historical, clock_step_ms, created_ms FROM batches"
            " WHERE id = ?",
            (batch_key(ordinal, seq),),
        )
        if not rows:
            return None
        payload, readings, historical, step, created = rows[0]
        return StoredBatch(
            self._boots.get(ordinal, ""),
            seq,
            bytes(payload),
            readings,
            bool(historical),
            step,
            created,
        )

    def delete_upto(self, ordinal: int, seq: int) -> int:
        """Delete the boot's batches with seq <= ``seq`` (acked); returns readings deleted."""
        lo, hi = batch_key(ordinal, 0), batch_key(ordinal, seq)
        self._catch_up()
        count, readings, nbytes = self.query(
            "SELECT COUNT(*), TOTAL(readings), TOTAL(length(payload)) FROM batches"
            " WHERE id BETWEEN ? AND ?",
            (lo, hi),
        )[0]
        if count:
            self._redoable("DELETE FROM batches WHERE id BETWEEN ? AND ?", (lo, hi))
            self._account_removed(int(count), int(readings), int(nbytes), lo, hi)
        return int(readings)

    def shift_created(self, step_ms: int) -> None:
        """The wall clock stepped by ``step_ms``: keep every batch's age as it was."""
        if step_ms and self.totals.batches:
            self._redoable("UPDATE batches SET created_ms = created_ms + ?", (step_ms,))

    def oldest_created_ms(self) -> int | None:
        rows = self.query("SELECT created_ms FROM batches ORDER BY id LIMIT 1")
        return int(rows[0][0]) if rows else None

    # -- dropping ----------------------------------------------------------------------

    def drop_oldest(self, excess_bytes: int, protect: set[int]) -> dict[int, int]:
        """Drop the oldest batches until ``excess_bytes`` are freed, never one in
        ``protect`` (keys of open batches) or anything after it. Returns ordinal -> upto seq."""
        self._catch_up()
        candidates: list[BatchSize] = []
        freed = 0
        for key, nbytes, _created in self._oldest_rows():
            if key in protect or freed >= excess_bytes:
                break
            candidates.append(BatchSize(key, nbytes))
            freed += nbytes
        return self._drop(plan_size_drops(excess_bytes, candidates), DropReason.SPOOL_FULL)

    def expire(self, cutoff_ms: int, protect: set[int]) -> dict[int, int]:
        """Drop the oldest batches created before ``cutoff_ms`` (a prefix: the first younger
        batch stops the sweep, so a clock step never punches holes)."""
        self._catch_up()
        keys: list[int] = []
        for key, _nbytes, created in self._oldest_rows():
            if created >= cutoff_ms or key in protect:
                break
            keys.append(key)
        return self._drop(keys, DropReason.EXPIRED)

    def _oldest_rows(self, chunk: int = 256) -> Iterator[tuple[int, int, int]]:
        """(key, payload bytes, created_ms) in spool order, read in chunks (no open cursor)."""
        after = -1
        while True:
            rows = self.query(
                "SELECT id, length(payload), created_ms FROM batches WHERE id > ? ORDER BY id"
                " LIMIT ?",
                (after, chunk),
            )
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1][0]

    def _drop(self, keys: list[int], reason: DropReason) -> dict[int, int]:
        upto: dict[int, int] = {}
        if not keys:
            return upto
        counts: dict[str, int] = {}
        removed_readings = removed_bytes = 0
        for key in keys:
            found = self.query("SELECT payload FROM batches WHERE id = ?", (key,))
            if not found:
                continue
            (payload,) = found[0]
            rows = _rows_decoder.decode(payload)
            for row in rows:
                signal = str(row[0]) if row else "?"
                counts[signal] = counts.get(signal, 0) + 1
            removed_readings += len(rows)
            removed_bytes += len(payload)
            self._redoable("DELETE FROM batches WHERE id = ?", (key,))
            ordinal, seq = split_key(key)
            upto[ordinal] = max(upto.get(ordinal, 0), seq)
        self.record_drops(counts, reason)
        self._account_removed(len(keys), removed_readings, removed_bytes, min(keys), max(keys))
        log.warning(
            "spool: dropped %d reading(s) in %d batch(es): %s", removed_readings, len(keys), reason
        )
        return upto

    def record_drops(self, counts: Mapping[str, int], reason: DropReason) -> None:
        """Count readings given up (per signal), in the pending transaction (in memory first:
        if the transaction is lost, the whole ledger is written back with the next)."""
        self.ledger.merge(counts, reason.value)
        for signal, n in counts.items():
            self.write(
                "INSERT INTO drops(signal, reason, count) VALUES(?, ?, ?) ON CONFLICT(signal,"
                " reason) DO UPDATE SET count = count + excluded.count",
                (signal, reason.value, n),
            )

    def record_drops_later(self, counts: Mapping[str, int], reason: DropReason) -> None:
        """Count readings given up while the file cannot be written: in the ledger now, in the
        file with the next transaction (which writes the whole ledger back)."""
        self.ledger.merge(counts, reason.value)
        self._ledger_dirty = True

    def carry_ledger(self, ledger: DropLedger) -> None:
        """Counts of a spool file replaced after corruption: they go on here (the birth's
        ``dropped`` never goes backwards)."""
        for signal, per in ledger.by_signal.items():
            for reason, n in per.items():
                self.ledger.merge({signal: n}, reason)
        for reason, n in ledger.unattributed.items():
            self.ledger.unattributed[reason] = self.ledger.unattributed.get(reason, 0) + n
        self._ledger_dirty = True

    def _account_removed(self, batches: int, readings: int, nbytes: int, lo: int, hi: int) -> None:
        self.totals.batches -= batches
        self.totals.readings -= readings
        self.totals.bytes -= nbytes
        for key in [k for k in self._open_sizes if lo <= k <= hi]:
            del self._open_sizes[key]

    # -- small state -------------------------------------------------------------------

    def load_counters(self) -> dict[str, tuple[float, float]]:
        return {s: (p, t) for s, p, t in self.query("SELECT signal, prev, total FROM counters")}

    def save_counters(self, counters: Mapping[str, tuple[float, float]]) -> None:
        for signal, (prev, total) in counters.items():
            self.write(
                "INSERT INTO counters(signal, prev, total) VALUES(?, ?, ?) ON CONFLICT(signal)"
                " DO UPDATE SET prev = excluded.prev, total = excluded.total",
                (signal, prev, total),
            )

    def get_meta(self, key: str, default: int = 0) -> int:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: int) -> None:
        self.write(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET"
            " value = excluded.value",
            (key, value),
        )
