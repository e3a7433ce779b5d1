"""``curate eval model``: held-out NLL, optional generation and optional judging.

Everything that can fail cheaply (eval file, model folder, judge endpoint, output
folder) is checked before the model is loaded. Results are written only at the end, each
file atomically, so a failure leaves earlier results untouched; judge replies already
received stay in the judge cache.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision
from curate.errors import EvalError, ModelError
from curate.evaluation import results
from curate.evaluation.endpoints import redact
from curate.evaluation.eval_sets import EvalSet, load_eval_set
from curate.evaluation.judge import ChatClient, Pair, judge_pairs
from curate.evaluation.results import ModelEvalResult
from curate.progress import NO_PROGRESS, Progress
from curate.prompts import TEMPLATE_VERSION

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


@dataclass
class JudgeSettings:
    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    against: Path | None = None  # another model's answers file; default: the references
    timeout_s: float = 60.0
    workers: int = 4
    max_retries: int = 5

    def client(self) -> ChatClient:
        return ChatClient(
            self.url,
            self.model,
            api_key=os.environ.get(self.api_key_env) or None,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
        )


@dataclass
class ModelEvalSettings:
    limit: int | None = None
    max_length: int = 1024
    batch_size: int = 4
    device: str = DEFAULT_DEVICE
    generate: bool = False
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    judge: JudgeSettings | None = None
    precision: Precision = DEFAULT_PRECISION  # bf16: the model's weights loaded in bf16


def check_model_folder(spec: str) -> None:
    """A clear error for a folder that is not (or not yet) a trained model."""
    path = Path(spec)
    if not path.exists():
        if path.parent != Path(".") and path.parent.is_dir():
            raise ModelError(f"{spec}: no such model folder")
        return  # a Hub id or alias: the loader reports it
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec}: not a model folder (no config.json)")
        if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
            raise ModelError(f"{spec}: model folder has no weights (*.safetensors or *.bin)")


def _opponents(eval_set: EvalSet, against: Path | None) -> list[str]:
    if against is None:
        missing = [item.id for item in eval_set.items if not item.reference]
        if missing:
            raise EvalError(
                f"{eval_set.path}: questions {', '.join(missing[:5])} have no reference answer "
                "to judge against; pass --judge-against ANSWERS.jsonl"
            )
        return [item.reference or "" for item in eval_set.items]
    other = {item.id: item.reference for item in load_eval_set(against, need_reference=True).items}
    missing = [item.id for item in eval_set.items if item.id not in other]
    if missing:
        raise EvalError(f"{against}: no answers for questions {', '.join(missing[:5])}")
    return [other[item.id] or "" for item in eval_set.items]


def evaluate_model(
    model_spec: str,
    eval_set_path: str | Path,
    settings: ModelEvalSettings,
    out: Path | None = None,
    progress: Progress = NO_PROGRESS,
) -> ModelEvalResult:
    """Score a model on an eval set; returns (metrics, details) and writes them to ``out``."""
    from curate.evaluation.generate import generate_answers
    from curate.evaluation.nll import answer_nll
    from curate.models import load_causal_lm, resolve_device, resolve_precision, torch_dtype
    from curate.prompts import PaddingCount

    eval_set = load_eval_set(eval_set_path, settings.limit, need_reference=not settings.generate)
    has_references = all(item.reference for item in eval_set.items)
    judge = settings.judge
    if judge is not None and not settings.generate:
        raise EvalError("judging needs answers to judge: add --generate")
    opponents = _opponents(eval_set, judge.against) if judge is not None else []
    client = judge.client() if judge is not None else None
    if client is not None:
        client.check_reachable()
    if (settings.generate or judge is not None) and out is None:
        raise EvalError(
            "--generate and --judge write answers beside the metrics: pass --out F.json"
        )
    check_model_folder(model_spec)

    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    model, tokenizer = load_causal_lm(model_spec, device, torch_dtype(precision))
    padding = PaddingCount()
    rows = [item.as_row(item.reference) for item in eval_set.items]
    questions: list[dict[str, Any]] = [
        {"id": item.id, "category": item.category} for item in eval_set.items
    ]
    metrics: dict[str, Any] = {"questions": len(eval_set.items), "precision": precision}
    if has_references:
        progress.start(len(rows), "questions", "nll")
        scored = answer_nll(
            model,
            tokenizer,
            rows,
            settings.max_length,
            settings.batch_size,
            progress=progress,
            names=eval_set.ids,
            padding=padding,
        )
        for row, score in zip(questions, scored, strict=True):
            row.update(nll=score.nll, tokens=score.tokens, truncated=score.truncated)
            if not score.tokens:  # the prompt alone fills --max-length: skipped, counted
                row.update(nll=None, skipped=True)
        kept = [s for s in scored if s.tokens]
        if not kept:
            raise EvalError(
                f"every question's prompt fills --max-length {settings.max_length}, no answer "
                "token is left to score; raise --max-length"
            )
        nll = sum(s.nll for s in kept) / len(kept)
        tokens = sum(s.tokens for s in kept)
        metrics.update(
            nll=nll,
            ppl=math.exp(nll),
            nll_token=sum(s.nll * s.tokens for s in kept) / tokens,
            answer_tokens=tokens,
            truncated=sum(s.truncated for s in scored),
            skipped=len(scored) - len(kept),
            padding_fraction=padding.fraction,
        )
    answers: list[str] = []
    if settings.generate:
        progress.start(len(rows), "questions", "generate")
        answers = generate_answers(
            model,
            tokenizer,
            rows,
            settings.max_new_tokens,
            settings.temperature,
            settings.batch_size,
            settings.seed,
            progress=progress,
        )
    if client is not None and judge is not None and out is not None:
        pairs = [
            Pair(item.id, item.question, answer, opponent)
            for item, answer, opponent in zip(eval_set.items, answers, opponents, strict=True)
        ]
        progress.start(2 * len(pairs), "replies", "judge")
        report = judge_pairs(client, pairs, results.judge_cache_path(out), judge.workers, progress)
        for row, verdict in zip(questions, report.questions, strict=True):
            row["judge"] = {k: v for k, v in verdict.items() if k != "id"}
        metrics["judge"] = {**report.metrics(), "asked": report.asked, "cached": report.cached}
    details = {
        "model": model_spec,
        "eval_set": str(eval_set.path),
        "eval_set_sha256": eval_set.sha256,
        "template": TEMPLATE_VERSION,
        "max_length": settings.max_length,
        "precision": precision,
        "generation": (
            {
                "max_new_tokens": settings.max_new_tokens,
                "temperature": settings.temperature,
                "seed": settings.seed,
            }
            if settings.generate
            else None
        ),
        "judge": {"url": redact(judge.url), "model": judge.model} if judge is not None else None,
        "questions": questions,
    }
    if out is not None:
        if answers:
            results.write_jsonl(
                results.answers_path(out),
                (
                    {
                        "id": item.id,
                        "instruction": item.question,
                        "answer": answer,
                        "model": model_spec,
                    }
                    for item, answer in zip(eval_set.items, answers, strict=True)
                ),
            )
        write_metrics(out, metrics, details)
    return ModelEvalResult(metrics, details)


def write_metrics(out: Path, metrics: dict[str, Any], details: dict[str, Any]) -> None:
    """Details first, metrics last: a metrics file always has its details beside it."""
    results.check_scalars(metrics)
    results.write_json(results.details_path(out), details)
    results.write_json(out, metrics)
