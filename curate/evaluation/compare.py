"""Paired comparison of two models (or two sets of runs) question by question.

The CI comes from a paired bootstrap over questions with a fixed seed: each replicate
draws questions with replacement and takes the mean difference on the same questions.
With several runs per side (different seeds), each replicate also draws runs with
replacement on each side, so the interval covers seed-to-seed variation as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import EvalError
from curate.evaluation.results import details_path, read_json

# metric → (how to read it from a details question row, whether lower is better)
PER_QUESTION = {
    "nll": (lambda q: q.get("nll"), True),
    "judge_score": (lambda q: (q.get("judge") or {}).get("score"), False),
}
DEFAULT_BOOT = 10_000
BLOCK = 500  # bootstrap replicates per vectorised block


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    level: float = 0.95,
    paired_runs: bool = False,
) -> dict[str, float]:
    """Mean difference (a − b), its percentile CI and the share of draws below 0.

    ``a`` is (runs_a, questions), ``b`` is (runs_b, questions); column j of both belongs
    to the same question. With ``paired_runs`` row i of both belongs to the same seed, and
    each replicate draws the same runs on both sides.
    """
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise EvalError(
            f"paired bootstrap needs the same questions on both sides ({a.shape}, {b.shape})"
        )
    if paired_runs and a.shape[0] != b.shape[0]:
        raise EvalError(f"paired runs need as many runs on both sides ({a.shape}, {b.shape})")
    rng = np.random.default_rng(seed)
    n_questions = a.shape[1]
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, BLOCK):
        size = min(BLOCK, n_boot - start)
        questions = rng.integers(0, n_questions, size=(size, n_questions))
        runs_a = rng.integers(0, a.shape[0], size=(size, a.shape[0]))
        runs_b = runs_a if paired_runs else rng.integers(0, b.shape[0], size=(size, b.shape[0]))
        # (runs, size): each run's mean over the drawn questions
        mean_a = a[:, questions].mean(axis=2).T
        mean_b = b[:, questions].mean(axis=2).T
        drawn_a = np.take_along_axis(mean_a, runs_a, axis=1).mean(axis=1)
        drawn_b = np.take_along_axis(mean_b, runs_b, axis=1).mean(axis=1)
        diffs[start : start + size] = drawn_a - drawn_b
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "diff": float(a.mean() - b.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_below_zero": float((diffs < 0).mean()),
    }


def _load_run(metrics_file: Path) -> dict[str, Any]:
    read_json(metrics_file)  # the metrics file itself must exist and parse
    details = read_json(
        details_path(metrics_file), "details file (rerun `curate eval model --out`)"
    )
    if not isinstance(details, dict) or not isinstance(details.get("questions"), list):
        raise EvalError(f"{details_path(metrics_file)}: no per-question results")
    return details


def compare_runs(
    side_a: list[Path], side_b: list[Path], n_boot: int = DEFAULT_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Compare every per-question metric that all runs on both sides have."""
    runs = {path: _load_run(Path(path)) for path in [*side_a, *side_b]}
    reference = side_a[0]
    ref_ids = [q["id"] for q in runs[reference]["questions"]]
    for path, details in runs.items():
        ids = [q["id"] for q in details["questions"]]
        if ids != ref_ids:
            raise EvalError(
                f"{path} and {reference} were scored on different questions "
                f"({len(ids)} vs {len(ref_ids)}); compare runs on the same eval set and --limit"
            )
        if details.get("eval_set_sha256") != runs[reference].get("eval_set_sha256"):
            raise EvalError(f"{path} and {reference} used different eval set files")
    result: dict[str, Any] = {
        "seed": seed,
        "n_boot": n_boot,
        "runs_a": len(side_a),
        "runs_b": len(side_b),
    }
    for metric, (read, lower_is_better) in PER_QUESTION.items():
        table = np.array(
            [[_number(read(q)) for q in runs[path]["questions"]] for path in [*side_a, *side_b]]
        )
        if np.isnan(table).all():
            continue
        usable = ~np.isnan(table).any(axis=0)  # a question counts only when every run scored it
        if not usable.any():
            continue
        stats: dict[str, Any] = paired_bootstrap(  # figures, then labels ("better")
            table[: len(side_a), usable], table[len(side_a) :, usable], n_boot, seed
        )
        if stats["ci_low"] > 0 or stats["ci_high"] < 0:
            a_higher = stats["ci_low"] > 0
            stats["better"] = "b" if a_higher == lower_is_better else "a"
        else:
            stats["better"] = "neither (CI includes 0)"
        stats["questions"] = int(usable.sum())
        stats["questions_excluded"] = int((~usable).sum())
        result[metric] = stats
    if len(result) == 4:
        raise EvalError(f"{reference}: no per-question metric that every run has")
    return result


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")
