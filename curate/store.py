"""LanceDB access: the ``pool`` table of examples, one ``emb_<name>`` table per embedder and
the ``ingest_log``. This is the only module that opens the database; every write goes
through a :class:`Store` method, under the database's writer lock.

The pool keeps an explicit ``pos`` column (insertion order). Every reader returns rows
sorted by it, so "pool position" (K-center's tie-break) never depends on how Lance
lays out fragments.

Writer lock. Lance commits are atomic and versioned, and its optimistic concurrency
(``rust/lance/src/dataset/transaction.rs``, "Conflict Resolution") rebases an Append onto
a concurrent Append or Rewrite and lets it through, while an Overwrite/Create is
compatible with everything that came before it (and makes a later Append fail). So two
processes that each read the pool, deduplicate and append both commit: their rows are
stored twice and their ``pos`` ranges overlap; an overwrite racing an append silently
drops the append; two creates of the same table fail with "Commit conflict". Lance cannot
see our invariants (unique hash, unique pos, one vector per row), so the store adds one
writer lock per database folder: an exclusive ``fcntl.flock`` on ``.curate-writer.lock``
inside it, whose content names the holder (pid, command, start time). Every write method
takes it (re-entrantly); a command whose read-then-write must be atomic holds it across
both with :meth:`Store.writing` (a whole ingest, an embed run's writes). Readers never take
it: Lance gives them a consistent snapshot. A writer that finds the lock held waits up to
``CURATE_LOCK_TIMEOUT`` seconds (default 10), then raises :class:`ConflictError` naming the
holder (exit code 3). The kernel drops a flock when its process dies, so kill -9 never
leaves a stale lock. Ranks of one ``torchrun`` job write together under rank 0's lock
(:meth:`Store.covered`).

Ingest log. An ingest's log row is written beside the lock as ``.curate-ingest-pending.json``
before the pool append and moved into ``ingest_log`` after it. A writer that takes the lock
and finds the file finishes the job: if the pool moved past the version recorded in it, the
append committed and the row is logged with that version; otherwise it is dropped. So an
ingest killed between its commit and its log write is logged by the next writer.

Disk errors. Lance raises a full disk or a refused write as ``RuntimeError("... (os error
28) ...")``; every write under the lock turns such an error into an :class:`OSError` with
its errno naming the database folder (:func:`curate.files.naming_path`), which the CLI
prints as one line. A reader never creates the folder: ``lancedb.connect`` would, so the
connection is opened on first use, and a missing folder reads as a database with no tables.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import ConflictError, EmbeddingError, PoolError
from curate.files import naming_path
from curate.paths import DEFAULT_DB
from curate.store_hygiene import HygieneTables

POOL_TABLE = "pool"
EMBEDDING_PREFIX = "emb_"
INGEST_LOG_TABLE = "ingest_log"
SCORE_COLUMNS = ("least_confidence", "margin", "entropy")
LOCK_FILE = ".curate-writer.lock"
PENDING_LOG_FILE = ".curate-ingest-pending.json"
LOCK_TIMEOUT_ENV = "CURATE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 10.0
LOAD_CHUNK_BYTES = 4 << 20  # vectors read per take while loading (a scan reads far ahead)
KEY_CHUNK_ROWS = 1 << 16  # stored rows whose (id, hash) are read per take

MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
POOL_SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("id", pa.string()),
        ("instruction", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("messages", MESSAGE_TYPE),
        ("category", pa.string()),
        ("source", pa.string()),
        ("hash", pa.string()),
        ("n_chars", pa.int64()),
    ]
)
EXAMPLE_COLUMNS = [f.name for f in POOL_SCHEMA if f.name != "pos"]
INGEST_LOG_SCHEMA = pa.schema(
    [
        ("version", pa.int64()),
        ("sources", pa.string()),
        ("read", pa.int64()),
        ("added", pa.int64()),
        ("duplicates", pa.int64()),
        ("rejected", pa.int64()),
    ]
)
INGEST_LOG_COUNTS = ("read", "added", "duplicates", "rejected")


def embedding_schema(dim: int, with_scores: bool) -> pa.Schema:
    fields = [
        ("id", pa.string()),
        ("hash", pa.string()),
        ("fingerprint", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)),
    ]
    if with_scores:
        fields += [(name, pa.float32()) for name in SCORE_COLUMNS]
    return pa.schema(fields)


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Vectors:
    """Embeddings aligned to pool order: ``matrix[i]`` belongs to pool row ``ids[i]``."""

    name: str
    fingerprint: str
    ids: list[str]
    hashes: list[str]
    matrix: np.ndarray  # (N, d) float32
    scores: dict[str, np.ndarray] = field(default_factory=dict)


class Store(HygieneTables):
    """One LanceDB database folder (its hygiene results: :mod:`curate.store_hygiene`)."""

    def __init__(self, path: str | Path = DEFAULT_DB, lock_timeout: float | None = None):
        self.path = Path(path)
        self._db = None
        if lock_timeout is None:
            lock_timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
        self.lock_timeout = lock_timeout
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._covered = False

    @property
    def db(self):
        """The LanceDB connection, opened on first use (connecting creates the folder)."""
        if self._db is None:
            self._db = lancedb.connect(str(self.path))
        return self._db

    # ------------------------------------------------------------------ writer lock
    @contextmanager
    def writing(self, what: str = "write") -> Iterator[None]:
        """Hold the database's writer lock for the block (re-entrant within this Store).

        Waits up to ``lock_timeout`` seconds for another writer, then raises
        :class:`ConflictError` naming it. ``what`` goes into the lock file for that message."""
        if self._covered or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with naming_path(self.path):
            self._acquire(what)
        self._lock_depth = 1
        try:
            with naming_path(self.path):
                self._recover_pending_log()
                yield
        finally:
            self._lock_depth = 0
            self._release()

    @contextmanager
    def covered(self) -> Iterator[None]:
        """Write without taking the lock, because another process of the same job holds it
        for us (rank 0 of a ``torchrun`` embed run, for the other ranks)."""
        self._covered = True
        try:
            yield
        finally:
            self._covered = False

    def lock_holder(self) -> str | None:
        """Who holds the writer lock, as the conflict message names it; None when free."""
        path = self.path / LOCK_FILE
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return _describe_holder(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _acquire(self, what: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(self.lock_timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    writer = _describe_holder(path)
                    os.close(fd)
                    raise ConflictError(
                        f"{self.path} is being written by {writer}; waited "
                        f"{self.lock_timeout:g}s for its writer lock (set {LOCK_TIMEOUT_ENV} to "
                        "wait longer), nothing was changed: rerun when it has finished"
                    ) from None
                time.sleep(0.05)
            except BaseException:
                os.close(fd)
                raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "command": _command_line(),
            "since": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._lock_fd = fd

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a reader of the file never sees a holder that left
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ------------------------------------------------------------------ tables
    def table_names(self) -> list[str]:
        if not self.path.is_dir():
            return []  # not created yet: readers must not create it
        names, token = [], None
        while True:
            page = self.db.list_tables(page_token=token)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def open(self, name: str):
        return self.db.open_table(name)

    def scan(
        self, name: str, columns: list[str] | None = None, where: str | None = None
    ) -> pa.Table:
        """All rows of a table (optionally some columns, optionally filtered by SQL)."""
        query = self.open(name).search()
        if where is not None:
            query = query.where(where)
        if columns is not None:
            query = query.select(columns)
        return query.to_arrow()

    # ------------------------------------------------------------------ pool
    def has_pool(self) -> bool:
        return self.has_table(POOL_TABLE)

    def pool(self):
        if not self.has_pool():
            raise PoolError(
                f"no pool table in {self.path}; run `curate ingest SOURCE --db {self.path}`"
            )
        return self.open(POOL_TABLE)

    def pool_version(self) -> int | None:
        return self.pool().version if self.has_pool() else None

    def pool_count(self) -> int:
        return self.pool().count_rows() if self.has_pool() else 0

    def read_pool(self, columns: list[str] | None = None) -> pa.Table:
        """The whole pool (or some columns) in pool order."""
        self.pool()  # raises PoolError naming the command to run when there is no pool
        cols = (
            None if columns is None else sorted(set(columns) | {"pos"}, key=POOL_SCHEMA.names.index)
        )
        table = self.scan(POOL_TABLE, cols)
        table = table.take(pc.sort_indices(table["pos"]))
        return table if columns is None else table.select(columns)

    def pool_keys(self, version: int) -> pa.Array:
        """One string per pool row at table ``version``, in pool order, equal exactly when
        (id, hash) is (the sharded selection's only whole-pool column: ~85 bytes a row)."""
        table = self.pool()
        table.checkout(version)
        rows = table.search().select(["pos", "id", "hash"]).to_arrow()
        rows = rows.take(pc.sort_indices(rows["pos"]))
        return _row_keys(rows["id"], rows["hash"])

    def pool_rows_at(self, version: int, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """``columns`` of the pool rows at ``positions`` (pool order) at table ``version``."""
        table = self.pool()
        table.checkout(version)
        wanted = np.unique(positions)
        parts = [
            table.search()
            .where(f"pos IN ({', '.join(str(int(p)) for p in wanted[s : s + 2000])})")
            .select(["pos", *columns])
            .to_arrow()
            for s in range(0, len(wanted), 2000)
        ]
        found = pa.concat_tables(parts)
        where = pc.index_in(pa.array(positions, pa.int64()), value_set=found["pos"])
        return found.take(where).select(columns)

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

    def append_pool(self, data: pa.RecordBatchReader, ingest_log: dict | None = None) -> int:
        """Append rows in one commit (one new table version) and return that version.

        ``ingest_log`` (sources, read, added, duplicates, rejected) is recorded in the
        ingest log with that version; see the module doc for how it survives a kill."""
        with self.writing("append to the pool"):
            pending = self.path / PENDING_LOG_FILE
            if ingest_log is not None:
                _write_json(pending, {"version_before": self.pool_version(), "row": ingest_log})
            if self.has_pool():
                table = self.pool()
                table.add(data)
            else:
                table = self.db.create_table(POOL_TABLE, data=data, schema=POOL_SCHEMA)
            version = table.version
            if ingest_log is not None:
                self._log_ingest({**ingest_log, "version": version})
                pending.unlink(missing_ok=True)
            return version

    # ------------------------------------------------------------------ ingest log
    def _log_ingest(self, row: dict) -> None:
        data = pa.Table.from_pylist([row], schema=INGEST_LOG_SCHEMA)
        if self.has_table(INGEST_LOG_TABLE):
            self.open(INGEST_LOG_TABLE).add(data)
        else:
            self.db.create_table(INGEST_LOG_TABLE, data=data, schema=INGEST_LOG_SCHEMA)

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

    # ------------------------------------------------------------------ embeddings
    @staticmethod
    def embedding_table(name: str) -> str:
        return f"{EMBEDDING_PREFIX}{name}"

    def embedding_names(self) -> list[str]:
        return sorted(
            n[len(EMBEDDING_PREFIX) :] for n in self.table_names() if n.startswith(EMBEDDING_PREFIX)
        )

    def has_embeddings(self, name: str) -> bool:
        return self.has_table(self.embedding_table(name))

    def embeddings_schema(self, name: str) -> pa.Schema | None:
        """The schema of the ``name`` embeddings table; None when there is none."""
        return self.open(self.embedding_table(name)).schema if self.has_embeddings(name) else None

    def embeddings_count(self, name: str) -> int:
        return (
            self.open(self.embedding_table(name)).count_rows() if self.has_embeddings(name) else 0
        )

    def read_embeddings(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Every stored row of the ``name`` embeddings (some columns), in storage order."""
        return self.scan(self.embedding_table(name), columns)

    def create_embeddings(self, name: str, schema: pa.Schema, data: pa.Table | None = None) -> None:
        """Create the ``name`` table, or replace it whatever its schema, in one commit."""
        table = self.embedding_table(name)
        with self.writing(f"write embeddings {name!r}"):
            mode = "overwrite" if self.has_table(table) else "create"
            self.db.create_table(table, data=data, schema=schema, mode=mode)

    def append_embeddings(self, name: str, data: pa.Table) -> None:
        """Append rows to the ``name`` embeddings (one commit)."""
        with self.writing(f"write embeddings {name!r}"):
            self.open(self.embedding_table(name)).add(data)

    def replace_embeddings(self, name: str, data: pa.Table) -> None:
        """Replace every row of the ``name`` embeddings with ``data`` (same schema) in one
        commit, then compact the table."""
        with self.writing(f"write embeddings {name!r}"):
            table = self.open(self.embedding_table(name))
            table.add(data, mode="overwrite")
            table.optimize()

    def compact_embeddings(self, name: str) -> None:
        """Merge the ``name`` table's small fragments (checkpoint appends) into a few files."""
        with self.writing(f"write embeddings {name!r}"):
            self.open(self.embedding_table(name)).optimize()

    def embeddings_version(self, name: str) -> int:
        return self.open(self.embedding_table(name)).version

    def embeddings_slice(
        self, name: str, version: int, start: int, stop: int, columns: list[str]
    ) -> pa.Table:
        """Stored rows ``start:stop`` (by offset, storage order) of the ``name`` embeddings
        at table ``version``: what one rank of a sharded selection reads."""
        table = self.open(self.embedding_table(name))
        table.checkout(version)
        return table.take_offsets(list(range(start, stop))).select(columns).to_arrow()

    def embeddings_rows_at(self, name: str, version: int) -> int:
        table = self.open(self.embedding_table(name))
        table.checkout(version)
        return table.count_rows()

    def load_vectors(self, name: str, with_scores: bool = False) -> Vectors:
        """Vectors for every pool row, in pool order, checked for completeness and NaN/inf.

        The (N, d) float32 result is allocated once and filled from small chunks of rows
        (taken by offset from one table version: a streamed scan reads hundreds of MB
        ahead), each row written straight to its pool position, so the peak is the result
        plus a chunk. A row stored twice for one (id, hash) is read as the last one stored."""
        table_name = self.embedding_table(name)
        if not self.has_table(table_name):
            known = ", ".join(self.embedding_names()) or "none"
            raise EmbeddingError(
                f"no embeddings named {name!r} in {self.path} (known: {known}); "
                f"run `curate embed --name {name}`"
            )
        table = self.open(table_name)
        dim = table.schema.field("vector").type.list_size
        score_cols = [c for c in SCORE_COLUMNS if c in table.schema.names] if with_scores else []
        pool = self.read_pool(["id", "hash"])
        ids, hashes = pool["id"].to_pylist(), pool["hash"].to_pylist()
        n = len(ids)
        pool_keys = _row_keys(pool["id"], pool["hash"])
        matrix = np.empty((n, dim), dtype=np.float32)
        filled = np.zeros(n, dtype=bool)
        finite = np.ones(n, dtype=bool)
        scores = {c: np.zeros(n, dtype=np.float32) for c in score_cols}
        fingerprints: set[str] = set()
        columns = ["id", "hash", "fingerprint", "vector", *score_cols]
        table.checkout(table.version)  # one snapshot for every chunk, whatever commits meanwhile
        stored = table.count_rows()
        step = max(64, LOAD_CHUNK_BYTES // (4 * max(dim, 1)))
        # each stored row's pool position in one lookup (a lookup builds a hash table of the
        # whole pool, so one per chunk was quadratic), from keys read in small takes
        parts = []
        for start in range(0, stored, KEY_CHUNK_ROWS):
            offsets = list(range(start, min(start + KEY_CHUNK_ROWS, stored)))
            keys = table.take_offsets(offsets).select(["id", "hash"]).to_arrow()
            parts.append(_row_keys(keys["id"], keys["hash"]))
        stored_keys = pa.chunked_array(parts, pa.string())
        where_all = pc.index_in(stored_keys, value_set=pool_keys).fill_null(-1)
        where_all = where_all.to_numpy() if stored else np.zeros(0, np.int64)
        for start in range(0, stored, step):
            offsets = list(range(start, min(start + step, stored)))
            batch = table.take_offsets(offsets).select(columns[2:]).to_arrow()
            fingerprints.update(pc.unique(batch["fingerprint"]).to_pylist())
            where = where_all[start : start + len(offsets)]
            rows = np.flatnonzero(where >= 0)
            if rows.size == 0:
                continue
            positions = where[rows]
            flat = batch["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
            vectors = flat.reshape(batch.num_rows, dim)[rows]
            matrix[positions] = vectors
            finite[positions] = np.isfinite(vectors).all(axis=1)
            filled[positions] = True
            for col in score_cols:
                values = batch[col].to_numpy(zero_copy_only=False)[rows]
                scores[col][positions] = values
        first = pc.index_in(pool_keys, value_set=pool_keys).to_numpy(zero_copy_only=False)
        twins = np.flatnonzero(first != np.arange(n))
        if twins.size:  # the pool holds an (id, hash) twice: both rows get its vector
            source = first[twins].astype(np.int64)
            matrix[twins], finite[twins], filled[twins] = (
                matrix[source],
                finite[source],
                filled[source],
            )
            for col in score_cols:
                scores[col][twins] = scores[col][source]
        if len(fingerprints) > 1:
            raise EmbeddingError(
                f"embeddings {name!r} mix {len(fingerprints)} embedder fingerprints; "
                f"rerun `curate embed --name {name}` to refresh them"
            )
        missing = [ids[i] for i in np.flatnonzero(~filled)]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise EmbeddingError(
                f"{len(missing)} of {len(ids)} pool rows have no vector in embeddings {name!r} "
                f"({shown}); run `curate embed --name {name}` to embed them"
            )
        bad = ~finite
        if bad.any():
            named = [ids[i] for i in np.flatnonzero(bad)[:5]]
            raise EmbeddingError(
                f"embeddings {name!r} have NaN/inf vectors for {int(bad.sum())} rows ({', '.join(named)})"
            )
        if with_scores and len(score_cols) < len(SCORE_COLUMNS):
            raise EmbeddingError(
                f"embeddings {name!r} have no uncertainty scores; embed with an `lm:` embedder "
                "and --scores"
            )
        return Vectors(
            name, fingerprints.pop() if fingerprints else "", ids, hashes, matrix, scores
        )


def _row_keys(ids: pa.Array | pa.ChunkedArray, hashes: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One string per row that is equal exactly when (id, hash) is."""
    keys = pc.binary_join_element_wise(ids, hashes, "\x00")
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def _describe_holder(path: Path) -> str:
    """The lock file's holder in words: pid, host when not this one, command, what, since."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        return "another process"
    host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
    return (
        f"pid {info.get('pid')}{host} running `{info.get('command')}` "
        f"({info.get('what')}, since {info.get('since')})"
    )


def _command_line() -> str:
    """This process's command as a user typed it (``python -m curate`` shows as curate)."""
    program = Path(sys.argv[0])
    name = program.parent.name if program.name == "__main__.py" else program.name
    return " ".join([name, *sys.argv[1:]])[:300]


def _write_json(path: Path, value: object) -> None:
    """Write ``value`` to ``path`` atomically and durably."""
    tmp = path.with_name(f"{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
