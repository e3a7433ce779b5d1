"""The paper's uncertainty baselines: rank unchosen rows by a score the ``lm:`` embedder stored.

- least-confidence: lowest mean top logit over the response tokens first
- margin: smallest mean (top-1 − top-2) logit first
- entropy: highest mean predictive entropy first

Ties keep pool order (stable sort), so results are deterministic.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from curate.errors import SelectionError
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import PoolArrays, Selection, Strategy, unchosen_mask


def rank_by_score(scores: np.ndarray, chosen: np.ndarray, k: int, descending: bool) -> np.ndarray:
    """The ``k`` unchosen positions with the lowest (or highest) score, best first."""
    candidates = np.flatnonzero(unchosen_mask(len(scores), chosen))
    values = scores[candidates].astype(np.float64)
    order = np.argsort(-values if descending else values, kind="stable")[:k]
    return candidates[order].astype(np.int64)


class UncertaintyStrategy(Strategy):
    """Ranks by the one score column a subclass declares in ``reads_scores``."""

    descending: ClassVar[bool]

    @property
    def score_column(self) -> str:
        return self.reads_scores[0]

    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        scores = pool.scores.get(self.score_column)
        if scores is None:
            raise SelectionError(
                f"strategy {self.name!r} needs the {self.score_column!r} score; "
                "embed with an `lm:` embedder and --scores (or --for-strategy), which stores it"
            )
        bad = ~np.isfinite(scores)
        if bad.any():
            raise SelectionError(
                f"{int(bad.sum())} rows have a NaN/inf {self.score_column!r} score; "
                "re-run `curate embed` with an `lm:` embedder"
            )
        picks = rank_by_score(scores, chosen, k, self.descending)
        progress.advance(k)
        return Selection(picks, scores=scores[picks].astype(np.float64))


class LeastConfidence(UncertaintyStrategy):
    name = "least-confidence"
    summary = "lowest mean top logit over the response first (needs lm: embeddings)"
    reads_scores = ("least_confidence",)
    descending = False


class Margin(UncertaintyStrategy):
    name = "margin"
    summary = "smallest mean top-1 minus top-2 logit first (needs lm: embeddings)"
    reads_scores = ("margin",)
    descending = False


class Entropy(UncertaintyStrategy):
    name = "entropy"
    summary = "highest mean predictive entropy first (needs lm: embeddings)"
    reads_scores = ("entropy",)
    descending = True
