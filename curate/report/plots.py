"""The report's images: metric curves per round with their Δ-vs-baseline panel, and the
pool map coloured by the round that picked each example."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.evaluation.compare import PER_QUESTION
from curate.manifest import MANIFEST_FILE
from curate.report.collect import Source
from curate.report.model import (
    BETTER_SIDE,
    FULL,
    METRIC_TITLES,
    WORKSPACE,
    Report,
    Run,
    round_number,
)
from curate.subsets import DEFAULT_SUBSETS_DIR, EXAMPLES_FILE

# The embeddings the pipeline's embed_minilm stage writes: one space for every round.
POOL_MAP_EMBEDDINGS = "minilm"


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


def curve_images(report: Report, out_dir: Path) -> list[Path]:
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


def pool_map_image(
    root: Path, runs: list[Run], strategy: str, db: Path, out: Path
) -> tuple[Path | None, str | None]:
    """The pool in the MiniLM space, coloured by the round that picked each example, for the
    first seed of ``strategy``; (None, why) when it cannot be drawn."""
    from curate.evaluation.plots import plot_pool_map
    from curate.store import Store

    store = Store(db)
    if POOL_MAP_EMBEDDINGS not in store.embedding_names():
        return (
            None,
            f"pool map skipped: no {POOL_MAP_EMBEDDINGS} embeddings in {db} "
            "(run `dvc repro embed_minilm`)",
        )
    mine = [r for r in runs if r.params.get("strategy") == strategy and r.round != FULL]
    if not mine:
        return None, f"pool map skipped: no run of {strategy!r}"
    first = min(mine, key=lambda r: (r.seed, r.rev != WORKSPACE))
    rounds = sorted({r.round for r in mine if r.rev == first.rev}, key=round_number)
    from dvc.repo import Repo

    with Repo(str(root)) as dvc_repo, tempfile.TemporaryDirectory() as tmp:
        source = Source(root, first.rev, dvc_repo)
        dirs = []
        for round_name in rounds:
            folder = Path(tmp) / round_name
            folder.mkdir()
            for name in (MANIFEST_FILE, EXAMPLES_FILE):
                text = source.output(f"{DEFAULT_SUBSETS_DIR.as_posix()}/{round_name}/{name}", None)
                (folder / name).write_text(text, encoding="utf-8")
            dirs.append(folder)
        try:
            return plot_pool_map(store, POOL_MAP_EMBEDDINGS, dirs, out), None
        except CurateError as err:
            return None, f"pool map skipped: {err}"
