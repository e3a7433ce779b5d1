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

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision, parse_precision
from curate.errors import UsageError
from curate.paths import DEFAULT_DB
from curate.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from curate.embed import EmbedReport, EmbedSkipped
    from curate.evaluation.results import ModelEvalResult
    from curate.hygiene.decontaminate import DecontaminateReport
    from curate.hygiene.dedup import DedupReport
    from curate.ingest import IngestReport
    from curate.subsets import Subset
    from curate.training import TrainResult


class Pool:
    """A pool of instruction/response examples in a LanceDB folder, and its embeddings."""

    def __init__(self, db: str | Path = DEFAULT_DB):
        from curate.store import Store

        self.store = Store(_path(db, "db"))

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
        device: str = DEFAULT_DEVICE,
        precision: Precision = DEFAULT_PRECISION,
        batch_size: int | None = None,
        scores: bool = False,
        import_file: str | Path | None = None,
        for_strategy: str | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> EmbedReport | EmbedSkipped:
        """Give every row a vector from ``embedder`` (default: all-MiniLM-L6-v2, int8
        weights under OpenVINO; ``lm:PATH`` is DiverseEvol's mean last hidden state), cached by model and row. ``precision``
        ``auto`` computes ``lm:`` vectors in bf16 where the device does so natively;
        ``scores`` stores the embedder's score columns too (``lm:``'s uncertainty and IFD
        scores, which the uncertainty and IFD strategies read). ``import_file`` takes vectors computed elsewhere instead; ``for_strategy``
        embeds only if that strategy reads vectors or scores (as ``curate embed``)."""
        from curate.embed import embed

        _check_args(
            embedder=(embedder, str | None), name=(name, str | None), max_length=(max_length, int),
            device=(device, str), precision=(precision, str), batch_size=(batch_size, int | None),
            scores=(scores, bool), for_strategy=(for_strategy, str | None),
        )  # fmt: skip
        if max_length < 1 or (batch_size is not None and batch_size < 1):
            raise UsageError("max_length and batch_size must be positive integers")
        return embed(
            self.store,
            embedder,
            name,
            import_file=None if import_file is None else _path(import_file, "import_file"),
            for_strategy=for_strategy,
            max_length=max_length,
            device=device,
            precision=parse_precision(precision),
            batch_size=batch_size,
            scores=scores,
            progress=progress,
        )

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
        device: str = DEFAULT_DEVICE,
        whole_pool: bool = False,
        include_duplicates: bool = False,
        include_contaminated: bool = False,
        embed_missing: bool = True,
        progress: Progress = NO_PROGRESS,
    ) -> Subset | None:
        """Choose ``budget`` examples (or the parent's plus ``add``) in memory; the subset is
        written by :func:`write_subset`. Rows flagged by a current ``curate dedup`` or
        ``curate decontaminate`` result are left out unless ``include_duplicates`` /
        ``include_contaminated``; a stale result is not used and named in ``warnings``.
        With ``embed_missing`` (the default, as ``curate select``), a strategy that reads
        vectors on a pool with no embeddings at all first embeds it with the default
        embedder, written to the pool's database like :meth:`embed`; pass False to get an
        error instead and write nothing. Under torchrun the vectors are sharded over the
        ranks: rank 0 gets the subset, the other ranks None."""
        from curate.select import SelectRequest, select

        request = SelectRequest(
            strategy=strategy,
            params=dict(params) if isinstance(params, Mapping) else params or {},
            budget=budget,
            add=add,
            embeddings=embeddings,
            parent=Path(parent) if isinstance(parent, str | Path) else parent,
            seed=seed,
            name=name,
            device=device,
            whole_pool=whole_pool,
            include_duplicates=include_duplicates,
            include_contaminated=include_contaminated,
        )
        _check_args(embed_missing=(embed_missing, bool))
        return select(self.store, request, progress, embed_missing=embed_missing)

    def dedup(self, progress: Progress = NO_PROGRESS, **settings: Any) -> DedupReport:
        """Store the pool's near-duplicate groups (``settings``: :class:`DedupSettings`
        fields: method, threshold, keep, ...); :meth:`select` then leaves them out."""
        from curate.hygiene.dedup import DedupSettings, dedup

        return dedup(self.store, DedupSettings(**settings), progress)

    def decontaminate(
        self, *against: str | Path, progress: Progress = NO_PROGRESS, **settings: Any
    ) -> DecontaminateReport:
        """Store the pool rows that overlap the eval sets ``against`` (``settings``: ngram,
        min_overlap, fields); :meth:`select` then leaves them out."""
        from curate.hygiene.decontaminate import DecontaminateSettings, decontaminate

        request = DecontaminateSettings(tuple(str(a) for a in against), **settings)
        return decontaminate(self.store, request, progress)

    def summary(self) -> dict[str, Any]:
        """Rows, sources, categories, duplicates dropped, length percentiles, version."""
        from curate.pool import summarize

        return summarize(self.store)


def write_subset(selection: Subset, out: str | Path | None = None, force: bool = False) -> Subset:
    """Write a selection as a subset folder (``examples.jsonl`` + ``manifest.json``),
    atomically; a different subset already at ``out`` is replaced only with ``force``."""
    from curate.subsets import Subset

    if not isinstance(selection, Subset):
        raise UsageError(f"write_subset takes what Pool.select returns, not {selection!r}")
    _check_args(force=(force, bool))
    return selection.write(None if out is None else _path(out, "out"), force=force)


def load_subset(path: str | Path) -> Subset:
    """Read and verify a subset folder."""
    from curate.subsets import load_subset as load

    return load(_path(path, "path"))


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
    with the command line's defaults."""
    from curate.training import TrainConfig
    from curate.training import train as run

    path = _path(getattr(subset, "path", subset), "subset")
    _check_args(base_model=(base_model, str), resume=(resume, bool))
    config = _settings(TrainConfig, {"base_model": base_model, **options})
    return run(path, _path(out, "out"), config, resume=resume, progress=progress)


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

    out = _path(out, "out") if out is not None else None
    checked = _settings(ModelEvalSettings, settings)
    return evaluate_model(
        str(_path(model, "model")), _path(eval_set, "eval_set"), checked, out, progress
    )


# ----------------------------------------------------------------------------- arguments
# Wrong types fail here as UsageError (a CurateError, exit 2), with the argument named,
# instead of as a TypeError or AttributeError from deep inside.


def _path(value: Any, what: str) -> Path:
    if isinstance(value, str | Path) and str(value):
        return Path(value)
    raise UsageError(f"{what} must be a path (str or Path), not {value!r}")


def _matches(value: Any, kind: Any) -> bool:
    kinds = typing.get_args(kind) or (kind,)
    for k in kinds:
        if k is type(None) and value is None:
            return True
        if k is bool and isinstance(value, bool):
            return True
        if k in (int, float) and isinstance(value, bool):
            continue  # a bool is not a number
        if k is float and isinstance(value, int | float):
            return True
        if isinstance(k, type) and k is not type(None) and isinstance(value, k):
            return True
    return False


def _check_args(**values: tuple[Any, Any]) -> None:
    for name, (value, kind) in values.items():
        if not _matches(value, kind):
            raise UsageError(f"{name} must be {_kind_name(kind)}, not {value!r}")


def _kind_name(kind: Any) -> str:
    names = [getattr(k, "__name__", str(k)) for k in (typing.get_args(kind) or (kind,))]
    return " or ".join("None" if n == "NoneType" else n for n in names)


def _settings(cls: type, values: Mapping[str, Any]) -> Any:
    """``cls(**values)`` for a settings dataclass, each value checked against its field's
    type first; an unknown name lists the known ones."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    for name, value in values.items():
        kind = hints[name]
        if typing.get_origin(kind) is typing.Literal and value not in typing.get_args(kind):
            choices = ", ".join(map(str, typing.get_args(kind)))
            raise UsageError(f"{name} {value!r}: choose from {choices}")
        simple = all(
            k in (int, float, str, bool, type(None)) for k in typing.get_args(kind) or (kind,)
        )
        if simple and not _matches(value, kind):
            raise UsageError(f"{name} must be {_kind_name(kind)}, not {value!r}")
    return cls(**values)
