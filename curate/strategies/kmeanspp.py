"""k-means++ (D²) sampling: K-center softened (Arthur and Vassilvitskii 2007).

Instead of the row farthest from the chosen set, each pick is drawn (seeded) with
probability proportional to its squared distance to the nearest chosen row, so far rows
are likely but a lone outlier is one row among many; already-chosen rows (a parent) are
the initial centers, and with nothing chosen the first pick is a uniform random row.

The squared distances are K-center's running minimum
(:mod:`curate.strategies.coverage`), the float32 expansion within its proven bound of the
exact value. The draw reads every row's value, so it runs on the CPU backend whatever the
device (a GPU's float32 rounding could move a draw across a boundary); the same inputs
and seed give the same picks.

Cost per pick: one pass over the vectors (O(N·d), as K-center) plus an O(N) cumulative
sum. Memory O(N).
"""

from __future__ import annotations

import numpy as np

from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy
from curate.strategies.coverage import Coverage
from curate.strategies.kcenter import (
    METRIC_PARAM,
    WHITEN_PARAM,
    make_coverage,
    prepared,
)
from curate.strategies.neighbors import reported_distances
from curate.strategies.robust import coverage_picks


def d2_draw(weights: np.ndarray, rng) -> int:
    """A position drawn with probability proportional to ``weights`` (≥ 0, not all 0) by
    the inverse CDF of one uniform draw; a drawn position always has a positive weight."""
    cumulative = np.cumsum(weights)
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def kmeanspp_sampling(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    metric: str = "euclidean",
    whiten_to: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen`` by D² sampling (module doc)."""
    x, chosen = prepared(vectors, chosen, k, metric, whiten_to)
    rng = np.random.default_rng(seed)

    def choose(coverage: Coverage) -> int:
        m = coverage.m  # type: ignore[attr-defined]  # the CPU backend's running minimum
        live = np.isfinite(m)
        weights = np.where(live, m, 0.0).astype(np.float64)
        if weights.sum() > 0:
            return d2_draw(weights, rng)
        return int(np.flatnonzero(live)[0])  # every unchosen row sits on a chosen one

    with make_coverage(x, "cpu", lookahead=False) as coverage:
        picks, sq = coverage_picks(coverage, chosen, k, rng, choose, progress)
    return Selection(picks, distances=reported_distances(sq, metric, whiten_to))


class KMeansPPStrategy(VectorStrategy):
    name = "kmeans-pp"
    summary = (
        "k-means++ D² sampling: rows drawn with probability ∝ squared distance to the chosen "
        "set (K-center softened, seeded)"
    )
    parameters = (
        METRIC_PARAM,
        WHITEN_PARAM,
    )

    function = staticmethod(kmeanspp_sampling)
