"""``curate eval round``: one pipeline round's subset and model in one metrics file.

The file holds the subset's diversity (``n``, ``vendi``, ``coverage_radius``, …) and the
model's held-out NLL (``nll``, ``ppl``, …) as scalars for ``dvc metrics``; per-question
values and provenance go to the sibling details file, so rounds and runs can be
compared with ``curate eval compare``.
"""

from __future__ import annotations

from pathlib import Path

from curate.evaluation.diversity import evaluate_subset
from curate.evaluation.model_eval import ModelEvalSettings, evaluate_model, write_metrics
from curate.evaluation.results import ModelEvalResult
from curate.progress import NO_PROGRESS, Progress
from curate.store import Store
from curate.subsets import load_subset


def evaluate_round(
    store: Store,
    subset_dir: str | Path,
    model_spec: str,
    embeddings: str | None,
    eval_set_path: str | Path,
    settings: ModelEvalSettings,
    out: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> ModelEvalResult:
    subset = load_subset(subset_dir)
    diversity = evaluate_subset(store, subset_dir, embeddings)  # cheap: fail before the model
    model_metrics, details = evaluate_model(model_spec, eval_set_path, settings, None, progress)
    metrics = {**diversity, **model_metrics}
    details = {
        "subset": str(subset.path),
        "subset_name": subset.name,
        "subset_manifest_sha256": subset.manifest_sha256,
        **details,
    }
    if out is not None:
        write_metrics(out, metrics, details)
    return ModelEvalResult(metrics, details)
