"""Embedding a pool with a model: one vector per pool row in the ``emb_<name>`` table, cached
and resumable (the verb's orchestration is :func:`curate.embed.embed`).

Cache: a stored vector is reused when its (id, hash) matches a pool row and its
fingerprint matches the embedder's. Only the other rows are embedded, so re-running with
the same embedder loads no model, and adding 10 rows to the pool embeds 10.

Resume: new vectors are appended at batch boundaries, at most every
``checkpoint_seconds`` (0 = after every batch). Each Lance commit writes a manifest that
lists every fragment so far, so thousands of one-batch commits would make the table large
and slow; a few seconds between commits keeps that small while a kill -9 loses only the
work since the last one. The re-run reuses everything that was committed.

Scores: an embedder that declares ``score_columns`` (``lm:``: the uncertainty and IFD
scores) computes them only when asked. They are not part of the fingerprint (the vectors
are the same either way) but of the table's columns: a table with any of them keeps getting
them; asking for scores on a table without them, or with only some of them (an ``lm:``
table made before IFD joined the uncertainty scores), embeds every row again into a table
with all of them.

Replacement: rows with another fingerprint (an older model), rows whose content left the
pool, and duplicates stay until every pool row has a current vector; only then is the
table rewritten in one commit (pool order, exactly one row per pool row). Until then
:meth:`Store.load_vectors` refuses the mixed table, so a half-finished run is never read
as a finished one, and the old vectors are not lost if the new run dies.

Data parallel: under ``torchrun``/``accelerate launch`` every rank makes the same plan
(same length-sorted batches), embeds every ``world``-th batch and appends to the same
table (Lance appends commute); rank 0 finalises after a barrier. Vectors do not depend on
batch mates, so the result equals a single-process run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate.embedders.base import Embedder
from curate.embedders.ranks import Ranks
from curate.embedders.registry import check_name, default_name
from curate.errors import ConflictError, EmbeddingError, PoolError, param
from curate.progress import NO_PROGRESS, Progress
from curate.store import Store, embedding_schema, score_columns
from curate.store.embeddings import VERSION_GRACE
from curate.store.pool import PoolReader

ROW_COLUMNS = ["id", "hash", "instruction", "input", "output", "messages", "n_chars"]
READ_ROWS = 4096  # pool rows read from the store at a time while embedding


@dataclass
class EmbedReport:
    name: str
    table: str
    embedder: str
    fingerprint: str
    dim: int
    pool_rows: int
    embedded: int = 0
    reused: int = 0
    removed: int = 0  # stale, orphaned or duplicate rows dropped when the table was rewritten
    seconds: float = 0.0
    ranks: int = 1
    embedded_per_rank: list[int] = field(default_factory=list)
    precision: str = "fp32"  # the compute precision the vectors were made in
    padding: float | None = None  # padded token slots / all slots in this run's batches

    @property
    def examples_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "examples_per_s": round(self.examples_per_s, 2)}


@dataclass
class EmbedPlan:
    """What a run will do, worked out from the pool and the table without loading a model."""

    name: str
    table: str
    fingerprint: str
    keys: list[tuple[str, str]]  # (id, hash) of every pool row, in pool order
    todo: list[int]  # pool positions that need a vector
    batches: list[list[int]]  # this rank's batches, as pool positions
    stored_schema: pa.Schema | None
    stored_rows: int
    ranks: Ranks = field(default_factory=Ranks)
    started: float = field(default_factory=time.perf_counter)

    @property
    def rows_here(self) -> int:
        """Rows this rank will embed."""
        return sum(len(b) for b in self.batches)


def plan_embedding(
    store: Store, embedder: Embedder, name: str | None = None, batch_size: int | None = None
) -> EmbedPlan:
    started = time.perf_counter()
    name = check_name(name or default_name(embedder.spec))
    store.require_pool()  # raises PoolError when there is no pool table
    pool = store.read_pool(["id", "hash", "n_chars"])
    if pool.num_rows == 0:
        raise PoolError(f"the pool in {store.path} is empty; add rows with `curate ingest SOURCE`")
    keys = list(zip(pool["id"].to_pylist(), pool["hash"].to_pylist(), strict=True))
    table = store.embedding_table(name)
    schema, stored_rows, valid = store.embeddings_schema(name), 0, set()
    held = set() if schema is None else set(score_columns(schema))
    stored_scores = set(embedder.score_columns) <= held
    if set(embedder.score_columns) & held and not embedder.with_scores:
        embedder.with_scores = True  # a table with scores stays whole: new rows get them too
    if schema is not None:
        stored = store.read_embeddings(name, ["id", "hash", "fingerprint"])
        stored_rows = stored.num_rows
        rescore = embedder.with_scores and not stored_scores  # every row again, with scores
        valid = (
            set()
            if rescore
            else {
                (i, h)
                for i, h, fp in zip(
                    *(stored[c].to_pylist() for c in ("id", "hash", "fingerprint")), strict=True
                )
                if fp == embedder.fingerprint
            }
        )
    todo = [pos for pos, key in enumerate(keys) if key not in valid]
    lengths = pool["n_chars"].to_pylist()
    ranks = Ranks.from_env()
    batches = embedder.plan_batches([{"n_chars": lengths[p]} for p in todo], batch_size)
    mine = [[todo[i] for i in batch] for batch in batches[ranks.rank :: ranks.world]]
    return EmbedPlan(
        name, table, embedder.fingerprint, keys, todo, mine, schema, stored_rows, ranks, started
    )


def run_embedding(
    store: Store,
    embedder: Embedder,
    plan: EmbedPlan,
    progress: Progress = NO_PROGRESS,
    checkpoint_seconds: float = 5.0,
) -> EmbedReport:
    """Embed the rows ``plan`` lists (``progress`` counts them, once the model is loaded and
    the table's shape checked) and leave one current vector per pool row."""
    ranks = plan.ranks
    report = EmbedReport(
        plan.name,
        plan.table,
        embedder.spec,
        plan.fingerprint,
        _stored_dim(plan.stored_schema),
        len(plan.keys),
        reused=len(plan.keys) - len(plan.todo),
        ranks=ranks.world,
    )
    try:
        if plan.todo:
            schema = check_compatible(store, plan, embedder)
            report.dim = embedder.dim
            progress.start(plan.rows_here, "rows", f"embed {plan.name}")
            ranks.barrier()  # every rank has read the table before rank 0 (re)creates it
            with _writer_lock(store, ranks, plan.name):
                if ranks.is_main and plan.stored_schema != schema:
                    store.create_embeddings(plan.name, schema)
                ranks.barrier()
                done = _embed_batches(store, embedder, plan, schema, progress, checkpoint_seconds)
                ranks.barrier()
                report.embedded_per_rank = ranks.gather(done)
                report.embedded = sum(report.embedded_per_rank)
                if ranks.is_main:
                    report.removed = _finalise(store, plan, appended=True)
                ranks.barrier()
        else:
            if ranks.is_main:
                report.removed = _finalise(store, plan, appended=False)
            ranks.barrier()
    finally:
        ranks.close()
    report.seconds = time.perf_counter() - plan.started
    report.precision, report.padding = embedder.precision, embedder.padding.fraction
    return report


# ---------------------------------------------------------------------------- helpers
@contextmanager
def _writer_lock(store: Store, ranks: Ranks, name: str) -> Iterator[None]:
    """Hold the database's writer lock for a run's writes. Under torchrun only rank 0 takes
    it; the other ranks write under it and learn from rank 0 whether it was granted."""
    with ExitStack() as stack:
        refused: ConflictError | None = None
        if ranks.is_main:
            try:
                stack.enter_context(store.writing(f"embed {name!r}"))
            except ConflictError as err:
                refused = err
        else:
            stack.enter_context(store.covered())
        granted = ranks.gather(int(refused is None))[0]
        if refused is not None:
            raise refused
        if not granted:
            raise ConflictError(f"{store.path}: rank 0 could not take the writer lock")
        yield


def _embed_batches(store, embedder, plan, schema, progress, checkpoint_seconds) -> int:
    """Embed this rank's batches, appending at checkpoints; returns rows embedded."""
    if not plan.batches:
        return 0
    pending: list[pa.Table] = []
    last_commit = time.monotonic()
    done = 0
    for rows in _batch_rows(store.pool_reader(), plan.batches):
        result = embedder.embed_batch(rows)
        if set(result.scores) != set(embedder.batch_scores):
            raise EmbeddingError(
                f"{embedder.spec} returned the scores {', '.join(result.scores) or 'none'}, "
                f"not the {', '.join(embedder.batch_scores) or 'none'} it declares"
            )
        ids = [r["id"] for r in rows]
        finite = np.isfinite(result.vectors).all(axis=1)
        for values in result.scores.values():
            finite &= np.isfinite(values)
        bad = np.flatnonzero(~finite)
        if bad.size:
            raise EmbeddingError(
                f"{embedder.spec} produced NaN/inf vectors or scores for {bad.size} rows "
                f"({_some([ids[i] for i in bad])})"
            )
        pending.append(
            _arrow_rows(
                schema,
                ids,
                [r["hash"] for r in rows],
                plan.fingerprint,
                result.vectors,
                result.scores,
            )
        )
        done += len(rows)
        if time.monotonic() - last_commit >= checkpoint_seconds:
            store.append_embeddings(plan.name, pa.concat_tables(pending))
            pending, last_commit = [], time.monotonic()
        progress.advance(len(rows))
    if pending:
        store.append_embeddings(plan.name, pa.concat_tables(pending))
    return done


def _batch_rows(reader: PoolReader, batches: list[list[int]]) -> Iterator[list[dict[str, Any]]]:
    """Each batch's pool rows, read from the store a group of batches (about
    :data:`READ_ROWS` rows) at a time: batches are length-sorted across the whole pool, and
    a million rows of text as Python dicts would be gigabytes."""
    group: list[list[int]] = []
    grouped = 0
    for end, batch in enumerate(batches, 1):
        group.append(batch)
        grouped += len(batch)
        if grouped >= READ_ROWS or end == len(batches):
            rows = iter(reader.rows([p for b in group for p in b], ROW_COLUMNS).to_pylist())
            yield from ([next(rows) for _ in b] for b in group)
            group, grouped = [], 0


def _finalise(store: Store, plan: EmbedPlan, appended: bool) -> int:
    """Leave exactly one current vector per pool row; returns the rows dropped. Reads and
    rewrites under the writer lock only when something is to be written, so a rerun that
    finds every vector current never waits for another writer."""
    if not appended and _current(store, plan):
        return 0
    with store.writing(f"embed {plan.name!r}"):
        return _rewrite(store, plan, appended)


def _current(store: Store, plan: EmbedPlan) -> bool:
    """Whether the table holds exactly one current vector per pool row and nothing else."""
    stored = store.read_embeddings(plan.name, ["id", "hash", "fingerprint"])
    keys = list(zip(stored["id"].to_pylist(), stored["hash"].to_pylist(), strict=True))
    return (
        len(keys) == len(plan.keys)
        and all(fp == plan.fingerprint for fp in stored["fingerprint"].to_pylist())
        and set(keys) == set(plan.keys)
    )


def _grace(plan: EmbedPlan) -> timedelta:
    """How long the versions before this compaction stay readable. A run that started
    from no stored row leaves no version a reader can use (a table missing rows is refused),
    so its checkpoint versions go at once; otherwise a reader of the version before the run
    keeps its files for :data:`VERSION_GRACE`, and with them every checkpoint's (each
    checkpoint version lists every fragment before it: a 1M-row run kept 985 data files,
    twice the table on disk, until the next write after the grace)."""
    return timedelta(0) if plan.stored_rows == 0 else VERSION_GRACE


def _rewrite(store: Store, plan: EmbedPlan, appended: bool) -> int:
    if _current(store, plan):
        if appended:
            store.compact_embeddings(plan.name, _grace(plan))  # merge the checkpoint fragments
        return 0
    full = store.read_embeddings(plan.name)
    first: dict[tuple[str, str], int] = {}  # (id, hash) -> first current row holding it
    columns = (full[c].to_pylist() for c in ("id", "hash", "fingerprint"))
    for row, (id_, hash_, fp) in enumerate(zip(*columns, strict=True)):
        if fp == plan.fingerprint:
            first.setdefault((id_, hash_), row)
    lacking = [k[0] for k in plan.keys if k not in first]
    if lacking:
        raise EmbeddingError(
            f"{len(lacking)} pool rows still lack a vector in {plan.name!r} ({_some(lacking)}); "
            "was the pool changed during the run? rerun `curate embed`"
        )
    order = pa.array([first[k] for k in plan.keys], pa.int64())
    store.replace_embeddings(plan.name, full.take(order))
    return full.num_rows - len(plan.keys)


def check_compatible(store: Store, plan: EmbedPlan, embedder: Embedder) -> pa.Schema:
    """The table schema ``embedder`` writes; an existing, non-empty table must already have
    it (a different dimension under the same name is an error, and nothing is changed),
    except that a table without scores is rebuilt with them when they are asked for (the
    plan then embeds every row). Loads the model when its dimension is not known yet."""
    schema = embedding_schema(embedder.dim, embedder.batch_scores)
    if plan.stored_schema is None or plan.stored_schema == schema or plan.stored_rows == 0:
        return schema
    if embedder.with_scores and embedding_schema(embedder.dim) == _vectors_only(plan.stored_schema):
        return schema  # rebuilt with every score column (the plan embeds every row)
    raise EmbeddingError(
        _mismatch(plan.name, plan.stored_schema, embedder.dim, embedder.batch_scores, store.path)
    )


def _mismatch(name: str, stored: pa.Schema, dim: int, scores: tuple[str, ...], db: Path) -> str:
    stored_dim, stored_scores = _stored_dim(stored), score_columns(stored)
    if stored_dim != dim:
        what = f"{stored_dim}-d vectors, the new ones are {dim}-d"
    elif bool(stored_scores) != bool(scores):
        had, has = ("with", "without") if stored_scores else ("without", "with")
        what = f"vectors {had} score columns, the new ones come {has}"
    else:
        what = f"columns {', '.join(stored.names)}"
    return (
        f"embeddings {name!r} in {db} hold {what}; choose another {param('name')} "
        "(nothing was changed)"
    )


def _vectors_only(schema: pa.Schema) -> pa.Schema:
    scores = score_columns(schema)
    return pa.schema([f for f in schema if f.name not in scores])


def _stored_dim(schema: pa.Schema | None) -> int:
    return 0 if schema is None else schema.field("vector").type.list_size


def _arrow_rows(schema, ids, hashes, fingerprint, vectors, scores) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    columns = {
        "id": pa.array(ids, pa.string()),
        "hash": pa.array(hashes, pa.string()),
        "fingerprint": pa.array([fingerprint] * len(ids), pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
    }
    for col in score_columns(schema):
        columns[col] = pa.array(np.asarray(scores[col], dtype=np.float32))
    return pa.table(columns, schema=schema)


def _some(values: list[str], n: int = 5) -> str:
    return ", ".join(str(v) for v in values[:n]) + (", ..." if len(values) > n else "")
