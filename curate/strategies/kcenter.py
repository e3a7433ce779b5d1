"""Greedy K-center (DiverseEvol's selection): repeatedly add the row farthest from the
chosen set.

The objective (each row's distance to its nearest center, kept exact by a float32 pass
plus a float64 re-check of the few candidates) lives in :mod:`curate.strategies.coverage`;
this module is the loop around it, the feature transforms (cosine, whitening) and the
device choice. Picks equal the naive full-matrix algorithm's on the same input: the first
center is the parent (or one seeded random row), each pick is the unchosen row with the
largest float64 squared distance to its nearest center, ties to the lowest pool position.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from curate.devices import DEFAULT_DEVICE
from curate.errors import SelectionError
from curate.plugins import Param, ParamError
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection, VectorStrategy
from curate.strategies.coverage import DEFAULT_CHUNK_ROWS, Coverage, block_rows
from curate.strategies.coverage_numpy import NumpyCoverage

METRICS = ("euclidean", "cosine")
# The feature transform's parameters, declared once for every strategy that measures
# distances with :func:`features`.
METRIC_PARAM = Param("metric", str, "euclidean", "distance between vectors", choices=METRICS)
WHITEN_PARAM = Param(
    "whiten",
    int,
    None,
    "measure on PCA-whitened, normalised vectors with this many components (at most the "
    "vector size)",
    minimum=1,
    maximum=65536,
)


# ----------------------------------------------------------------------------- features
def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows (zero rows stay zero)."""
    out = np.empty(x.shape, dtype=np.float32)
    step = block_rows(x.shape[1])
    for s in range(0, len(x), step):
        block = x[s : s + step].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        norms[norms == 0] = 1.0
        out[s : s + step] = block / norms[:, None]
    return out


def whiten(x: np.ndarray, n_components: int) -> np.ndarray:
    """BERT-whitening as in the DiverseEvol reference: centre, rotate onto the top
    ``n_components`` principal axes, scale each to unit variance, then L2-normalise."""
    n, dim = x.shape
    if not 1 <= n_components <= dim:
        raise ParamError(  # a bad option value: usage error, exit 2
            f"--whiten must be between 1 and the vector size {dim}, got {n_components}"
        )
    if n < 2:
        raise SelectionError("--whiten needs at least 2 pool rows")
    step = block_rows(dim)
    total = np.zeros(dim)
    gram = np.zeros((dim, dim))
    for s in range(0, n, step):
        block = x[s : s + step].astype(np.float64)
        total += block.sum(axis=0)
        gram += block.T @ block
    mean = total / n
    cov = (gram - n * np.outer(mean, mean)) / (n - 1)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:n_components]
    scale = np.sqrt(np.maximum(eigvals[order], eigvals.max(initial=0.0) * 1e-12 + 1e-30))
    kernel = eigvecs[:, order] / scale
    out = np.empty((n, n_components), dtype=np.float32)
    for s in range(0, n, step):
        out[s : s + step] = (x[s : s + step].astype(np.float64) - mean) @ kernel
    return normalize_rows(out)


def features(
    vectors: np.ndarray, metric: str = "euclidean", whiten_to: int | None = None
) -> np.ndarray:
    """The float32 rows K-center measures Euclidean distance between."""
    if metric not in METRICS:
        raise SelectionError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if whiten_to:
        return whiten(x, whiten_to)
    return normalize_rows(x) if metric == "cosine" else x


# ----------------------------------------------------------------------------- devices
def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def make_coverage(
    x: np.ndarray,
    device: str = DEFAULT_DEVICE,
    prune: bool = True,
    chunk_rows: int | None = None,
    workers: int | None = None,
    lookahead: bool = True,
) -> Coverage:
    """The objective for ``device`` (use it as a context manager around the loop).
    ``auto`` uses CUDA when present, without importing torch on machines with no NVIDIA
    driver; ``torch-cpu`` runs the torch backend on the CPU (tests). ``prune``,
    ``lookahead``, ``chunk_rows`` and ``workers`` tune the CPU backend; picks never change."""
    if device == "auto" and not _nvidia_driver_present():
        device = "cpu"
    if device == "cpu":
        return NumpyCoverage(x, chunk_rows, prune, workers, lookahead)
    try:
        import torch
    except ImportError:
        raise SelectionError(f"--device {device} needs torch (pip install torch)") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            return NumpyCoverage(x, chunk_rows, prune, workers, lookahead)
    if device == "torch-cpu":
        device = "cpu"
    elif not torch.cuda.is_available():
        raise SelectionError(f"--device {device} requested but no CUDA device is available")
    from curate.strategies.coverage_torch import TorchCoverage

    try:
        return TorchCoverage(x, device, chunk_rows or DEFAULT_CHUNK_ROWS * 16)
    except torch.OutOfMemoryError:
        raise SelectionError(
            f"the vectors ({x.nbytes / 2**30:.1f} GiB) do not fit on {device}; use --device cpu"
        ) from None


# ----------------------------------------------------------------------------- the loop
def greedy(
    coverage: Coverage, k: int, progress: Progress = NO_PROGRESS
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` greedy picks from an objective that already holds its first centers:
    (pool positions, exact squared distance of each to the chosen set when picked)."""
    start = len(coverage.centers)
    picks = np.empty(k, dtype=np.int64)
    for t in range(k):
        picks[t] = coverage.farthest()
        coverage.add_centers(picks[t : t + 1])
        progress.advance(1)
    return picks, coverage.pick_sq_distances(start)


def requested(size: int, chosen: np.ndarray | None, k: int) -> np.ndarray:
    """``chosen`` as int64 pool positions (none: empty), the request checked."""
    positions = np.asarray(chosen if chosen is not None else [], dtype=np.int64)
    check_request(size, positions, k)
    return positions


def prepared(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    metric: str = "euclidean",
    whiten_to: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What every vector strategy function starts from: (its features, the chosen
    positions), the request checked first."""
    positions = requested(len(vectors), chosen, k)
    return features(vectors, metric, whiten_to), positions


def check_request(size: int, chosen: np.ndarray, k: int) -> None:
    if k < 1:
        raise SelectionError(f"nothing to select: {k} new picks requested")
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= size):
        raise SelectionError(f"chosen positions must lie in [0, {size})")
    if len(np.unique(chosen)) != len(chosen):
        raise SelectionError("the chosen set lists a row twice")
    if k > size - len(chosen):
        raise SelectionError(
            f"cannot add {k} rows: the pool has {size} rows and {len(chosen)} are already chosen"
        )


def kcenter_greedy(
    vectors: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    metric: str = "euclidean",
    whiten_to: int | None = None,
    device: str = DEFAULT_DEVICE,
    prune: bool = True,
    chunk_rows: int | None = None,
    workers: int | None = None,
    lookahead: bool = True,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """Add ``k`` rows to ``chosen`` by greedy K-center; with nothing chosen, the first pick
    is a seeded random row (its distance is NaN). Distances are Euclidean, or cosine
    distance (1 − cos) with ``metric="cosine"``."""
    x, chosen = prepared(vectors, chosen, k, metric, whiten_to)
    with make_coverage(x, device, prune, chunk_rows, workers, lookahead) as coverage:
        if len(chosen):
            coverage.add_centers(chosen)
            picks, sq = greedy(coverage, k, progress)
        else:
            first = int(np.random.default_rng(seed).integers(len(x)))
            coverage.add_centers([first])
            progress.advance(1)
            rest, rest_sq = greedy(coverage, k - 1, progress)
            picks = np.concatenate([[first], rest]).astype(np.int64)
            sq = np.concatenate([[math.nan], rest_sq])
    distances = sq / 2 if metric == "cosine" and not whiten_to else np.sqrt(sq)
    return Selection(picks, distances=distances)


class KCenterStrategy(VectorStrategy):
    name = "kcenter"
    summary = "greedy K-center: the row farthest from everything chosen (DiverseEvol)"
    parameters = (METRIC_PARAM, WHITEN_PARAM)

    function = staticmethod(kcenter_greedy)
