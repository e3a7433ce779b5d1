"""Geometry the strategies beyond K-center share: an exact k-nearest-neighbour graph
computed blockwise with BLAS, and each pick's distance to the rows chosen before it.

Both are exact against the float64 definition K-center uses
(:func:`curate.strategies.coverage.paired_sq_distances`): the bulk work is the float32
expansion ``|x|² + |y|² − 2x·y`` and only the pairs within its proven error bound of the
decision are re-checked in float64, so results equal a float64 full-matrix
implementation, ties going to the lowest pool position.
"""

from __future__ import annotations

import math

import numpy as np

from curate.progress import NO_PROGRESS, Progress
from curate.strategies.coverage import (
    BLOCK_ELEMENTS,
    expansion_error_bound,
    expansion_sq_distances,
    paired_sq_distances,
    row_sq_norms,
    shortlisted_min,
)

KNN_BLOCK_BYTES = 64 << 20  # float32 distances held per row block of the kNN graph


def knn_graph(
    x: np.ndarray, k: int, progress: Progress = NO_PROGRESS
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's ``k`` nearest other rows: (N, k) int64 positions and (N, k) float64
    exact squared distances, nearest first (ties to the lowest position).

    O(N²·d) flops in float32 GEMMs of (block × N), O(N·k) memory plus one block of about
    64 MiB; ``progress`` advances by rows."""
    n = len(x)
    if not 1 <= k <= n - 1:
        raise ValueError(f"need 1 <= k <= {n - 1} neighbours, got {k}")
    sq, top = row_sq_norms(x)
    slack = 2 * expansion_error_bound(x.shape[1], top) * (1 + 1e-6)
    step = max(1, KNN_BLOCK_BYTES // (4 * n))
    indices = np.empty((n, k), dtype=np.int64)
    sq_dist = np.empty((n, k))
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        approx = expansion_sq_distances(x[r0:r1], sq[r0:r1], x, sq)
        approx[np.arange(r1 - r0), np.arange(r0, r1)] = np.inf  # not its own neighbour
        kth = np.partition(approx, k - 1, axis=1)[:, k - 1].astype(np.float64)
        row_at, col_at = np.nonzero(approx <= (kth + slack)[:, None])  # grouped by row
        exact = np.empty(len(row_at))
        pair_step = max(1, BLOCK_ELEMENTS // (2 * max(x.shape[1], 1)))
        for p0 in range(0, len(row_at), pair_step):
            pairs = slice(p0, p0 + pair_step)
            exact[pairs] = paired_sq_distances(x[r0 + row_at[pairs]], x[col_at[pairs]])
        order = np.lexsort((col_at, exact, row_at))  # by row, nearest, lowest position
        starts = np.searchsorted(row_at, np.arange(r1 - r0))  # row_at ascends
        take = order[starts[:, None] + np.arange(k)[None, :]]
        indices[r0:r1] = col_at[take]
        sq_dist[r0:r1] = exact[take]
        progress.advance(r1 - r0)
    return indices, sq_dist


def pick_sq_distances(x: np.ndarray, chosen: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Exact squared distance of ``picks[t]`` to ``chosen`` and ``picks[:t]`` (the distance
    at pick time; NaN for a first pick with nothing chosen before it). O(k·(|chosen|+k)·d)."""
    rows = np.concatenate([chosen, picks]).astype(np.int64)
    centers = np.ascontiguousarray(x[rows])
    centers_sq, top = row_sq_norms(centers)
    bound = expansion_error_bound(x.shape[1], top)
    out = np.full(len(picks), math.nan)
    first = len(chosen)
    step = max(1, BLOCK_ELEMENTS // max(len(rows), 1))
    for b0 in range(first, len(rows), step):
        b1 = min(b0 + step, len(rows))
        lo = max(b0, 1)
        if lo >= b1:
            continue
        out[lo - first : b1 - first] = shortlisted_min(
            centers[lo:b1],
            centers_sq[lo:b1],
            centers[: b1 - 1],
            centers_sq[: b1 - 1],
            bound,
            hi=np.arange(lo, b1),
        )
    return out


def reported_distances(sq: np.ndarray, metric: str, whiten_to: int | None) -> np.ndarray:
    """Squared feature distances as the manifest reports them, as K-center does: cosine
    distance (1 − cos = d²/2) for unwhitened cosine features, else Euclidean."""
    return sq / 2 if metric == "cosine" and not whiten_to else np.sqrt(sq)
