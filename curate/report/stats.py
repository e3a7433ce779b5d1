"""Grouping runs and their intervals: results are grouped by the params that differ between
experiments other than the seed, round by round; the whole-pool reference (``eval_full``)
is a group of its own. Intervals come from :func:`curate.evaluation.compare.paired_bootstrap`,
which resamples questions and seeds: a group's mean against nothing, and a group against
the baseline paired by question, and by seed when both sides ran the same seeds.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from curate.evaluation.compare import DEFAULT_BOOT, PER_QUESTION, paired_bootstrap
from curate.progress import NO_PROGRESS, Progress
from curate.report.model import (
    FULL,
    Report,
    ReportError,
    Row,
    Run,
    group_key,
    round_number,
)


def _labels(groups: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A short label per group: the params whose values differ between groups."""
    round_groups = {k: p for k, p in groups.items() if p.get("strategy") != FULL}
    keys = sorted({k for p in round_groups.values() for k in p})
    varying = [
        k
        for k in keys
        if len({json.dumps(p.get(k), default=str) for p in round_groups.values()}) > 1
    ]
    labels = {}
    for key, params in groups.items():
        if params.get("strategy") == FULL:
            labels[key] = FULL
        elif varying == ["strategy"] or not varying:
            labels[key] = str(params.get("strategy"))
        else:
            labels[key] = " ".join(f"{k}={params.get(k)}" for k in varying)
    return labels


def _matrix(runs: list[Run], ids: list[str], metric: str) -> np.ndarray:
    return np.array([[run.questions[q][metric] for q in ids] for run in runs], dtype=float)


def _common_ids(runs: list[Run], metric: str) -> list[str]:
    ids = None
    for run in runs:
        have = {q for q, values in run.questions.items() if metric in values}
        ids = have if ids is None else ids & have
    order = list(runs[0].questions) if runs else []
    return [q for q in order if ids and q in ids]


def _mean_of(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return float(np.mean(numbers)) if numbers else None


def _baseline_for(
    params: dict[str, Any], groups: dict[str, dict[str, Any]], baseline: str
) -> str | None:
    """The baseline group run with the same params but the strategy (and its options)."""

    def rest(p: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v for k, v in p.items() if k != "strategy" and not k.startswith("strategy_params")
        }

    candidates = [k for k, p in groups.items() if p.get("strategy") == baseline]
    same = [k for k in candidates if rest(groups[k]) == rest(params)]
    if same:
        return same[0]
    return candidates[0] if len(candidates) == 1 else None


def build_report(
    runs: list[Run],
    experiments: list[str],
    baseline: str = "random",
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    progress: Progress = NO_PROGRESS,
) -> Report:
    if not runs:
        raise ReportError(
            "no evaluated rounds in the workspace or any experiment; run `dvc repro` or "
            "`dvc exp run` first"
        )
    warnings: list[str] = []
    groups = {group_key(run.params): run.params for run in runs}
    labels = _labels(groups)
    round_names = sorted({r.round for r in runs if r.round != FULL}, key=round_number)
    full_runs = [r for r in runs if r.round == FULL]
    progress.start(len(round_names), "rounds", "bootstrap")
    table: dict[str, list[Row]] = {}
    for round_name in round_names:
        here = [r for r in runs if r.round == round_name] + full_runs
        by_group: dict[str, list[Run]] = {}
        for run in sorted(here, key=lambda r: r.seed):
            by_group.setdefault(group_key(run.params), []).append(run)
        ordered = sorted(by_group, key=lambda k: (groups[k].get("strategy") == FULL, labels[k]))
        rows = []
        for key in ordered:
            members = by_group[key]
            base_key = _baseline_for(groups[key], {k: groups[k] for k in by_group}, baseline)
            row = Row(
                group=labels[key],
                strategy=str(groups[key].get("strategy")),
                seeds=[r.seed for r in members],
                n=_mean_of([r.metrics.get("n") for r in members]),
                vendi=_mean_of([r.metrics.get("vendi") for r in members]),
                coverage_radius=_mean_of([r.metrics.get("coverage_radius") for r in members]),
            )
            if len(members) == 1:
                warnings.append(
                    f"{round_name}: {labels[key]} has a single seed ({members[0].seed})"
                )
            for metric in PER_QUESTION:
                ids = _common_ids(members, metric)
                if not ids:
                    continue
                own = _matrix(members, ids, metric)
                stats = paired_bootstrap(own, np.zeros((1, len(ids))), n_boot, seed)
                row.metrics[metric] = {
                    "mean": stats["mean_a"],
                    "ci_low": stats["ci_low"],
                    "ci_high": stats["ci_high"],
                    "questions": len(ids),
                }
                if base_key is None or base_key == key:
                    continue
                base = by_group[base_key]
                both = _common_ids([*members, *base], metric)
                if not both:
                    continue
                seeds, base_seeds = [r.seed for r in members], [r.seed for r in base]
                paired = sorted(seeds) == sorted(base_seeds)
                delta = paired_bootstrap(
                    _matrix(members, both, metric), _matrix(base, both, metric), n_boot, seed,
                    paired_runs=paired,
                )  # fmt: skip
                row.delta[metric] = {
                    "baseline": labels[base_key],
                    "diff": delta["diff"],
                    "ci_low": delta["ci_low"],
                    "ci_high": delta["ci_high"],
                    "p_below_zero": delta["p_below_zero"],
                    "questions": len(both),
                    "paired_seeds": paired,
                }
            rows.append(row)
        table[round_name] = rows
        progress.advance(1)
    if not any(r.strategy == baseline for rows in table.values() for r in rows):
        warnings.append(f"no run of the baseline strategy {baseline!r}: no Δ column")
    return Report(baseline, table, experiments, sorted(set(warnings)), n_boot)


def check(report: Report, strategy: str, metric: str = "nll") -> tuple[bool, str]:
    """(passed, one line): does ``strategy`` beat the baseline at the last round, with the
    95% interval of the difference excluding 0?"""
    last = report.last_round
    if last is None:
        return False, "no evaluated round"
    rows = [r for r in report.rounds[last] if r.strategy == strategy]
    if not rows:
        return False, f"{last}: no run of strategy {strategy!r}"
    lower_is_better = PER_QUESTION[metric][1]
    for row in rows:
        delta = row.delta.get(metric)
        if delta is None:
            return False, f"{last}: {row.group} has no {report.baseline!r} run to compare with"
        low, high, diff = delta["ci_low"], delta["ci_high"], delta["diff"]
        beats = high < 0 if lower_is_better else low > 0
        interval = f"Δ {metric} {diff:+.4f} (95% CI {low:+.4f} … {high:+.4f})"
        if not beats:
            why = "the interval includes 0" if low <= 0 <= high else "it is worse"
            return False, f"{last}: {row.group} vs {delta['baseline']}: {interval}; {why}"
    return True, f"{last}: {strategy} beats {report.baseline}: {interval}"
