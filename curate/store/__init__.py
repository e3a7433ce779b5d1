"""LanceDB access: the ``pool`` table of examples, one ``emb_<name>`` table per embedder,
the ``ingest_log`` and the hygiene results. This is the only package that opens the
database; its connection is private to :class:`Store`, and every write goes through a
:class:`Store` method, under the database's writer lock.

Sections (one module each): :mod:`~curate.store.schemas` (table names and Arrow schemas),
:mod:`~curate.store.lock` (the flock), :mod:`~curate.store.base` (connection, lock re-entry,
table reads), :mod:`~curate.store.pool` (pool and ingest log),
:mod:`~curate.store.embeddings` (``emb_*`` tables, :meth:`Store.load_vectors`) and
:mod:`~curate.store.hygiene` (``hyg_*`` results). :class:`Store` is their facade.

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

Disk errors. Lance raises a full disk or a refused write as ``RuntimeError("... (os error
28) ...")``; every write under the lock turns such an error into an :class:`OSError` with
its errno naming the database folder (:func:`curate.files.naming_path`), which the CLI
prints as one line. A reader never creates the folder: ``lancedb.connect`` would, so the
connection is opened on first use, and a missing folder reads as a database with no tables.
"""

from __future__ import annotations

from curate.store.embeddings import KEY_CHUNK_ROWS, LOAD_CHUNK_BYTES, EmbeddingTables, Vectors
from curate.store.hygiene import HYGIENE_KINDS, HygieneResult, HygieneTables, hygiene_table
from curate.store.lock import DEFAULT_LOCK_TIMEOUT, LOCK_FILE, LOCK_TIMEOUT_ENV
from curate.store.pool import PENDING_LOG_FILE, POOL_BATCH_ROWS
from curate.store.schemas import (
    EMBEDDING_PREFIX,
    EXAMPLE_COLUMNS,
    INGEST_LOG_COUNTS,
    INGEST_LOG_SCHEMA,
    INGEST_LOG_TABLE,
    MESSAGE_TYPE,
    POOL_SCHEMA,
    POOL_TABLE,
    embedding_schema,
    embedding_table,
    score_columns,
    sql_quote,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "EMBEDDING_PREFIX",
    "EXAMPLE_COLUMNS",
    "HYGIENE_KINDS",
    "INGEST_LOG_COUNTS",
    "INGEST_LOG_SCHEMA",
    "INGEST_LOG_TABLE",
    "KEY_CHUNK_ROWS",
    "LOAD_CHUNK_BYTES",
    "LOCK_FILE",
    "LOCK_TIMEOUT_ENV",
    "MESSAGE_TYPE",
    "PENDING_LOG_FILE",
    "POOL_BATCH_ROWS",
    "POOL_SCHEMA",
    "POOL_TABLE",
    "HygieneResult",
    "Store",
    "Vectors",
    "embedding_schema",
    "embedding_table",
    "hygiene_table",
    "score_columns",
    "sql_quote",
]


class Store(EmbeddingTables, HygieneTables):
    """One LanceDB database folder: the pool and ingest log, the embeddings, the hygiene
    results (each section's methods: the modules of :mod:`curate.store`)."""
