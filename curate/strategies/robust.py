"""K-center robust to outliers (Ding, Yu and Wang, *Greedy Strategy Works for k-Center
Clustering with Outliers and Coreset Construction*, ESA 2019).

Farthest-point selection loves outliers: on LIMA + Alpaca, K-center picked the long,
sparse rows first. Ding et al.'s greedy expects ``z`` outliers and, instead of the single
farthest row, draws the next center uniformly (seeded) among the ``⌊(1+ε)·z⌋`` unchosen
rows farthest from the chosen set (``mode="sample"``): with high probability most draws
land on inliers, and the result is a 2-approximation of the k-center radius with ``z``
outliers. ``mode="trim"`` is the deterministic variant: the next center is the
``(z+1)``-th farthest row, skipping the ``z`` farthest as outliers.

``z`` is ``outliers`` rows when it is 1 or more, else that fraction of the pool
(``⌊outliers·N⌋``). With ``z = 0`` both modes are plain greedy K-center.

Distances are K-center's: the running minimum of :mod:`curate.strategies.coverage`,
re-checked exactly in float64 for the rows that can reach the window, so the ranking
equals a float64 full-matrix implementation's (ties to the lowest pool position).
The first pick with nothing chosen is a seeded random row, as in K-center; the same
generator then draws inside the window.

Cost per pick: one pass over the vectors (O(N·d), as K-center) plus O(N) to find the
window and an exact re-check of about ``(1+ε)·z`` rows against the centers added since
they were last checked. Memory O(N).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from curate.devices import DEFAULT_DEVICE
from curate.errors import SelectionError
from curate.plugins import Param, ParamError
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy
from curate.strategies.coverage import Coverage
from curate.strategies.kcenter import (
    METRIC_PARAM,
    WHITEN_PARAM,
    features,
    make_coverage,
    requested,
)
from curate.strategies.neighbors import reported_distances

MODES = ("sample", "trim")


def approx_minimum(coverage: Coverage) -> np.ndarray:
    """The backend's float32 running minimum (−inf for chosen rows) as float64 on the host."""
    m = coverage.m  # type: ignore[attr-defined]  # both backends keep it
    host = m if isinstance(m, np.ndarray) else m.cpu().numpy()
    return host.astype(np.float64)


def exact_ranking(
    coverage: Coverage, count: int, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` unchosen rows with the largest ``weight × exact squared distance to the
    centers`` (weight ≥ 0, default 1), largest first, ties to the lowest position, and those
    values. Every float32 minimum is within the bound E of its exact value, so only rows
    whose upper bound reaches the ``count``-th largest lower bound are re-checked."""
    m = approx_minimum(coverage)
    live = np.isfinite(m)
    count = min(count, int(live.sum()))
    if count < 1:
        raise ValueError("every row is already chosen")
    e = coverage.bound * (1 + 1e-6)
    lower = np.where(live, np.maximum(m - e, 0.0), -np.inf)
    upper = m + e
    if weight is not None:
        lower[live] *= weight[live]
        upper[live] *= weight[live]
    threshold = np.partition(lower, len(lower) - count)[len(lower) - count]
    rows = np.flatnonzero(upper >= threshold)
    # the cached exact minima of rows re-checked at the last pick miss one center; rows seen
    # first now need all of them: apart, the first group costs one column, not |S|
    recent = coverage._exact_upto[rows] + 1 >= len(coverage.centers)
    values = np.empty(len(rows))
    for group in (recent, ~recent):
        if group.any():
            values[group] = coverage.exact_min(rows[group])
    if weight is not None:
        values = values * weight[rows]
    order = np.lexsort((rows, -values))[:count]
    return rows[order], values[order]


def coverage_picks(
    coverage: Coverage,
    chosen: np.ndarray,
    k: int,
    rng: np.random.Generator,
    choose: Callable[[Coverage], int],
    progress: Progress = NO_PROGRESS,
) -> tuple[np.ndarray, np.ndarray]:
    """The loop of every K-center variant: ``chosen`` (or, with none, one row drawn
    uniformly from ``rng``) as the first centers, then ``k`` picks of ``choose(coverage)``,
    each folded in. Returns the picks and their exact squared distances at pick time
    (NaN for a first random pick)."""
    picks = np.empty(k, dtype=np.int64)
    first = 0
    if len(chosen):
        coverage.add_centers(chosen)
    else:
        picks[0] = rng.integers(len(coverage.x))
        coverage.add_centers(picks[:1])
        progress.advance(1)
        first = 1
    for t in range(first, k):
        picks[t] = choose(coverage)
        coverage.add_centers(picks[t : t + 1])
        progress.advance(1)
    return picks, coverage.pick_sq_distances(len(chosen))


def outlier_count(outliers: float, size: int) -> int:
    """``z`` from the ``outliers`` parameter: a row count when ≥ 1, else a pool fraction."""
    return int(outliers) if outliers >= 1 else math.floor(outliers * size)


def robust_kcenter(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    outliers: float = 0.01,
    epsilon: float = 0.5,
    mode: str = "sample",
    metric: str = "euclidean",
    whiten_to: int | None = None,
    device: str = DEFAULT_DEVICE,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen`` by Ding et al.'s outlier-robust greedy (module doc)."""
    chosen = requested(len(vectors), chosen, k)
    if mode not in MODES:
        raise SelectionError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    z = outlier_count(outliers, len(vectors))
    window = max(1, math.floor((1 + epsilon) * z)) if mode == "sample" else z + 1
    x = features(vectors, metric, whiten_to)
    rng = np.random.default_rng(seed)

    def choose(coverage: Coverage) -> int:
        rows, _ = exact_ranking(coverage, window)
        if mode == "sample":
            return int(rows[rng.integers(len(rows))])
        return int(rows[-1])  # the (z+1)-th farthest, or the nearest left

    with make_coverage(x, device, lookahead=False) as coverage:
        picks, sq = coverage_picks(coverage, chosen, k, rng, choose, progress)
    return Selection(picks, distances=reported_distances(sq, metric, whiten_to))


class RobustKCenterStrategy(VectorStrategy):
    name = "kcenter-robust"
    summary = (
        "K-center robust to outliers: next center drawn among the (1+ε)·z farthest rows "
        "(Ding et al. 2019), or the z farthest skipped"
    )
    parameters = (
        Param(
            "outliers",
            float,
            0.01,
            "expected outliers z: a row count when ≥ 1, else a fraction of the pool",
            minimum=0,
            maximum=1e9,
        ),
        Param(
            "epsilon",
            float,
            0.5,
            "sample mode: draw among the ⌊(1+ε)·z⌋ farthest rows",
            minimum=0,
            maximum=100,
        ),
        Param(
            "mode",
            str,
            "sample",
            "sample: seeded draw in the window (Ding et al.); trim: the (z+1)-th farthest",
            choices=MODES,
        ),
        METRIC_PARAM,
        WHITEN_PARAM,
    )

    def __init__(self, options=None, device: str = DEFAULT_DEVICE):
        super().__init__(options, device)
        outliers = self.options["outliers"]
        if outliers >= 1 and outliers != int(outliers):
            raise ParamError(
                f"strategy {self.name}: --outliers {outliers:g} must be a whole number of "
                "rows when ≥ 1 (or a fraction below 1)"
            )

    function = staticmethod(robust_kcenter)
