"""LanceDB access: the ``pool`` table of examples and one ``emb_<name>`` table per embedder.

The pool keeps an explicit ``pos`` column (insertion order). Every reader returns rows
sorted by it, so "pool position" (K-center's tie-break) never depends on how Lance
lays out fragments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import EmbeddingError, PoolError
from curate.paths import DEFAULT_DB

POOL_TABLE = "pool"
EMBEDDING_PREFIX = "emb_"
SCORE_COLUMNS = ("least_confidence", "margin", "entropy")

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


class Store:
    """One LanceDB database folder."""

    def __init__(self, path: str | Path = DEFAULT_DB):
        self.path = Path(path)
        self.db = lancedb.connect(str(self.path))

    # ------------------------------------------------------------------ tables
    def table_names(self) -> list[str]:
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

    def append_pool(self, data: pa.RecordBatchReader) -> int:
        """Append rows in one commit (one new table version) and return that version."""
        if self.has_pool():
            table = self.pool()
            table.add(data)
        else:
            table = self.db.create_table(POOL_TABLE, data=data, schema=POOL_SCHEMA)
        return table.version

    # ------------------------------------------------------------------ embeddings
    @staticmethod
    def embedding_table(name: str) -> str:
        return f"{EMBEDDING_PREFIX}{name}"

    def embedding_names(self) -> list[str]:
        return sorted(
            n[len(EMBEDDING_PREFIX) :] for n in self.table_names() if n.startswith(EMBEDDING_PREFIX)
        )

    def load_vectors(self, name: str, with_scores: bool = False) -> Vectors:
        """Vectors for every pool row, in pool order, checked for completeness and NaN/inf."""
        table_name = self.embedding_table(name)
        if not self.has_table(table_name):
            known = ", ".join(self.embedding_names()) or "none"
            raise EmbeddingError(
                f"no embeddings named {name!r} in {self.path} (known: {known}); "
                f"run `curate embed --name {name}`"
            )
        emb = self.scan(table_name)
        fingerprints = set(emb["fingerprint"].to_pylist())
        if len(fingerprints) > 1:
            raise EmbeddingError(
                f"embeddings {name!r} mix {len(fingerprints)} embedder fingerprints; "
                f"rerun `curate embed --name {name}` to refresh them"
            )
        pool = self.read_pool(["id", "hash"])
        ids, hashes = pool["id"].to_pylist(), pool["hash"].to_pylist()
        row_of = {
            (i, h): r
            for r, (i, h) in enumerate(
                zip(emb["id"].to_pylist(), emb["hash"].to_pylist(), strict=True)
            )
        }
        order = [row_of.get(key) for key in zip(ids, hashes, strict=True)]
        missing = [ids[i] for i, r in enumerate(order) if r is None]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise EmbeddingError(
                f"{len(missing)} of {len(ids)} pool rows have no vector in embeddings {name!r} "
                f"({shown}); run `curate embed --name {name}` to embed them"
            )
        take = pa.array(order, pa.int64())
        vec_col = emb["vector"].combine_chunks().take(take)
        dim = vec_col.type.list_size
        matrix = vec_col.flatten().to_numpy(zero_copy_only=False).reshape(len(ids), dim)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            rows = [ids[i] for i in np.flatnonzero(bad)[:5]]
            raise EmbeddingError(
                f"embeddings {name!r} have NaN/inf vectors for {int(bad.sum())} rows ({', '.join(rows)})"
            )
        scores: dict[str, np.ndarray] = {}
        if with_scores:
            absent = [c for c in SCORE_COLUMNS if c not in emb.column_names]
            if absent:
                raise EmbeddingError(
                    f"embeddings {name!r} have no uncertainty scores; embed with an `lm:` embedder"
                )
            for col in SCORE_COLUMNS:
                scores[col] = emb[col].take(take).to_numpy(zero_copy_only=False).astype(np.float32)
        return Vectors(
            name, fingerprints.pop() if fingerprints else "", ids, hashes, matrix, scores
        )
