"""``curate embed``: one orchestration, :func:`embed`, called alike by the command line, the
Python API (:meth:`curate.Pool.embed`) and ``curate select`` (which embeds a pool that has
no embeddings only when asked to).

:func:`embed` decides what a run is: import vectors from a file
(:mod:`curate.embed.imports`), skip because the strategy it is run for reads no vectors,
or embed with a model (:mod:`curate.embed.run`: the cache, checkpoints and ranks).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision
from curate.embed.imports import import_vectors
from curate.embed.run import (
    EmbedPlan,
    EmbedReport,
    check_compatible,
    plan_embedding,
    run_embedding,
)
from curate.embedders.base import Embedder
from curate.errors import EmbeddingError, UsageError
from curate.progress import NO_PROGRESS, Progress
from curate.store import Store, embedding_schema

__all__ = [
    "EmbedPlan",
    "EmbedReport",
    "EmbedSkipped",
    "check_compatible",
    "embed",
    "import_vectors",
    "plan_embedding",
    "run_embedding",
    "strategy_reads_embeddings",
]


@dataclass
class EmbedSkipped:
    """A run that embedded nothing because ``strategy`` reads neither vectors nor scores."""

    name: str
    strategy: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "skipped": True, "strategy": self.strategy}


def strategy_reads_embeddings(strategy: str) -> bool:
    """Whether the selection strategy ``strategy`` reads vectors or scores."""
    from curate.strategies import STRATEGIES

    cls = STRATEGIES.get(strategy)
    return bool(cls.needs_vectors or cls.reads_scores)


def embed(
    store: Store,
    embedder: str | Embedder | None = None,
    name: str | None = None,
    *,
    import_file: str | Path | None = None,
    for_strategy: str | None = None,
    max_length: int = 512,
    device: str = DEFAULT_DEVICE,
    precision: Precision = DEFAULT_PRECISION,
    batch_size: int | None = None,
    scores: bool = False,
    progress: Progress = NO_PROGRESS,
    loading: Callable[[str], AbstractContextManager[Any]] | None = None,
    checkpoint_seconds: float = 5.0,
) -> EmbedReport | EmbedSkipped:
    """Make sure every pool row has a current vector under ``name``; see
    :mod:`curate.embed.run` for the cache, resume and ranks.

    ``embedder`` is a spec (default: :data:`curate.embedders.DEFAULT_SPEC`) loaded with
    ``max_length``, ``device``, ``precision`` and ``scores``, or an :class:`Embedder` already
    built (those four are then its own). ``import_file`` replaces the table with vectors
    computed elsewhere instead (no ``embedder`` then). ``for_strategy``: when that strategy
    reads no vectors, nothing is embedded and no model loaded; the table is created empty
    if missing (a pipeline stage declares it as its output) and :class:`EmbedSkipped` is
    returned; when it reads scores (its ``reads_scores``), ``scores`` is implied and the
    embedder must compute every one of them. Under ``torchrun`` every rank
    calls this and gets the report; only rank 0 reports ``progress`` and enters
    ``loading(spec)`` around the model load (the command line shows a spinner there)."""
    from curate.embedders import DEFAULT_SPEC, load_embedder
    from curate.embedders.registry import check_name, default_name

    if import_file is not None and embedder is not None:
        raise UsageError("give either embedder or import_file, not both")
    if for_strategy is not None:
        if not strategy_reads_embeddings(for_strategy):  # an unknown strategy fails here
            spec = embedder.spec if isinstance(embedder, Embedder) else embedder or DEFAULT_SPEC
            skipped = name or default_name(spec)
            store.require_pool()  # a missing pool is still an error
            store.ensure_embeddings(check_name(skipped), embedding_schema(1))
            return EmbedSkipped(skipped, for_strategy)
    if import_file is not None:
        return import_vectors(store, import_file, name)
    reads: tuple[str, ...] = ()
    if for_strategy is not None:
        from curate.strategies import STRATEGIES

        reads = STRATEGIES.get(for_strategy).reads_scores
        scores = scores or bool(reads)
    if isinstance(embedder, Embedder):
        model = embedder
        if scores:
            model.require_scores(model.spec)
        model.with_scores = model.with_scores or scores
    else:
        model = load_embedder(embedder or DEFAULT_SPEC, max_length, device, precision, scores)
    lacking = [c for c in reads if c not in model.score_columns]
    if lacking:  # before any model loads: this table could never serve the strategy
        raise EmbeddingError(
            f"strategy {for_strategy!r} reads the {', '.join(map(repr, lacking))} "
            f"score{'s' if len(lacking) > 1 else ''}, which {model.spec} does not compute "
            f"(it computes {', '.join(model.score_columns)})"
        )
    plan = plan_embedding(store, model, name, batch_size)
    if not plan.ranks.is_main:  # only rank 0 reports progress
        return run_embedding(store, model, plan, checkpoint_seconds=checkpoint_seconds)
    if not plan.rows_here:
        return run_embedding(store, model, plan, checkpoint_seconds=checkpoint_seconds)
    with (loading or nullcontext)(model.spec):
        model.load()
    check_compatible(store, plan, model)  # fail before progress starts
    return run_embedding(store, model, plan, progress, checkpoint_seconds)
