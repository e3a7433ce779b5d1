"""``curate report``: is the selection better than random on this pool, across seeds?

Reads every DVC experiment of a repository and its workspace without checking anything
out: ``params.yaml``, ``dvc.lock`` and the metrics files from each experiment's commit
(git), the per-question details from the DVC cache by the hash ``dvc.lock`` records. A
round's result counts for an experiment only when every stage that produced it recorded
the params the experiment's ``params.yaml`` holds (so a result an experiment merely
inherited from its baseline is not counted twice). Results are grouped by the params
that differ between experiments other than the seed, round by round; the whole-pool
reference (``eval_full``) is a group of its own.

Intervals come from :func:`curate.evaluation.compare.paired_bootstrap`, which resamples
questions and seeds: a group's mean against nothing, and a group against the baseline
paired by question, and by seed when both sides ran the same seeds.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from curate.errors import CurateError
from curate.evaluation.compare import DEFAULT_BOOT, PER_QUESTION, paired_bootstrap
from curate.progress import NO_PROGRESS, Progress
from curate.scaffold import lookup

FULL = "full"
WORKSPACE = "workspace"
# What makes a run of a round (besides the seed); anything else in params.yaml (db, device,
# the rounds map) does not change its result.
ROUND_KEYS = (
    "strategy", "strategy_params", "init_size", "n_query", "base_model", "train",
    "max_length", "eval",
)  # fmt: skip
FULL_KEYS = ("base_model", "train", "max_length", "eval")
_ROUND = re.compile(r"^rd_(\d+)$")


class ReportError(CurateError):
    """Experiments that cannot be read or compared."""


@dataclass
class Run:
    """One evaluated model: a round of one experiment (or the whole-pool reference)."""

    rev: str  # commit sha, or "workspace"
    name: str  # experiment name
    round: str  # rd_<r> or "full"
    params: dict[str, Any]  # flattened group params (no seed)
    seed: int
    metrics: dict[str, Any]
    questions: dict[str, dict[str, float]]  # question id -> {"nll": ..., "judge_score": ...}
    details_md5: str


@dataclass
class Row:
    """One group's line of a round's table."""

    group: str
    strategy: str
    seeds: list[int]
    n: float | None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # nll/judge_score
    delta: dict[str, dict[str, float]] = field(default_factory=dict)  # vs the baseline
    vendi: float | None = None
    coverage_radius: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    baseline: str
    rounds: dict[str, list[Row]]  # "rd_0", ... -> rows (the full reference last)
    experiments: list[str]
    warnings: list[str]
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "n_boot": self.n_boot,
            "experiments": self.experiments,
            "warnings": self.warnings,
            "rounds": {r: [row.to_dict() for row in rows] for r, rows in self.rounds.items()},
        }

    @property
    def last_round(self) -> str | None:
        numbered = [r for r in self.rounds if _ROUND.match(r)]
        return max(numbered, key=round_number) if numbered else None


def round_number(name: str) -> int:
    match = _ROUND.match(name)
    return int(match.group(1)) if match else 10**9


# ---------------------------------------------------------------------------- reading
def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = {} if isinstance(value, Mapping) else value
    return flat


class _Source:
    """Files of one revision: git-tracked ones from the commit, DVC outputs from the cache."""

    def __init__(self, root: Path, rev: str, dvc_repo: Any):
        self.root, self.rev, self.dvc_repo = root, rev, dvc_repo

    def text(self, path: str) -> str | None:
        if self.rev == WORKSPACE:
            file = self.root / path
            return file.read_text(encoding="utf-8") if file.is_file() else None
        done = subprocess.run(
            ["git", "show", f"{self.rev}:{path}"], cwd=self.root, capture_output=True, text=True
        )
        return done.stdout if done.returncode == 0 else None

    def output(self, path: str, md5: str | None) -> str:
        """A DVC-tracked file's text: the object its hash names, else through ``dvc.api``."""
        if self.rev == WORKSPACE and (self.root / path).is_file():
            return (self.root / path).read_text(encoding="utf-8")
        if md5 and not md5.endswith(".dir"):
            cached = Path(self.dvc_repo.cache.local.oid_to_path(md5))
            if cached.is_file():
                return cached.read_text(encoding="utf-8")
        import dvc.api

        try:
            with dvc.api.open(
                path, repo=str(self.root), rev=None if self.rev == WORKSPACE else self.rev
            ) as fh:
                return fh.read()
        except Exception as err:  # dvc raises many kinds; one line for the user
            raise ReportError(
                f"{path} of experiment {self.rev[:7]} is not in the DVC cache "
                f"({type(err).__name__}); `dvc exp pull` or `dvc pull` it first"
            ) from None


def _revisions(root: Path) -> list[tuple[str, str]]:
    """(rev, name): the workspace, then every experiment ref, newest first."""
    from dvc.repo.experiments.utils import exp_refs
    from scmrepo.git import Git

    scm = Git(str(root))
    try:
        refs = [(str(ref), ref.name) for ref in exp_refs(scm)]
        found = []
        for ref, name in refs:
            sha = scm.get_ref(ref)
            if sha:
                found.append((sha, name))
    finally:
        scm.close()
    stamps = {}
    if found:
        done = subprocess.run(
            ["git", "show", "-s", "--format=%H %ct", *[sha for sha, _ in found]],
            cwd=root, capture_output=True, text=True, check=True,
        )  # fmt: skip
        stamps = dict(line.split() for line in done.stdout.splitlines() if line.strip())
    found.sort(key=lambda item: (-int(stamps.get(item[0], 0)), item[1]))
    return [(WORKSPACE, WORKSPACE), *found]


def _chain(rounds: Mapping[str, str], name: str) -> list[str]:
    """The rounds ``name`` grows from, rd_0 first."""
    chain = [name]
    while chain[-1] != "rd_0":
        parent = rounds.get(chain[-1])
        if parent is None or parent in chain:
            return []
        chain.append(parent)
    return chain[::-1]


def _stage_names(round_name: str) -> list[str]:
    if round_name == FULL:
        return ["select_full", "train_full", "eval_full"]
    if round_name == "rd_0":
        return ["select_rd_0", "train_rd_0", "eval_rd_0"]
    return [
        f"embed@{round_name}",
        f"select@{round_name}",
        f"train@{round_name}",
        f"eval@{round_name}",
    ]


def _current(lock: Mapping[str, Any], stages: list[str], params: Mapping[str, Any]) -> bool:
    """Every stage ran, with the params this revision's params.yaml holds."""
    for stage in stages:
        entry = lock.get(stage)
        if entry is None:
            return False
        recorded = (entry.get("params") or {}).get("params.yaml") or {}
        for key, value in recorded.items():
            if lookup(params, key) != value:
                return False
    return True


def _metrics_out(entry: Mapping[str, Any], suffix: str) -> tuple[str, str | None] | None:
    for out in entry.get("outs") or []:
        if str(out.get("path", "")).endswith(suffix):
            return str(out["path"]), out.get("md5")
    return None


def _question_values(details: Any, where: str) -> dict[str, dict[str, float]]:
    if not isinstance(details, dict) or not isinstance(details.get("questions"), list):
        raise ReportError(f"{where}: no per-question results")
    values: dict[str, dict[str, float]] = {}
    for question in details["questions"]:
        row = {}
        for metric, (read, _) in PER_QUESTION.items():
            value = read(question)
            if isinstance(value, int | float) and math.isfinite(value):
                row[metric] = float(value)
        values[str(question.get("id"))] = row
    return values


def _read_revision(root: Path, rev: str, name: str, dvc_repo: Any) -> list[Run]:
    source = _Source(root, rev, dvc_repo)
    params_text, lock_text = source.text("params.yaml"), source.text("dvc.lock")
    if params_text is None or lock_text is None:
        return []
    params = yaml.safe_load(params_text) or {}
    lock = (yaml.safe_load(lock_text) or {}).get("stages") or {}
    rounds_map = params.get("rounds") or {}
    names = ["rd_0", *rounds_map, FULL]
    runs = []
    for round_name in names:
        if round_name == FULL:
            stages = _stage_names(FULL)
            keys = FULL_KEYS
        else:
            chain = _chain(rounds_map, round_name)
            stages = [s for r in chain for s in _stage_names(r)]
            keys = ROUND_KEYS
        if not stages or not _current(lock, stages, params):
            continue
        eval_entry = lock[stages[-1]]
        metrics_out = _metrics_out(eval_entry, ".json")
        details_out = _metrics_out(eval_entry, ".details.json")
        if details_out is None:
            continue
        metrics_path = details_out[0].replace(".details.json", ".json")
        metrics_text = source.text(metrics_path)
        if metrics_text is None and metrics_out is not None:
            metrics_text = source.text(metrics_out[0])
        where = f"{details_out[0]} of {name}"
        try:
            metrics = json.loads(metrics_text) if metrics_text else {}
            details = json.loads(source.output(*details_out))
        except json.JSONDecodeError as err:
            raise ReportError(f"{where}: malformed JSON ({err})") from None
        group = flatten({k: params.get(k) for k in keys})
        if round_name == FULL:
            group["strategy"] = FULL
        runs.append(
            Run(
                rev=rev,
                name=name,
                round=round_name,
                params=group,
                seed=int(params.get("seed", 0)),
                metrics=metrics if isinstance(metrics, dict) else {},
                questions=_question_values(details, where),
                details_md5=str(details_out[1]),
            )
        )
    return runs


def collect_runs(root: str | Path, progress: Progress = NO_PROGRESS) -> tuple[list[Run], list[str]]:
    """Every evaluated round of the workspace and the experiments; and the experiment names."""
    from dvc.repo import Repo

    root = Path(root).resolve()
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        raise ReportError(f"{root}: not a DVC pipeline folder (needs .dvc/ and dvc.yaml)")
    revisions = _revisions(root)
    progress.start(len(revisions), "experiments", "read experiments")
    runs: list[Run] = []
    seen: set[tuple] = set()
    with Repo(str(root)) as dvc_repo:
        for rev, name in revisions:
            for run in _read_revision(root, rev, name, dvc_repo):
                key = (run.round, _key(run.params), run.seed)
                if key not in seen:  # the workspace, then the newest experiment, wins
                    seen.add(key)
                    runs.append(run)
            progress.advance(1)
    return runs, [name for _, name in revisions]


# ---------------------------------------------------------------------------- statistics
def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


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
    groups = {_key(run.params): run.params for run in runs}
    labels = _labels(groups)
    round_names = sorted({r.round for r in runs if r.round != FULL}, key=round_number)
    full_runs = [r for r in runs if r.round == FULL]
    progress.start(len(round_names), "rounds", "bootstrap")
    table: dict[str, list[Row]] = {}
    for round_name in round_names:
        here = [r for r in runs if r.round == round_name] + full_runs
        by_group: dict[str, list[Run]] = {}
        for run in sorted(here, key=lambda r: r.seed):
            by_group.setdefault(_key(run.params), []).append(run)
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


# ---------------------------------------------------------------------------- writing
METRIC_TITLES = {"nll": "held-out NLL (lower = better)", "judge_score": "judge win rate"}
BETTER_SIDE = {"nll": "below 0 = better", "judge_score": "above 0 = better"}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cells(row: Row) -> list[str]:
    cells = [row.group, str(len(row.seeds)), _fmt(row.n, 0)]
    for metric in PER_QUESTION:
        stats = row.metrics.get(metric)
        cells.append(
            "–" if stats is None
            else f"{stats['mean']:.3f} [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        )  # fmt: skip
        delta = row.delta.get(metric)
        cells.append(
            "–" if delta is None
            else f"{delta['diff']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}]"
        )  # fmt: skip
        cells.append("–" if delta is None else f"{delta['p_below_zero']:.2f}")
    cells += [_fmt(row.vendi), _fmt(row.coverage_radius)]
    return cells


def table_header(report: Report) -> list[str]:
    header = ["group", "seeds", "n"]
    for metric in PER_QUESTION:
        name = "NLL" if metric == "nll" else "judge"
        header += [f"{name} (95% CI)", f"Δ {name} vs {report.baseline}", "P(Δ<0)"]
    return [*header, "Vendi", "coverage radius"]


def _used_columns(report: Report) -> list[int]:
    """Drop the judge columns when no run was judged."""
    judged = any("judge_score" in r.metrics for rows in report.rounds.values() for r in rows)
    columns = list(range(len(table_header(report))))
    return columns if judged else [c for c in columns if not 6 <= c <= 8]


def table_rows(report: Report, round_name: str) -> tuple[list[str], list[list[str]]]:
    used = _used_columns(report)
    header = table_header(report)
    return [header[c] for c in used], [
        [_cells(row)[c] for c in used] for row in report.rounds[round_name]
    ]


def _series(report: Report, metric: str, field: str) -> dict[str, list[tuple[int, dict]]]:
    """group -> [(round number, stats)] of ``row.metrics`` or ``row.delta`` for ``metric``."""
    series: dict[str, list[tuple[int, dict]]] = {}
    for round_name, rows in report.rounds.items():
        for row in rows:
            stats = getattr(row, field).get(metric)
            if stats is not None:
                series.setdefault(row.group, []).append((round_number(round_name), stats))
    return series


def _draw_bands(axes: Any, series: dict[str, list[tuple[int, dict]]], key: str) -> None:
    """One line and 95% band per group; the full reference as a dashed level across rounds."""
    rounds = sorted({x for points in series.values() for x, _ in points})
    span = [rounds[0], rounds[-1]] if len(rounds) > 1 else [rounds[0] - 0.5, rounds[0] + 0.5]
    for group, points in series.items():
        if group == FULL:
            stats = points[0][1]
            xs, means = span, [stats[key]] * 2
            lows, highs = [stats["ci_low"]] * 2, [stats["ci_high"]] * 2
            style = {"linestyle": "--", "color": "black", "label": "full pool"}
        else:
            xs = [x for x, _ in points]
            means = [s[key] for _, s in points]
            lows, highs = [s["ci_low"] for _, s in points], [s["ci_high"] for _, s in points]
            style = {"marker": "o", "label": group}
        (line,) = axes.plot(xs, means, **style)
        axes.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel("round")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")


def _plot_curves(report: Report, out_dir: Path) -> list[Path]:
    """``<metric>.png`` per scored metric: the mean per round (left) and, where a baseline
    ran, each group's difference from it (right) — the panel that answers "better than
    random?", since the spread between questions makes the left bands wide."""
    from matplotlib.figure import Figure

    from curate.evaluation.plots import _save_png

    written = []
    for metric in PER_QUESTION:
        levels = _series(report, metric, "metrics")
        if not levels:
            continue
        # the full pool's Δ (≈ −0.2 to −0.3) would flatten the strategies' bands; it stays
        # in the left panel and the table
        deltas = {g: p for g, p in _series(report, metric, "delta").items() if g != FULL}
        figure = Figure(figsize=(11.0 if deltas else 7.0, 4.2), layout="constrained")
        panels = figure.subplots(1, 2 if deltas else 1, squeeze=False)[0]
        _draw_bands(panels[0], levels, "mean")
        panels[0].set_ylabel(METRIC_TITLES[metric])
        panels[0].set_title(f"{metric}: mean, 95% interval over seeds × questions")
        if deltas:
            _draw_bands(panels[1], deltas, "diff")
            panels[1].axhline(0.0, color="grey", linewidth=1)
            panels[1].set_ylabel(f"Δ {metric} vs {report.baseline}")
            panels[1].set_title(f"Δ vs {report.baseline}: {BETTER_SIDE[metric]} (paired bootstrap)")
        written.append(_save_png(figure, out_dir / f"{metric}.png"))
    return written


def _plot_pool_map(
    root: Path, runs: list[Run], strategy: str, db: Path, out: Path
) -> tuple[Path | None, str | None]:
    """The pool in the MiniLM space, coloured by the round that picked each example, for the
    first seed of ``strategy``; (None, why) when it cannot be drawn."""
    from curate.evaluation.plots import plot_pool_map
    from curate.store import Store

    store = Store(db)
    if "minilm" not in store.embedding_names():
        return (
            None,
            f"pool map skipped: no minilm embeddings in {db} (run `dvc repro embed_minilm`)",
        )
    mine = [r for r in runs if r.params.get("strategy") == strategy and r.round != FULL]
    if not mine:
        return None, f"pool map skipped: no run of {strategy!r}"
    first = min(mine, key=lambda r: (r.seed, r.rev != WORKSPACE))
    rounds = sorted({r.round for r in mine if r.rev == first.rev}, key=round_number)
    from dvc.repo import Repo

    with Repo(str(root)) as dvc_repo, tempfile.TemporaryDirectory() as tmp:
        source = _Source(root, first.rev, dvc_repo)
        dirs = []
        for round_name in rounds:
            folder = Path(tmp) / round_name
            folder.mkdir()
            for name in ("manifest.json", "examples.jsonl"):
                text = source.output(f"data/subsets/{round_name}/{name}", None)
                (folder / name).write_text(text, encoding="utf-8")
            dirs.append(folder)
        try:
            return plot_pool_map(store, "minilm", dirs, out), None
        except CurateError as err:
            return None, f"pool map skipped: {err}"


def _markdown(report: Report, images: list[Path]) -> str:
    lines = [f"# curate report: strategies vs {report.baseline}", ""]
    lines.append(
        f"{len(report.experiments)} revisions read (the workspace and every experiment); "
        f"intervals: 95% percentile bootstrap over seeds and questions ({report.n_boot:,} draws)."
    )
    lines.append("")
    for warning in report.warnings:
        lines.append(f"> **warning:** {warning}")
    if report.warnings:
        lines.append("")
    for round_name in report.rounds:
        header, rows = table_rows(report, round_name)
        lines += [f"## {round_name}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        lines.append("")
    for image in images:
        lines += [f"![{image.stem}]({image.name})", ""]
    return "\n".join(lines)


def _html(report: Report, images: list[Path]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>curate report: strategies vs {html.escape(report.baseline)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;"
        "padding:4px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
        ".warn{background:#fff3cd;padding:6px 10px;border-left:4px solid #e0a800}"
        "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
        f"<h1>curate report: strategies vs {html.escape(report.baseline)}</h1>",
        f"<p>{len(report.experiments)} revisions read; intervals: 95% percentile bootstrap "
        f"over seeds and questions ({report.n_boot:,} draws).</p>",
    ]
    parts += [f"<p class='warn'>warning: {html.escape(w)}</p>" for w in report.warnings]
    for image in images:
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        parts.append(f"<img alt='{html.escape(image.stem)}' src='data:image/png;base64,{data}'>")
    for round_name in report.rounds:
        header, rows = table_rows(report, round_name)
        parts.append(f"<h2>{html.escape(round_name)}</h2><table id='{round_name}'><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr>")
        for cells in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    report: Report,
    out_dir: str | Path,
    root: str | Path = ".",
    runs: list[Run] | None = None,
    strategy: str | None = None,
    db: str | Path | None = None,
) -> list[Path]:
    """report.md, report.html (self-contained), report.json and the PNGs; the files written."""
    from curate.evaluation.results import write_json
    from curate.files import atomic_write_text

    out_dir, root = Path(out_dir), Path(root).resolve()
    images = _plot_curves(report, out_dir)
    if runs and strategy and db is not None:
        pool_map, why = _plot_pool_map(root, runs, strategy, root / db, out_dir / "pool_map.png")
        if pool_map is not None:
            images.append(pool_map)
        elif why:
            report.warnings.append(why)
    write_json(out_dir / "report.json", report.to_dict())
    atomic_write_text(out_dir / "report.md", _markdown(report, images))
    atomic_write_text(out_dir / "report.html", _html(report, images))
    return [*images, out_dir / "report.json", out_dir / "report.md", out_dir / "report.html"]
