"""Density-aware K-center, after NovelSelect (Yang et al. 2025, *Measuring Data Diversity
for Instruction Tuning*, arXiv:2502.17184).

NovelSum scores a row's novelty by its distance to the chosen set weighted by the
*information density* around it (the inverse of its mean distance to its nearest
neighbours), so a far row in a populated region counts for more than a far outlier
alone in empty space. NovelSelect greedily adds the row of largest weighted novelty.
This strategy keeps that idea in K-center's form (one running minimum, O(N) memory):

    score(i) = ρ(i) · D(i, S)
    ρ(i)     = ( r̄ / max(r(i), r̄ / 100) ) ** β

where ``D(i, S)`` is the Euclidean distance (in the chosen ``metric``'s feature space)
from row i to its nearest chosen row, ``r(i)`` the root mean square of the distances
from row i to its ``neighbors`` nearest other pool rows (NovelSum's density uses the
mean *squared* L2 distance to 10 neighbours: ``r(i)⁻¹`` is its density with power 1/2),
``r̄`` the mean of ``r`` over the pool, and ``β`` is ``density_power``. The floor
``r̄ / 100`` keeps duplicates (``r = 0``) from an infinite weight. Each pick is the
unchosen row with the largest score (ties to the lowest position); with nothing chosen
the first is a seeded random row. ``β = 0`` is plain greedy K-center.

Compared with NovelSelect's code this drops the rank-discounted sum over *all* chosen
rows (its nearest-row term dominates) and the chosen row's own density, which would
make a pick cost O(N·|S|·log|S|); see the paper for the full metric.

Cost: the kNN graph, O(N²·d) in float32 BLAS blocks (an exact float64 re-check of the
boundary pairs), O(N·neighbors) memory; then per pick one pass over the vectors as
K-center, plus the exact re-check of the few rows whose bounds reach the leader.
"""

from __future__ import annotations

import numpy as np

from curate.devices import DEFAULT_DEVICE
from curate.plugins import Param
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy
from curate.strategies.kcenter import (
    METRIC_PARAM,
    WHITEN_PARAM,
    make_coverage,
    prepared,
)
from curate.strategies.neighbors import knn_graph, reported_distances
from curate.strategies.robust import coverage_picks, exact_ranking

FLOOR = 100.0  # r(i) is floored at r̄ / FLOOR


def density_weights(
    x: np.ndarray, neighbors: int, power: float, progress: Progress = NO_PROGRESS
) -> np.ndarray:
    """ρ(i) of the module doc for every row (all ones when ``power`` is 0 or the pool is
    a single point)."""
    n = len(x)
    if power == 0 or n < 2:
        return np.ones(n)
    progress.start(n, "rows", "neighbours for density")
    _, sq = knn_graph(x, min(neighbors, n - 1), progress)
    r = np.sqrt(sq.mean(axis=1))
    mean = r.mean()
    if mean == 0:  # every row coincides with its neighbours
        return np.ones(n)
    return (mean / np.maximum(r, mean / FLOOR)) ** power


def density_kcenter(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    neighbors: int = 10,
    density_power: float = 1.0,
    metric: str = "euclidean",
    whiten_to: int | None = None,
    device: str = DEFAULT_DEVICE,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen`` by density-weighted greedy K-center (module doc);
    ``Selection.distances`` are the plain (unweighted) distances at pick time."""
    x, chosen = prepared(vectors, chosen, k, metric, whiten_to)
    rho = density_weights(x, neighbors, density_power, progress)
    progress.start(k, "picks", "select kcenter-density")
    weight = rho * rho  # argmax ρ·D = argmax ρ²·D²
    rng = np.random.default_rng(seed)  # the first pick only, as K-center's
    with make_coverage(x, device, lookahead=density_power == 0) as coverage:
        picks, sq = coverage_picks(
            coverage, chosen, k, rng, lambda c: int(exact_ranking(c, 1, weight)[0][0]), progress
        )
    return Selection(picks, distances=reported_distances(sq, metric, whiten_to))


class DensityKCenterStrategy(VectorStrategy):
    name = "kcenter-density"
    summary = (
        "K-center with distances weighted by local density from the nearest neighbours "
        "(NovelSelect, Yang et al. 2025): far rows in populated regions first"
    )
    parameters = (
        Param("neighbors", int, 10, "nearest neighbours that measure local density", minimum=1),
        Param(
            "density_power",
            float,
            1.0,
            "β in weight = (mean radius / radius)^β; 0 is plain K-center",
            minimum=0,
            maximum=10,
        ),
        METRIC_PARAM,
        WHITEN_PARAM,
    )

    function = staticmethod(density_kcenter)
