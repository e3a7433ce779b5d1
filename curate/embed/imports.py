"""``curate embed --import``: vectors computed elsewhere replace the ``name`` embeddings in
one commit, once they are checked against the pool (every row, same content)."""

from __future__ import annotations

import time
from pathlib import Path

from curate.embed.run import EmbedReport, _arrow_rows, _mismatch, _some
from curate.embedders.fingerprints import file_fingerprint
from curate.embedders.registry import check_name, slug
from curate.embedders.vector_file import read_vector_file
from curate.errors import EmbeddingError, InvalidInputError, PoolError
from curate.store import Store, embedding_schema


def import_vectors(store: Store, path: str | Path, name: str | None = None) -> EmbedReport:
    """Replace the ``name`` embeddings with vectors from a file that covers the whole pool."""
    started = time.perf_counter()
    path = Path(path)
    name = check_name(name or slug(path.stem) or "imported")
    data = read_vector_file(path)
    store.require_pool()
    pool = store.read_pool(["id", "hash"])
    if pool.num_rows == 0:
        raise PoolError(f"the pool in {store.path} is empty; add rows with `curate ingest SOURCE`")
    pool_hash = dict(zip(pool["id"].to_pylist(), pool["hash"].to_pylist(), strict=True))
    unknown = [i for i in data.ids if i not in pool_hash]
    if unknown:
        raise InvalidInputError(
            path, None, f"{len(unknown)} ids are not in the pool ({_some(unknown)})"
        )
    if data.hashes is not None:
        changed = [i for i, h in zip(data.ids, data.hashes, strict=True) if h != pool_hash[i]]
        if changed:
            raise InvalidInputError(
                path,
                None,
                f"{len(changed)} vectors were made for other content "
                f"(hash differs: {_some(changed)})",
            )
    row_of = {i: r for r, i in enumerate(data.ids)}
    missing = [i for i in pool_hash if i not in row_of]
    if missing:
        raise InvalidInputError(
            path,
            None,
            f"covers {len(row_of)} of {len(pool_hash)} pool rows (missing {_some(missing)}); "
            "vectors must cover the whole pool",
        )
    dim = data.matrix.shape[1]
    table = store.embedding_table(name)
    schema = embedding_schema(dim)
    stored_schema = store.embeddings_schema(name)
    if stored_schema is not None and store.embeddings_count(name) and stored_schema != schema:
        raise EmbeddingError(_mismatch(name, stored_schema, dim, (), store.path))
    ids = pool["id"].to_pylist()
    order = [row_of[i] for i in ids]
    fingerprint = file_fingerprint(path)
    arrow = _arrow_rows(schema, ids, pool["hash"].to_pylist(), fingerprint, data.matrix[order], {})
    with store.writing(f"import embeddings {name!r}"):
        previous = store.embeddings_count(name)
        store.create_embeddings(name, schema, arrow)  # one atomic commit
    return EmbedReport(
        name,
        table,
        f"import:{path}",
        fingerprint,
        dim,
        len(ids),
        embedded=len(ids),
        removed=previous,
        seconds=time.perf_counter() - started,
    )
