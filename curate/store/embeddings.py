"""The store's embeddings: one ``emb_<name>`` table per embedder, and the whole pool's
vectors read back in pool order (:meth:`EmbeddingTables.load_vectors`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import EmbeddingError, param
from curate.store.pool import PoolTables
from curate.store.schemas import EMBEDDING_PREFIX, embedding_table, row_keys, score_columns

LOAD_CHUNK_BYTES = 4 << 20  # vectors read per take while loading (a scan reads far ahead)
KEY_CHUNK_ROWS = 1 << 16  # stored rows whose (id, hash) are read per take
# Compaction deletes versions (and the files only they hold) older than this: a run's
# checkpoint appends leave one version each (a 1M-row embed, thousands). Not at once: a
# reader that opened an older version (a select started before the embed ended) still
# needs its files for as long as it reads (LanceDB's own warning about pruning).
VERSION_GRACE = timedelta(minutes=15)


@dataclass
class Vectors:
    """Embeddings aligned to pool order: ``matrix[i]`` belongs to pool row ``ids[i]``."""

    name: str
    fingerprint: str
    ids: list[str]
    hashes: list[str]
    matrix: np.ndarray  # (N, d) float32
    scores: dict[str, np.ndarray] = field(default_factory=dict)


class EmbeddingTables(PoolTables):
    """Store methods for the embeddings tables."""

    @staticmethod
    def embedding_table(name: str) -> str:
        return embedding_table(name)

    def embedding_names(self) -> list[str]:
        return sorted(
            n[len(EMBEDDING_PREFIX) :] for n in self.table_names() if n.startswith(EMBEDDING_PREFIX)
        )

    def has_embeddings(self, name: str) -> bool:
        return self.has_table(self.embedding_table(name))

    def embeddings_schema(self, name: str) -> pa.Schema | None:
        """The schema of the ``name`` embeddings table; None when there is none."""
        return self._open(self.embedding_table(name)).schema if self.has_embeddings(name) else None

    def embeddings_count(self, name: str) -> int:
        return (
            self._open(self.embedding_table(name)).count_rows() if self.has_embeddings(name) else 0
        )

    def read_embeddings(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Every stored row of the ``name`` embeddings (some columns), in storage order."""
        return self.scan(self.embedding_table(name), columns)

    def create_embeddings(self, name: str, schema: pa.Schema, data: pa.Table | None = None) -> None:
        """Create the ``name`` table, or replace it whatever its schema, in one commit."""
        table = self.embedding_table(name)
        with self.writing(f"write embeddings {name!r}"):
            mode = "overwrite" if self.has_table(table) else "create"
            self._create_table(table, schema, data, mode)

    def ensure_embeddings(self, name: str, schema: pa.Schema) -> bool:
        """Create the ``name`` table empty, with ``schema``, unless it exists (checked and
        created under the writer lock); whether it was created. A table that exists is
        left as it is, whatever its schema."""
        table = self.embedding_table(name)
        with self.writing(f"write embeddings {name!r}"):
            if self.has_table(table):
                return False
            self._create_table(table, schema)
            return True

    def append_embeddings(self, name: str, data: pa.Table) -> None:
        """Append rows to the ``name`` embeddings (one commit)."""
        with self.writing(f"write embeddings {name!r}"):
            self._writable(self.embedding_table(name)).add(data)

    def replace_embeddings(self, name: str, data: pa.Table) -> None:
        """Replace every row of the ``name`` embeddings with ``data`` (same schema) in one
        commit, then compact the table."""
        with self.writing(f"write embeddings {name!r}"):
            table = self._writable(self.embedding_table(name))
            table.add(data, mode="overwrite")
            table.optimize(cleanup_older_than=VERSION_GRACE)

    def compact_embeddings(self, name: str, grace: timedelta = VERSION_GRACE) -> None:
        """Merge the ``name`` table's small fragments (checkpoint appends) into a few files
        and delete the versions older than ``grace`` with the files only they hold."""
        with self.writing(f"write embeddings {name!r}"):
            self._writable(self.embedding_table(name)).optimize(cleanup_older_than=grace)

    def embeddings_versions(self, name: str) -> int:
        """How many versions of the ``name`` table are kept on disk."""
        return len(self._open(self.embedding_table(name)).list_versions())

    def embeddings_version(self, name: str) -> int:
        return self._open(self.embedding_table(name)).version

    def embeddings_slice(
        self, name: str, version: int, start: int, stop: int, columns: list[str]
    ) -> pa.Table:
        """Stored rows ``start:stop`` (by offset, storage order) of the ``name`` embeddings
        at table ``version``: what one rank of a sharded selection reads."""
        table = self._open(self.embedding_table(name))
        table.checkout(version)
        return table.take_offsets(list(range(start, stop))).select(columns).to_arrow()

    def embeddings_rows_at(self, name: str, version: int) -> int:
        table = self._open(self.embedding_table(name))
        table.checkout(version)
        return table.count_rows()

    def load_vectors(self, name: str, *, scores: Sequence[str] = ()) -> Vectors:
        """Vectors for every pool row, in pool order, checked for completeness and NaN/inf,
        with the score columns ``scores`` (what a strategy declares in ``reads_scores``)
        in ``Vectors.scores``: exactly those, and an error naming any the table lacks.

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
        table = self._open(table_name)
        dim = table.schema.field("vector").type.list_size
        score_cols = list(dict.fromkeys(scores))
        lacking = [c for c in score_cols if c not in score_columns(table.schema)]
        if lacking:  # before reading a row: nothing else could make up for them
            raise EmbeddingError(
                f"embeddings {name!r} (table {table_name} in {self.path}) have no "
                f"{', '.join(map(repr, lacking))} score{'s' if len(lacking) > 1 else ''}; "
                f"run `curate embed --name {name}` again with {param('scores', True)} and an "
                f"embedder that computes {'them' if len(lacking) > 1 else 'it'}"
            )
        pool = self.read_pool(["id", "hash"])
        ids, hashes = pool["id"].to_pylist(), pool["hash"].to_pylist()
        n = len(ids)
        pool_keys = row_keys(pool["id"], pool["hash"])
        matrix = np.empty((n, dim), dtype=np.float32)
        filled = np.zeros(n, dtype=bool)
        finite = np.ones(n, dtype=bool)
        loaded = {c: np.zeros(n, dtype=np.float32) for c in score_cols}
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
            parts.append(row_keys(keys["id"], keys["hash"]))
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
                loaded[col][positions] = values
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
                loaded[col][twins] = loaded[col][source]
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
        return Vectors(
            name, fingerprints.pop() if fingerprints else "", ids, hashes, matrix, loaded
        )
