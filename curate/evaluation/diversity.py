"""Diversity of a subset in the pool's embedding space.

Vendi score (Friedman & Dieng 2023): exp of the Shannon entropy of the eigenvalues of
K/n, K the cosine-similarity matrix of the n chosen vectors. K/n = XXᵀ/n shares its
non-zero eigenvalues with the d × d matrix XᵀX/n, so when d < n we decompose that
instead (0.03 s instead of minutes and gigabytes at n = 15k).

Coverage: for every pool row, the distance to its nearest chosen example, in the
selection's metric: the manifest's ``metric`` and ``whiten`` go through the same feature
transform K-center used (:func:`curate.strategies.kcenter.features`), and distances are
Euclidean, or 1 − cos for ``cosine``, as K-center reports them. The radius is the largest
such distance, the quantity greedy K-center minimises: it equals the distance of the
pick K-center would make next.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import EvalError
from curate.pool import PERCENTILES
from curate.store import Store, Vectors
from curate.subsets import Subset, load_subset

CHUNK_ELEMENTS = 1 << 22  # pool-rows × centers per block of the distance computation


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def vendi_score(vectors: np.ndarray) -> float:
    """Vendi score of the rows of ``vectors`` under cosine similarity."""
    x = _unit_rows(np.asarray(vectors, dtype=np.float64))
    n, d = x.shape
    if n == 0:
        return 0.0
    gram = (x.T @ x) / n if d < n else (x @ x.T) / n
    eigenvalues = np.linalg.eigvalsh(gram)
    p = eigenvalues[eigenvalues > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def nearest_distances(
    pool: np.ndarray, centers: np.ndarray, chunk_elements: int = CHUNK_ELEMENTS
) -> np.ndarray:
    """Euclidean distance from every pool row to its nearest center, in bounded blocks."""
    if len(centers) == 0:
        raise EvalError("coverage needs at least one chosen example")
    centers = np.asarray(centers, dtype=np.float64)
    center_sq = (centers * centers).sum(axis=1)
    out = np.empty(len(pool), dtype=np.float64)
    step = max(1, chunk_elements // len(centers))
    for start in range(0, len(pool), step):
        block = np.asarray(pool[start : start + step], dtype=np.float64)
        sq = (block * block).sum(axis=1)[:, None] + center_sq[None, :] - 2.0 * (block @ centers.T)
        # rounding can make |x|² + |c|² − 2x·c slightly negative: clamp before the root
        out[start : start + len(block)] = np.sqrt(np.maximum(sq.min(axis=1), 0.0))
    return out


def coverage_distances(
    matrix: np.ndarray, chosen: np.ndarray, metric: str = "euclidean", whiten: int | None = None
) -> np.ndarray:
    """Each row's distance to its nearest chosen row, measured as the selection measured it."""
    from curate.errors import SelectionError
    from curate.strategies.kcenter import features

    try:  # features() checks the metric against the one list K-center accepts
        x = features(matrix, metric, whiten)
    except SelectionError as err:
        raise EvalError(f"cannot measure coverage: {err}") from None
    distances = nearest_distances(x, x[chosen])
    distances[chosen] = 0.0
    if metric == "cosine" and not whiten:
        distances = distances**2 / 2  # squared distance of unit vectors / 2 = 1 − cos
    return distances


def shannon_entropy(counts: list[int]) -> float:
    total = sum(counts)
    return float(-sum(c / total * math.log(c / total) for c in counts if c)) if total else 0.0


def length_percentiles(n_chars: list[int]) -> dict[str, int]:
    values = np.asarray(n_chars or [0])
    return {f"p{p}": int(np.percentile(values, p)) for p in PERCENTILES}


def pick_rows(vectors: Vectors, subset: Subset, store: Store) -> np.ndarray:
    """Pool positions of a subset's picks (matched on id and content hash), in pick order."""
    row_of = {key: i for i, key in enumerate(zip(vectors.ids, vectors.hashes, strict=True))}
    picks = subset.manifest.keys
    missing = [pid for pid, phash in picks if (pid, phash) not in row_of]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise EvalError(
            f"{subset.path}: {len(missing)} of {len(picks)} picks are not in the pool at "
            f"{store.path} with the same content ({shown}); selected from another pool?"
        )
    return np.fromiter((row_of[key] for key in picks), dtype=np.int64, count=len(picks))


def evaluate_subset(
    store: Store, subset_dir: str | Path, embeddings: str | None = None, metric: str | None = None
) -> dict[str, Any]:
    """Metrics of one subset: size, Vendi score, coverage, categories and lengths.

    ``embeddings`` defaults to the ones the subset was selected with; ``metric`` (and
    whitening) to the selection's. Compare rounds with one fixed embedder (the base model or MiniLM), as the
    paper does: each round's own model measures a different space.
    """
    subset = load_subset(subset_dir)
    manifest = subset.manifest
    if embeddings is None:
        if manifest.embeddings is None:
            raise EvalError(
                f"{subset.path}: the subset names no embeddings; pass --embeddings NAME"
            )
        embeddings = manifest.embeddings.name
    params = manifest.params
    metric = metric or params.get("metric") or "euclidean"
    whiten = params.get("whiten") or None
    vectors = store.load_vectors(embeddings)
    chosen = pick_rows(vectors, subset, store)
    distances = coverage_distances(vectors.matrix, chosen, metric, whiten)
    metrics: dict[str, Any] = {
        "n": len(chosen),
        "pool_rows": len(vectors.ids),
        "vendi": vendi_score(vectors.matrix[chosen]),
        "coverage_radius": float(distances.max()) if len(distances) else 0.0,
        "mean_coverage": float(distances.mean()) if len(distances) else 0.0,
        "metric": metric,
        "whiten": whiten or 0,
        "embeddings": embeddings,
    }
    categories = Counter(e.get("category") for e in subset.examples if e.get("category"))
    if categories:
        metrics["categories"] = dict(sorted(categories.items()))
        metrics["category_entropy"] = shannon_entropy(list(categories.values()))
    metrics["n_chars"] = length_percentiles([int(e.get("n_chars") or 0) for e in subset.examples])
    return metrics
