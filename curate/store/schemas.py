"""The database's tables as Arrow schemas and names: the ``pool``, the ``ingest_log``, one
``emb_<name>`` table per embedder (with the score columns its embedder declares, when they
were asked for). No LanceDB here: what a row looks like, not how it is stored."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

POOL_TABLE = "pool"
EMBEDDING_PREFIX = "emb_"
INGEST_LOG_TABLE = "ingest_log"

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


VECTOR_COLUMNS = ("id", "hash", "fingerprint", "vector")  # every embeddings table's first ones


def embedding_schema(dim: int, score_columns: Sequence[str] = ()) -> pa.Schema:
    """An embeddings table: a ``dim``-d vector per row, then one float32 column per score
    (the names an embedder declares in ``Embedder.score_columns``; the store owns none)."""
    fields = [
        ("id", pa.string()),
        ("hash", pa.string()),
        ("fingerprint", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)),
    ]
    fields += [(name, pa.float32()) for name in score_columns]
    return pa.schema(fields)


def score_columns(schema: pa.Schema) -> tuple[str, ...]:
    """The score columns an embeddings table holds: every column after the vector."""
    return tuple(name for name in schema.names if name not in VECTOR_COLUMNS)


def embedding_table(name: str) -> str:
    """The table that holds the embeddings called ``name``."""
    return f"{EMBEDDING_PREFIX}{name}"


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def row_keys(ids: pa.Array | pa.ChunkedArray, hashes: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One string per row that is equal exactly when (id, hash) is."""
    keys = pc.binary_join_element_wise(ids, hashes, "\x00")
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
