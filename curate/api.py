"""The Python API: the command line's verbs as calls, for notebooks and scripts.

Everything here is importable from ``curate`` itself (lazily, so ``import curate`` stays
cheap)::

    import curate

    pool = curate.Pool("data/lancedb")
    pool.ingest("data/sample/pool.jsonl")
    selection = pool.select(budget=20, strategy="kcenter", params={"metric": "cosine"})
    subset = curate.write_subset(selection, "data/subsets/kc-20")

Each call returns a result object with ``to_dict()``; errors are
:class:`curate.errors.CurateError` subclasses whose message is the one line the command
line prints. Long calls take ``progress``: anything with ``start(total, unit, label)`` and
``advance(n)`` (:mod:`curate.progress`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.paths import DEFAULT_DB
from curate.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from curate.embed import EmbedReport
    from curate.evaluation.results import ModelEvalResult
    from curate.ingest import IngestReport
    from curate.select import SubsetSelection
    from curate.subsets import Subset
    from curate.training import TrainResult


class Pool:
    """A pool of instruction/response examples in a LanceDB folder, and its embeddings."""

    def __init__(self, db: str | Path = DEFAULT_DB):
        from curate.store import Store

        self.store = Store(db)

    @property
    def path(self) -> Path:
        return self.store.path

    def __len__(self) -> int:
        return self.store.pool_count()

    def __repr__(self) -> str:
        return f"Pool({str(self.path)!r})"

    def ingest(
        self,
        *sources: str | Path,
        format: str = "auto",
        source_name: str | None = None,
        skip_invalid: bool = False,
        rejects: str | Path | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> IngestReport:
        """Add the examples of ``sources`` (files, folders or ``hf://`` datasets), deduplicated,
        in one all-or-nothing append."""
        from curate.ingest import ingest

        sources_ = [str(s) for s in sources]
        return ingest(
            self.store, sources_, format, source_name, skip_invalid, rejects, progress=progress
        )

    def embed(
        self,
        embedder: str | None = None,
        name: str | None = None,
        *,
        max_length: int = 512,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        scores: bool = False,
        progress: Progress = NO_PROGRESS,
    ) -> EmbedReport:
        """Give every row a vector from ``embedder`` (default: all-MiniLM-L6-v2; ``lm:PATH``
        is DiverseEvol's mean last hidden state), cached by model and row. ``precision``
        ``auto`` computes ``lm:`` vectors in bf16 where the device does so natively;
        ``scores`` stores ``lm:``'s uncertainty scores too (the uncertainty strategies read
        them)."""
        from curate.embed import plan_embedding, run_embedding
        from curate.embedders import DEFAULT_SPEC, load_embedder

        model = load_embedder(embedder or DEFAULT_SPEC, max_length, device, precision, scores)
        plan = plan_embedding(self.store, model, name, batch_size)
        return run_embedding(self.store, model, plan, progress)

    def select(
        self,
        budget: int | None = None,
        *,
        add: int | None = None,
        strategy: str = "kcenter",
        params: Mapping[str, Any] | None = None,
        embeddings: str | None = None,
        parent: str | Path | None = None,
        seed: int = 0,
        name: str | None = None,
        device: str = "auto",
        whole_pool: bool = False,
        progress: Progress = NO_PROGRESS,
    ) -> SubsetSelection:
        """Choose ``budget`` examples (or the parent's plus ``add``) in memory; nothing is
        written until :func:`write_subset`."""
        from curate.select import SelectRequest, select

        request = SelectRequest(
            strategy=strategy,
            params=dict(params or {}),
            budget=budget,
            add=add,
            embeddings=embeddings,
            parent=Path(parent) if parent is not None else None,
            seed=seed,
            name=name,
            device=device,
            whole_pool=whole_pool,
        )
        return select(self.store, request, progress)

    def summary(self) -> dict[str, Any]:
        """Rows, sources, categories, duplicates dropped, length percentiles, version."""
        from curate.pool import summarize

        return summarize(self.store)


def write_subset(
    selection: SubsetSelection, out: str | Path | None = None, force: bool = False
) -> Subset:
    """Write a selection as a subset folder (``examples.jsonl`` + ``manifest.json``),
    atomically; a different subset already at ``out`` is replaced only with ``force``."""
    return selection.write(out, force=force)


def load_subset(path: str | Path) -> Subset:
    """Read and verify a subset folder."""
    from curate.subsets import load_subset as load

    return load(path)


def train(
    subset: str | Path | Subset,
    base_model: str,
    out: str | Path,
    *,
    resume: bool = False,
    progress: Progress = NO_PROGRESS,
    **options: Any,
) -> TrainResult:
    """Fine-tune ``base_model`` (``smollm2``, a folder or a Hub id) on a subset from the base
    weights; ``options`` are :class:`curate.training.TrainConfig` fields (epochs, lr, ...),
    with ``precision="auto"`` as on the command line."""
    from curate.training import TrainConfig
    from curate.training import train as run

    path = getattr(subset, "path", subset)
    config = TrainConfig(base_model=base_model, **{"precision": "auto", **options})
    return run(path, out, config, resume=resume, progress=progress)


def evaluate(
    model: str | Path,
    eval_set: str | Path,
    *,
    out: str | Path | None = None,
    progress: Progress = NO_PROGRESS,
    **settings: Any,
) -> ModelEvalResult:
    """Held-out answer NLL (and generation, judging) of a model on an eval set; ``settings``
    are :class:`curate.evaluation.model_eval.ModelEvalSettings` fields."""
    from curate.evaluation.model_eval import ModelEvalSettings, evaluate_model

    out = Path(out) if out is not None else None
    settings = ModelEvalSettings(**{"precision": "auto", **settings})
    return evaluate_model(str(model), eval_set, settings, out, progress)
