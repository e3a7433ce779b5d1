"""Facility location: coverage of the whole pool instead of K-center's worst case.

K-center minimises the largest distance from any row to the chosen set, so one isolated
row can steer a pick. Facility location maximises how well *every* row is represented,

    f(S) = Σ_i max_{j ∈ S} s(i, j),

a monotone submodular function, so the greedy (each pick the row of largest gain
``f(S + j) − f(S)``) is within 1 − 1/e of the optimum; QDIT (Bukharin et al. 2023,
arXiv:2311.14736) selects instruction data with it. Here ``s(i, j) = max(0, 1 − d²/2)``
on unit-normalised (optionally whitened) vectors, which is the cosine similarity clamped
at 0, kept only on the sparse graph of each row's ``neighbors`` nearest other rows (and
the row itself, ``s = 1``): row i is represented only by its neighbours. Memory is
O(N·neighbors) instead of the dense N×N similarity matrix; with ``neighbors = N − 1``
the objective and the picks are exactly the dense greedy's.

The greedy is *lazy* (Minoux 1978): gains only shrink as S grows, so each row keeps its
last gain as an upper bound in a heap, and a popped row whose recomputed gain still tops
the heap is the argmax (ties to the lowest pool position, as the naive greedy's
``argmax``). Rows already chosen cover their neighbours from the start; the seed is not
used (the first pick is the row of largest gain).

Cost: the kNN graph, O(N²·d) in float32 BLAS blocks (exact float64 re-check of the
boundary pairs); then each gain evaluation is O(in-degree) and lazy greedy evaluates
few rows per pick in practice. ``Selection.scores`` holds each pick's gain.
"""

from __future__ import annotations

import heapq

import numpy as np

from curate.plugins import Param
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy
from curate.strategies.kcenter import WHITEN_PARAM, prepared
from curate.strategies.neighbors import knn_graph, pick_sq_distances, reported_distances


class SimilarityGraph:
    """Sparse similarities by column: ``rows[ptr[j]:ptr[j+1]]`` are the rows i that j can
    represent (those with j among their neighbours, and j itself), ascending, with
    ``sims`` their s(i, j)."""

    def __init__(self, neighbours: np.ndarray, sq_distances: np.ndarray):
        n, k = neighbours.shape
        rows = np.concatenate([np.repeat(np.arange(n), k), np.arange(n)])
        cols = np.concatenate([neighbours.ravel(), np.arange(n)])
        sims = np.concatenate([np.maximum(1.0 - sq_distances.ravel() / 2.0, 0.0), np.ones(n)])
        order = np.lexsort((rows, cols))
        self.rows, self.sims = rows[order], sims[order]
        self.ptr = np.searchsorted(cols[order], np.arange(n + 1))

    def column(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.ptr[j], self.ptr[j + 1]
        return self.rows[a:b], self.sims[a:b]

    def gain(self, j: int, cover: np.ndarray) -> float:
        """f(S + j) − f(S), with ``cover[i] = max_{s ∈ S} s(i, s)``."""
        rows, sims = self.column(j)
        return float(np.maximum(sims - cover[rows], 0.0).sum())

    def all_gains(self, cover: np.ndarray) -> np.ndarray:
        """Every column's gain at once (rounded differently from :meth:`gain`: callers
        that need an upper bound add slack)."""
        contrib = np.maximum(self.sims - cover[self.rows], 0.0)
        return np.add.reduceat(contrib, self.ptr[:-1])  # every column holds its own row

    def add(self, j: int, cover: np.ndarray) -> None:
        """Add j to S: the rows it represents better are now covered by it."""
        rows, sims = self.column(j)
        cover[rows] = np.maximum(cover[rows], sims)


def lazy_greedy(
    graph: SimilarityGraph, size: int, chosen: np.ndarray, k: int, progress: Progress = NO_PROGRESS
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` greedy picks maximising the facility-location objective on ``graph`` after
    ``chosen``: (pool positions, gain of each)."""
    cover = np.zeros(size)
    for j in chosen:
        graph.add(int(j), cover)
    bounds = graph.all_gains(cover)
    bounds = bounds * (1 + 1e-9) + 1e-12  # a safe upper bound on the exact gains
    unchosen = np.ones(size, dtype=bool)
    unchosen[chosen] = False
    heap = [(-float(bounds[j]), int(j)) for j in np.flatnonzero(unchosen)]
    heapq.heapify(heap)
    picks = np.empty(k, dtype=np.int64)
    gains = np.empty(k)
    t = 0
    while t < k:
        _, j = heapq.heappop(heap)
        g = graph.gain(j, cover)
        if heap and (-g, j) > heap[0]:
            heapq.heappush(heap, (-g, j))  # a stale bound: another row may gain more
            continue
        picks[t], gains[t] = j, g
        graph.add(j, cover)
        progress.advance(1)
        t += 1
    return picks, gains


def facility_location(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    *,
    neighbors: int = 20,
    whiten_to: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen`` by lazy greedy facility location (module doc)."""
    x, chosen = prepared(vectors, chosen, k, "cosine", whiten_to)
    n = len(x)
    if n > 1:
        progress.start(n, "rows", "neighbour graph")
        neighbours, sq = knn_graph(x, min(neighbors, n - 1), progress)
    else:
        neighbours, sq = np.zeros((1, 0), np.int64), np.zeros((1, 0))
    graph = SimilarityGraph(neighbours, sq)
    progress.start(k, "picks", "select facility-location")
    picks, gains = lazy_greedy(graph, n, chosen, k, progress)
    distances = reported_distances(pick_sq_distances(x, chosen, picks), "cosine", whiten_to)
    return Selection(picks, distances=distances, scores=gains)


class FacilityLocationStrategy(VectorStrategy):
    name = "facility-location"
    summary = (
        "facility location by lazy greedy on a kNN cosine-similarity graph (as in QDIT): "
        "every row well represented, not just the farthest"
    )
    parameters = (
        Param(
            "neighbors",
            int,
            20,
            "neighbours per row in the similarity graph (N − 1: the dense objective)",
            minimum=1,
        ),
        WHITEN_PARAM,
    )

    function = staticmethod(facility_location)
