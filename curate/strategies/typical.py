"""Typical picks for low budgets: TypiClust (Hacohen, Dekel & Weinshall 2022,
*Active Learning on a Budget*, arXiv:2202.02794).

At a low budget the rows worth learning from first are the typical ones, dense regions of
the pool, not the outliers K-center takes first (the same paper and ProbCover/MaxHerding,
arXiv:2407.12212, measure coverage picks losing to random there). TypiClust:

1. k-means with as many clusters as the final subset (already-chosen rows + ``k``), seeded
   as :mod:`curate.strategies.clusters` seeds it, so at least ``k`` clusters hold no
   chosen row (are *uncovered*), unless k-means leaves some empty.
2. Uncovered clusters in order of size (largest first, ties to the lowest cluster index);
   from each, its most *typical* unchosen row: typicality is the inverse of the mean
   distance to the row's ``neighbors`` nearest rows of its own cluster (fewer in a smaller
   cluster; a single-row cluster has typicality 0). Ties go to the lowest pool position.
3. Should the uncovered clusters run out before ``k`` picks, further passes over every
   cluster with unchosen rows take each one's next most typical row, clusters with fewer
   picks first, then larger ones.

Distances are exact (:func:`curate.strategies.neighbors.knn_graph`, float64 re-checks).
Cost: k-means O(iterations·N·C·d) with C = |chosen| + k, then a kNN graph inside each
cluster, O(Σ size²·d); memory O(N·neighbors) besides the vectors.
"""

from __future__ import annotations

import numpy as np

from curate.plugins import Param
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy, unchosen_mask
from curate.strategies.clusters import kmeans
from curate.strategies.kcenter import METRIC_PARAM, WHITEN_PARAM, prepared
from curate.strategies.neighbors import knn_graph, pick_sq_distances, reported_distances


def typicality(x: np.ndarray, neighbors: int) -> np.ndarray:
    """1 / mean distance to each row's ``neighbors`` nearest other rows of ``x`` (as many
    as there are); 0 for a single row."""
    n = len(x)
    if n < 2:
        return np.zeros(n)
    _, sq = knn_graph(x, min(neighbors, n - 1))
    mean = np.sqrt(sq).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mean > 0, 1.0 / mean, np.inf)  # duplicates: as typical as it gets


def typical_picks(
    x: np.ndarray, labels: np.ndarray, chosen: np.ndarray, k: int, neighbors: int
) -> np.ndarray:
    """``k`` picks given cluster ``labels`` (module doc, steps 2 and 3)."""
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.zeros(n_clusters, dtype=bool)
    covered[labels[chosen]] = True
    free = unchosen_mask(len(x), chosen)
    queues: dict[int, list[int]] = {}  # cluster -> its unchosen rows, most typical first
    for c in range(n_clusters):
        members = np.flatnonzero(labels == c)
        rows = members[free[members]]
        if len(rows):
            typ = typicality(x[members], neighbors)[free[members]]
            queues[c] = rows[np.lexsort((rows, -typ))].tolist()
    taken = dict.fromkeys(queues, 0)
    picks: list[int] = []
    first = sorted((c for c in queues if not covered[c]), key=lambda c: (-sizes[c], c))
    for c in first[:k]:
        picks.append(queues[c][0])
        taken[c] = 1
    while len(picks) < k:
        open_ = sorted(
            (c for c in queues if taken[c] < len(queues[c])),
            key=lambda c: (taken[c], -sizes[c], c),
        )
        for c in open_[: k - len(picks)]:
            picks.append(queues[c][taken[c]])
            taken[c] += 1
    return np.asarray(picks, dtype=np.int64)


def typical(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    neighbors: int = 20,
    iterations: int = 25,
    metric: str = "euclidean",
    whiten_to: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen``: the most typical row of each uncovered k-means cluster."""
    x, chosen = prepared(vectors, chosen, k, metric, whiten_to)
    labels, _ = kmeans(x, min(len(x), len(chosen) + k), np.random.default_rng(seed), iterations)
    picks = typical_picks(x, labels, chosen, k, neighbors)
    progress.advance(k)
    sq = pick_sq_distances(x, chosen, picks)
    return Selection(picks, distances=reported_distances(sq, metric, whiten_to))


class TypicalStrategy(VectorStrategy):
    name = "typical"
    summary = (
        "the most typical (densest) row of each k-means cluster without a pick: "
        "TypiClust, for low budgets (Hacohen et al. 2022)"
    )
    parameters = (
        Param("neighbors", int, 20, "nearest rows of its cluster that measure a row's density",
              minimum=1),
        Param("iterations", int, 25, "most Lloyd iterations of k-means", minimum=1),
        METRIC_PARAM,
        WHITEN_PARAM,
    )  # fmt: skip

    function = staticmethod(typical)
