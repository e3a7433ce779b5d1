"""The store's ``pool`` table and its ``ingest_log``.

The pool keeps an explicit ``pos`` column (insertion order). Every reader returns rows
sorted by it, so "pool position" (K-center's tie-break) never depends on how Lance lays
out fragments.

Ingest log. An ingest's log row is written beside the lock as ``.curate-ingest-pending.json``
before the pool append and moved into ``ingest_log`` after it. A writer that takes the lock
and finds the file finishes the job: if the pool moved past the version recorded in it, the
append committed and the row is logged with that version; otherwise it is dropped. So an
ingest killed between its commit and its log write is logged by the next writer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import PoolError
from curate.store.base import StoreBase
from curate.store.schemas import (
    INGEST_LOG_COUNTS,
    INGEST_LOG_SCHEMA,
    INGEST_LOG_TABLE,
    POOL_SCHEMA,
    POOL_TABLE,
    row_keys,
    sql_quote,
)

PENDING_LOG_FILE = ".curate-ingest-pending.json"
POOL_BATCH_ROWS = 4096


class PoolTables(StoreBase):
    """Store methods for the pool and the ingest log."""

    def has_pool(self) -> bool:
        return self.has_table(POOL_TABLE)

    def require_pool(self) -> int:
        """The pool's table version; a :class:`PoolError` naming the command to run when
        there is no pool."""
        return self._pool_table().version

    def _pool_table(self) -> Any:
        if not self.has_pool():
            raise PoolError(
                f"no pool table in {self.path}; run `curate ingest SOURCE --db {self.path}`"
            )
        return self._open(POOL_TABLE)

    def pool_version(self) -> int | None:
        return self._pool_table().version if self.has_pool() else None

    def pool_count(self) -> int:
        return self._pool_table().count_rows() if self.has_pool() else 0

    def read_pool(self, columns: list[str] | None = None) -> pa.Table:
        """The whole pool (or some columns) in pool order."""
        self.require_pool()
        cols = (
            None if columns is None else sorted(set(columns) | {"pos"}, key=POOL_SCHEMA.names.index)
        )
        table = self.scan(POOL_TABLE, cols)
        table = table.take(pc.sort_indices(table["pos"]))
        return table if columns is None else table.select(columns)

    def pool_keys(self, version: int) -> pa.Array:
        """One string per pool row at table ``version``, in pool order, equal exactly when
        (id, hash) is (the sharded selection's only whole-pool column: ~85 bytes a row)."""
        table = self._pool_table()
        table.checkout(version)
        rows = table.search().select(["pos", "id", "hash"]).to_arrow()
        rows = rows.take(pc.sort_indices(rows["pos"]))
        return row_keys(rows["id"], rows["hash"])

    def pool_rows_at(self, version: int, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """``columns`` of the pool rows at ``positions`` (pool order) at table ``version``."""
        return self.pool_reader(version).rows(positions, columns)

    def pool_reader(self, version: int | None = None) -> PoolReader:
        """Random access to the pool rows of ``version`` (default: the latest) by position."""
        table = self._pool_table()
        table.checkout(table.version if version is None else version)
        return PoolReader(table)

    def iter_pool(
        self, columns: list[str], batch_rows: int = POOL_BATCH_ROWS
    ) -> Iterator[tuple[np.ndarray, pa.Table]]:
        """The pool in pool order, ``batch_rows`` rows at a time: (pool positions, columns)
        for each, from one table version, so memory holds one batch of text at a time
        whatever the pool's size. Positions are indices in pool order (what
        :meth:`read_pool` row i is)."""
        reader = self.pool_reader()
        for start in range(0, len(reader), batch_rows):
            positions = np.arange(start, min(start + batch_rows, len(reader)), dtype=np.int64)
            yield positions, reader.rows(positions, columns)

    def next_pos(self) -> int:
        if not self.has_pool() or self.pool_count() == 0:
            return 0
        pos = self.scan(POOL_TABLE, ["pos"])["pos"]
        return int(pc.max(pos).as_py()) + 1

    def lookup_pool(self, column: str, values: list[str], out: list[str]) -> pa.Table:
        """Rows whose ``column`` is one of ``values`` (queried in chunks)."""
        if not self.has_pool() or not values:
            return pa.table({c: pa.array([], POOL_SCHEMA.field(c).type) for c in out})
        parts = []
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            where = f"{column} IN ({', '.join(sql_quote(v) for v in chunk)})"
            parts.append(self.scan(POOL_TABLE, out, where))
        return pa.concat_tables(parts)

    def append_pool(self, data: Any, ingest_log: dict | None = None) -> int:
        """Append rows (a RecordBatchReader or Table) in one commit (one new table version)
        and return that version.

        ``ingest_log`` (sources, read, added, duplicates, rejected) is recorded in the
        ingest log with that version; see the module doc for how it survives a kill."""
        with self.writing("append to the pool"):
            pending = self.path / PENDING_LOG_FILE
            if ingest_log is not None:
                _write_json(pending, {"version_before": self.pool_version(), "row": ingest_log})
            if self.has_pool():
                table = self._writable(POOL_TABLE)
                table.add(data)
            else:
                table = self._create_table(POOL_TABLE, POOL_SCHEMA, data)
            version = table.version
            if ingest_log is not None:
                self._log_ingest({**ingest_log, "version": version})
                pending.unlink(missing_ok=True)
            return version

    # ------------------------------------------------------------------ ingest log
    def _log_ingest(self, row: dict) -> None:
        data = pa.Table.from_pylist([row], schema=INGEST_LOG_SCHEMA)
        if self.has_table(INGEST_LOG_TABLE):
            self._writable(INGEST_LOG_TABLE).add(data)
        else:
            self._create_table(INGEST_LOG_TABLE, INGEST_LOG_SCHEMA, data)

    def _on_lock_taken(self) -> None:
        self._recover_pending_log()

    def _recover_pending_log(self) -> None:
        """Log (or drop) the row of an ingest killed between its pool commit and its log."""
        pending = self.path / PENDING_LOG_FILE
        if not pending.exists():
            return
        try:
            state = json.loads(pending.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None  # torn by a kill while it was written: its append never started
        if state is not None:
            version = self.pool_version()
            logged = set()
            if self.has_table(INGEST_LOG_TABLE):
                logged = set(self.scan(INGEST_LOG_TABLE, ["version"])["version"].to_pylist())
            if version is not None and version != state["version_before"] and version not in logged:
                self._log_ingest({**state["row"], "version": version})
        pending.unlink(missing_ok=True)

    def ingest_log_totals(self) -> dict[str, int]:
        """Sums over every logged ingest of rows read, added, duplicates and rejected."""
        if not self.has_table(INGEST_LOG_TABLE):
            return dict.fromkeys(INGEST_LOG_COUNTS, 0)
        log = self.scan(INGEST_LOG_TABLE, list(INGEST_LOG_COUNTS))
        return {c: int(sum(v or 0 for v in log[c].to_pylist())) for c in INGEST_LOG_COUNTS}


class PoolReader:
    """The rows of one pool version by position (an index in pool order), read by their
    storage offsets (Lance's random access): memory holds only the rows asked for, so a
    caller that walks a million rows in its own order (length-sorted embedding batches)
    never holds the pool's text."""

    def __init__(self, table: Any):
        self._table = table
        stored = table.search().select(["pos"]).to_arrow()["pos"].to_numpy()
        order = np.argsort(stored, kind="stable")
        self._pos = stored[order]  # position -> pos value
        self._offset = order  # position -> storage offset

    def __len__(self) -> int:
        return len(self._pos)

    def rows(self, positions: np.ndarray | list[int], columns: list[str]) -> pa.Table:
        """``columns`` of the rows at ``positions``, in that order (repeats allowed)."""
        positions = np.asarray(positions, np.int64)
        if not len(positions):
            return self._table.schema.empty_table().select(columns)
        wanted = np.unique(self._offset[positions]).tolist()
        found = self._table.take_offsets(wanted).select(["pos", *columns]).to_arrow()
        # Lance returns taken rows in no promised order: align them by their pos values.
        where = pc.index_in(pa.array(self._pos[positions]), value_set=found["pos"])
        return found.take(where).select(columns)


def _write_json(path: Path, value: object) -> None:
    """Write ``value`` to ``path`` atomically and durably."""
    tmp = path.with_name(f"{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
