"""The table of ``quality.py``: Δ vs random through ``curate report``'s own code, the noise
floor beside it, and the markdown.

Each budget's runs become :class:`curate.report.Run` records, read from the same
``*.details.json`` files with the same reader ``curate report`` uses on experiments
(:func:`curate.report.collect._question_values`), and go through
:func:`curate.report.build_report` (grouping, paired-by-seed bootstrap over seeds and
questions, 10,000 draws, seed 0). So ``curate report`` on the same runs gives the same
numbers by construction: only where the runs come from differs (DVC experiments there,
``--work`` here).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from curate.report import FULL, Run, build_report
from curate.report.collect import _question_values

N_BOOT = 10_000


def details(score_file: Path) -> Path:
    return score_file.with_name(f"{score_file.stem}.details.json")


@cache
def question_values(score_file: Path) -> dict[str, dict[str, float]]:
    return _question_values(json.loads(details(score_file).read_text()), str(score_file))


def as_run(label: str, seed: int, score_file: Path, round_name: str, n: int) -> Run:
    return Run(
        rev="quality.py",
        name=f"{label}-s{seed}",
        round=round_name,
        params={"strategy": label},
        seed=seed,
        metrics={"n": n},
        questions=question_values(score_file),
        details_md5="",
    )


def per_seed_means(runs: dict[int, Path], ids: list[str]) -> np.ndarray:
    return np.array([np.mean([question_values(p)[q]["nll"] for q in ids]) for p in runs.values()])


def spread(values: np.ndarray) -> dict[str, float] | None:
    """Sample standard deviation and range of per-run mean NLLs (None under 2 runs)."""
    if len(values) < 2:
        return None
    return {
        "sd": float(np.std(values, ddof=1)),
        "range": float(np.ptp(values)),
        "runs": len(values),
    }


def budget_table(
    budget: int,
    last_round: int,
    scores: dict[str, dict[int, Path]],
    sizes: dict[str, int],
    checkpoints: dict[int, Path],
    stats: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """One budget's rows: ``scores`` label -> seed -> score file (``full`` under round FULL),
    ``checkpoints`` step -> score file of one model's last checkpoints."""
    round_name = f"rd_{last_round}"
    runs = [
        as_run(label, seed, path, FULL if label == FULL else round_name, sizes[label])
        for label, by_seed in scores.items()
        for seed, path in sorted(by_seed.items())
    ]
    report = build_report(runs, ["benchmarks/quality.py"], "random", N_BOOT, 0)
    checkpoint_runs = [question_values(p) for p in checkpoints.values()]
    scored = [r.questions for r in runs] + checkpoint_runs
    ids = sorted(set.intersection(*({q for q, v in s.items() if "nll" in v} for s in scored)))
    base = per_seed_means(scores["random"], ids)
    ckpt = per_seed_means(checkpoints, ids) if checkpoints else np.zeros(0)
    noise = {
        "seeds": spread(base),
        "checkpoints": spread(ckpt),
        "checkpoint_steps": sorted(checkpoints),
        "checkpoint_nll": ckpt.tolist(),
    }
    random_by_q = np.mean([[question_values(p)[q]["nll"] for q in ids] for p in scores["random"].values()], axis=0)  # fmt: skip
    rows = []
    for row in report.rounds[round_name]:
        own = scores[row.group]
        mine = np.mean([[question_values(p)[q]["nll"] for q in ids] for p in own.values()], axis=0)
        nll, delta = row.metrics["nll"], row.delta.get("nll")
        entry = {
            "strategy": row.group,
            "seeds": row.seeds,
            "n": sizes[row.group],
            "nll": nll["mean"],
            "seed_spread": spread(per_seed_means(own, ids)),
            **stats.get(row.group, {}),
        }
        if delta is not None:
            entry.update(
                delta=delta["diff"],
                ci=[delta["ci_low"], delta["ci_high"]],
                paired_seeds=delta["paired_seeds"],
                better=float(np.mean(mine < random_by_q)),
            )
        rows.append(entry)
    rows.sort(key=lambda e: list(scores).index(e["strategy"]))  # run order, full last
    return {
        "budget": budget,
        "questions": len(ids),
        "noise": noise,
        "rows": rows,
        "warnings": report.warnings,
    }


def _sd(s: dict[str, float] | None) -> str:
    return f"{s['sd']:.4f}" if s else "—"


def markdown(result: dict[str, Any], settings: dict[str, Any], seconds: dict[str, float]) -> str:
    s = settings
    lines = [
        f"Pool: {result['pool_rows']} rows ({s['pool_desc']}); SmolLM2-135M-Instruct, {s['epochs']} "
        f"epochs, lr {s['lr']}, batch {s['batch_size']}, max length {s['max_length']}, "
        f"embeddings over {s['embed_max_length']} tokens, precision {s['precision']}; "
        f"{s['rounds']} rounds.",
        f"Scored: mean answer NLL on held-out questions ({', '.join(f'{k} {v}' for k, v in result['eval_sets'].items())}), "
        f"max length {s['eval_max_length']}. Δ < 0 is better than random; interval: 95% "
        "bootstrap over seeds (paired) and questions, `curate report`'s code.",
    ]  # fmt: skip
    for table in result["budgets"]:
        noise = table["noise"]
        seeds, ckpt = noise["seeds"], noise["checkpoints"]
        floor = f"{_sd(seeds)} / {_sd(ckpt)}"
        lines += [
            "",
            f"**Budget {table['budget']}** ({table['plan']}; {table['questions']} questions). "
            f"Noise floor: random's per-seed mean NLL sd {_sd(seeds)}"
            + (f" (range {seeds['range']:.4f}, {seeds['runs']} seeds)" if seeds else "")
            + f"; one model (random, seed {s['seeds'][0]}) over its last checkpoints "
            + (
                f"(steps {', '.join(map(str, noise['checkpoint_steps']))}) sd {ckpt['sd']:.4f}, "
                f"range {ckpt['range']:.4f}."
                if ckpt
                else "not measured."
            ),
            "",
            "| strategy | seeds | n | mean NLL | Δ vs random | 95% interval | noise floor sd (seeds / ckpts) | own seed sd | questions better | Vendi | LIMA share | mean chars |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in table["rows"]:
            delta = f"{r['delta']:+.4f}" if "delta" in r else "—"
            ci = f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]" if "ci" in r else "—"
            better = f"{r['better']:.0%}" if "better" in r else "—"
            lines.append(
                f"| {r['strategy']} | {','.join(map(str, r['seeds']))} | {r['n']} | "
                f"{r['nll']:.4f} | {delta} | {ci} | {floor} | {_sd(r['seed_spread'])} | "
                f"{better} | {r.get('vendi', float('nan')):.2f} | "
                f"{r.get('lima_share', float('nan')):.0%} | {r.get('mean_chars', float('nan')):,.0f} |"
            )
    spent = ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(seconds.items()))
    spent = spent or "nothing (every run was kept in the archive)"
    lines += ["", f"Time this sitting: {spent}."]
    return "\n".join(lines) + "\n"
