"""Cluster, then sample each cluster in proportion to its size (Yu et al. 2024,
*Diversify and Conquer*, arXiv:2409.11378, whose k-means-based selection was the strongest
diversity baseline there).

1. k-means on the round's vectors (the pool in ``metric``'s feature space): k-means++
   seeding (D² sampling from the seeded generator), then Lloyd iterations until the
   assignment stops changing or ``iterations`` run out. Ties go to the lowest cluster
   index; an emptied cluster keeps its centroid. Clusters number in seeding order.
2. Seats: the final subset (already-chosen rows + ``k``) is shared among the clusters in
   proportion to their sizes by largest-remainder (Hamilton) rounding, computed in
   integers: seats go one at a time to the cluster furthest below its share
   ``size·total/N`` (ties to the lowest cluster index), and already-chosen rows count as
   seats their cluster holds, so a cluster the parent over-filled gets none. With
   nothing chosen this is exactly largest remainder.
3. Picks inside a cluster among its unchosen rows: ``pick="random"`` a seeded uniform
   draw, ``pick="central"`` the rows nearest its centroid (ties to the lowest position).
   The picks are ordered round-robin over the clusters, so any prefix stays balanced.

``clusters`` defaults to ⌊√N⌉ (at most the subset size). The same generator seeds
k-means and then draws inside the clusters, cluster by cluster.

Cost: k-means++ O(C·N·d), each Lloyd iteration O(N·C·d) in float32 BLAS blocks (centroid
sums in float64), seats O(k·log C), the distances at pick time O(k·(|S|+k)·d);
memory O(N + C·d) besides the vectors.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from curate.errors import SelectionError
from curate.plugins import Param
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy, unchosen_mask
from curate.strategies.coverage import (
    block_rows,
    expansion_sq_distances,
    paired_sq_distances,
    row_sq_norms,
)
from curate.strategies.kcenter import METRIC_PARAM, WHITEN_PARAM, features, requested
from curate.strategies.neighbors import pick_sq_distances, reported_distances

PICKS = ("random", "central")


def kmeans_pp_seeds(x: np.ndarray, sq: np.ndarray, clusters: int, rng) -> list[int]:
    """k-means++ seeding: a uniform first row, then each next row drawn with probability
    proportional to its squared distance to the nearest seed (fewer seeds when every row
    already coincides with one)."""
    seeds = [int(rng.integers(len(x)))]
    d2 = expansion_sq_distances(x[seeds], sq[seeds], x, sq)[0].astype(np.float64)
    while len(seeds) < clusters:
        cumulative = np.cumsum(d2)
        if cumulative[-1] <= 0:
            break
        j = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        seeds.append(j)
        np.minimum(d2, expansion_sq_distances(x[j : j + 1], sq[j : j + 1], x, sq)[0], out=d2)
    return seeds


def assign(x: np.ndarray, sq: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid of every row (ties to the lowest index), in row blocks."""
    c32 = centroids.astype(np.float32)
    csq, _ = row_sq_norms(c32)
    labels = np.empty(len(x), dtype=np.int64)
    step = max(1, (1 << 22) // max(len(c32), 1))
    for s in range(0, len(x), step):
        labels[s : s + step] = expansion_sq_distances(
            x[s : s + step], sq[s : s + step], c32, csq
        ).argmin(axis=1)
    return labels


def cluster_means(
    x: np.ndarray, labels: np.ndarray, centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean of each cluster's rows (an empty cluster keeps its centroid), sizes."""
    sums = np.zeros(centroids.shape)
    counts = np.bincount(labels, minlength=len(centroids))
    step = block_rows(x.shape[1])
    for s in range(0, len(x), step):
        block = labels[s : s + step]
        order = np.argsort(block, kind="stable")
        ordered = block[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sums[ordered[starts]] += np.add.reduceat(
            x[s : s + step][order], starts, axis=0, dtype=np.float64
        )
    means = centroids.copy()
    full = counts > 0
    means[full] = sums[full] / counts[full, None]
    return means, counts


def kmeans(
    x: np.ndarray, clusters: int, rng, iterations: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means (module doc): (labels, float64 centroids = their clusters' means)."""
    sq, _ = row_sq_norms(x)
    centroids = x[kmeans_pp_seeds(x, sq, clusters, rng)].astype(np.float64)
    labels = None
    for _ in range(iterations):
        fresh = assign(x, sq, centroids)
        if labels is not None and np.array_equal(fresh, labels):
            break
        labels = fresh
        centroids, _ = cluster_means(x, labels, centroids)
    if labels is None:
        raise SelectionError(f"k-means needs at least one iteration, not {iterations}")
    return labels, centroids


def seats(sizes: np.ndarray, held: np.ndarray, k: int) -> np.ndarray:
    """New seats per cluster: ``k`` seats on top of ``held`` by largest remainder of the
    proportional share of ``held.sum() + k`` (module doc), never more than a cluster's
    unchosen rows."""
    n, total = int(sizes.sum()), int(held.sum()) + k
    alloc = [int(h) for h in held]
    # deficit × N = size·total − alloc·N, exact in integers; heap of (−deficit, cluster)
    heap = [
        (alloc[c] * n - int(sizes[c]) * total, c) for c in range(len(sizes)) if alloc[c] < sizes[c]
    ]
    heapq.heapify(heap)
    for _ in range(k):
        _, c = heapq.heappop(heap)
        alloc[c] += 1
        if alloc[c] < sizes[c]:
            heapq.heappush(heap, (alloc[c] * n - int(sizes[c]) * total, c))
    return np.asarray(alloc, dtype=np.int64) - held


def cluster_sample(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    clusters: int | None = None,
    pick: str = "random",
    iterations: int = 25,
    metric: str = "euclidean",
    whiten_to: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen`` by k-means then per-cluster quotas (module doc)."""
    chosen = requested(len(vectors), chosen, k)
    if pick not in PICKS:
        raise SelectionError(f"unknown pick {pick!r}; choose from {', '.join(PICKS)}")
    n = len(vectors)
    if clusters is None:
        clusters = max(1, min(round(math.sqrt(n)), len(chosen) + k))
    if clusters > n:
        raise SelectionError(f"--clusters {clusters} is more than the pool's {n} rows")
    x = features(vectors, metric, whiten_to)
    rng = np.random.default_rng(seed)
    labels, centroids = kmeans(x, clusters, rng, iterations)
    sizes = np.bincount(labels, minlength=len(centroids))
    held = np.bincount(labels[chosen], minlength=len(centroids))
    need = seats(sizes, held, k)
    free = unchosen_mask(n, chosen)
    per_cluster = []
    for c in range(len(centroids)):
        members = np.flatnonzero(free & (labels == c))
        if need[c] == 0:
            per_cluster.append(members[:0])
        elif pick == "random":
            per_cluster.append(members[rng.permutation(len(members))[: need[c]]])
        else:
            d2 = paired_sq_distances(
                x[members], np.broadcast_to(centroids[c], (len(members), x.shape[1]))
            )
            per_cluster.append(members[np.lexsort((members, d2))[: need[c]]])
    rounds = max((len(p) for p in per_cluster), default=0)
    picks = np.array(
        [p[r] for r in range(rounds) for p in per_cluster if r < len(p)], dtype=np.int64
    )
    progress.advance(k)
    sq = pick_sq_distances(x, chosen, picks)
    return Selection(picks, distances=reported_distances(sq, metric, whiten_to))


class ClusterSampleStrategy(VectorStrategy):
    name = "cluster-sample"
    summary = (
        "k-means, then picks in each cluster in proportion to its size, random or central "
        "(Yu et al. 2024)"
    )
    parameters = (
        Param("clusters", int, None, "k-means clusters (none: √N, at most the subset)", minimum=1),
        Param(
            "pick",
            str,
            "random",
            "inside a cluster: seeded random rows, or those nearest its centroid",
            choices=PICKS,
        ),
        Param("iterations", int, 25, "most Lloyd iterations of k-means", minimum=1),
        METRIC_PARAM,
        WHITEN_PARAM,
    )

    function = staticmethod(cluster_sample)
