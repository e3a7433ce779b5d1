"""PNGs a person would rather look at than read: metrics per round and a map of the pool.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display). Every file
is rendered into memory and renamed into place.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import EvalError
from curate.evaluation.diversity import pick_rows
from curate.evaluation.results import read_json
from curate.files import atomic_write_bytes, atomic_write_text
from curate.store import Store, Vectors
from curate.subsets import load_subset

# metric key (dotted for nested) → (title, axis label)
ROUND_METRICS = {
    "vendi": ("Vendi score", "Vendi score (higher = more diverse)"),
    "coverage_radius": ("coverage radius", "max distance to nearest chosen (lower = better)"),
    "mean_coverage": ("mean coverage", "mean distance to nearest chosen example"),
    "nll": ("held-out NLL", "NLL per answer token (lower = better)"),
    "judge.ws": ("judge winning score", "WS = (W − L)/N + 1 (higher = better)"),
}
TABLE_COLUMNS = ("n", *ROUND_METRICS)
_ROUND_NUMBER = re.compile(r"(\d+)$")
MAP_BACKGROUND_POINTS = 20_000


def _lookup(metrics: dict[str, Any], dotted: str) -> float | None:
    value: Any = metrics
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_rounds(run_dir: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(round, metrics) for every ``<name><N>.json`` in a run folder, in round order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: no such metrics folder")
    rounds = []
    for path in run_dir.glob("*.json"):
        match = _ROUND_NUMBER.search(path.stem)
        if match is None or path.stem.endswith(".details"):
            continue
        metrics = read_json(path)
        if isinstance(metrics, dict) and any(
            _lookup(metrics, k) is not None for k in ROUND_METRICS
        ):
            rounds.append((int(match.group(1)), metrics))
    if not rounds:
        raise EvalError(
            f"{run_dir}: no round metrics (expected files like rd_0.json from `curate eval round`)"
        )
    rounds.sort(key=lambda r: r[0])
    return rounds


def _save_png(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def round_table(runs: dict[str, list[tuple[int, dict[str, Any]]]]) -> str:
    """A TSV of the plotted metrics, one row per (run, round), for ``dvc plots``."""
    lines = ["\t".join(("run", "round", *TABLE_COLUMNS))]
    for label, rounds in runs.items():
        for number, metrics in rounds:
            cells = [_lookup(metrics, key) for key in TABLE_COLUMNS]
            lines.append(
                "\t".join([label, str(number), *("" if c is None else f"{c:.6g}" for c in cells)])
            )
    return "\n".join(lines) + "\n"


def plot_rounds(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """One PNG per metric (a line per run) and ``rounds.tsv``; returns the files written."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    runs = {str(Path(d)): read_rounds(d) for d in run_dirs}
    written = []
    for key, (title, label) in ROUND_METRICS.items():
        series = {
            run: [(n, v) for n, m in rounds if (v := _lookup(m, key)) is not None]
            for run, rounds in runs.items()
        }
        series = {run: points for run, points in series.items() if points}
        if not series:
            continue
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.subplots()
        for run, points in series.items():
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=run)
        axes.set_xlabel("round")
        axes.set_ylabel(label)
        axes.set_title(title)
        locator = axes.xaxis.get_major_locator()
        if isinstance(locator, MaxNLocator):  # matplotlib's default AutoLocator is one
            locator.set_params(integer=True)
        axes.grid(alpha=0.3)
        if len(series) > 1:
            axes.legend(fontsize="small")
        written.append(_save_png(figure, out_dir / f"{key.replace('.', '_')}.png"))
    table = out_dir / "rounds.tsv"
    atomic_write_text(table, round_table(runs))
    written.append(table)
    return written


def pca_2d(matrix: np.ndarray) -> np.ndarray:
    """Projection on the top two principal axes (sign fixed, so reruns draw the same map)."""
    x = np.asarray(matrix, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1][:, :2]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
    return centred @ axes


def _project(matrix: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        return pca_2d(matrix)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise EvalError(
                "--projection umap needs the umap-learn package: pip install umap-learn"
            ) from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(matrix)
    raise EvalError(f"unknown projection {method!r}; choose pca or umap")


def first_rounds(store: Store, vectors: Vectors, subset_dirs: Sequence[str | Path]) -> np.ndarray:
    """For each pool row, the index of the first subset that contains it (−1: never chosen)."""
    first = np.full(len(vectors.ids), -1, dtype=np.int64)
    for number, subset_dir in enumerate(subset_dirs):
        rows = pick_rows(vectors, load_subset(subset_dir), store)
        first[rows[first[rows] < 0]] = number
    return first


def plot_pool_map(
    store: Store,
    embeddings: str,
    subset_dirs: Sequence[str | Path],
    out_file: str | Path,
    method: str = "pca",
    max_background: int = MAP_BACKGROUND_POINTS,
    seed: int = 0,
) -> Path:
    """The pool in 2-D, each chosen example coloured by the first round (subset) that picked it.

    ``subset_dirs`` are in round order; rounds nest, so an example is drawn in the colour
    of the earliest subset that contains it.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    vectors = store.load_vectors(embeddings)
    first_round = first_rounds(store, vectors, subset_dirs)
    chosen = np.flatnonzero(first_round >= 0)
    rest = np.flatnonzero(first_round < 0)
    if len(rest) > max_background:
        rest = np.sort(np.random.default_rng(seed).choice(rest, max_background, replace=False))
    shown = np.concatenate([rest, chosen])
    points = _project(vectors.matrix[shown], method, seed)
    background, picked = points[: len(rest)], points[len(rest) :]

    figure = Figure(figsize=(7.0, 6.0), layout="constrained")
    axes = figure.subplots()
    axes.scatter(background[:, 0], background[:, 1], s=4, c="#c8c8c8", label="pool", linewidths=0)
    palette = colormaps["viridis"]
    rounds = len(subset_dirs)
    for number in range(rounds):
        mask = first_round[chosen] == number
        if mask.any():
            colour = palette(number / max(rounds - 1, 1))
            label = f"{Path(subset_dirs[number]).name} (+{int(mask.sum())})"
            axes.scatter(
                picked[mask, 0], picked[mask, 1], s=14, color=colour, label=label, linewidths=0
            )
    axes.set_title(
        f"pool ({len(vectors.ids):,} rows, embeddings {embeddings!r}) — {method.upper()}"
    )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(fontsize="small", markerscale=2, loc="best")
    return _save_png(figure, Path(out_file))
