"""Longest responses first: the baseline of "Long Is More for Alignment" (Zhao et al.
2024, arXiv:2402.04833), which most data selectors fail to beat at scale (Xia et al. 2024,
arXiv:2410.09335).

A row's length is the characters of its response: the assistant turns of a conversation,
the output otherwise. Picks are the ``k`` longest unchosen rows, longest first, ties to the
lowest pool position; the seed is not used. ``Selection.scores`` holds each pick's length.
"""

from __future__ import annotations

import numpy as np

from curate.errors import SelectionError
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import PoolArrays, Selection, Strategy, unchosen_mask
from curate.strategies.kcenter import check_request


def longest(lengths: np.ndarray, chosen: np.ndarray, k: int) -> Selection:
    """The ``k`` unchosen rows of largest ``lengths`` (ties to the lowest position)."""
    check_request(len(lengths), chosen, k)
    free = np.flatnonzero(unchosen_mask(len(lengths), chosen))
    order = free[np.lexsort((free, -lengths[free]))][:k]
    return Selection(order.astype(np.int64), scores=lengths[order].astype(np.float64))


class LongestStrategy(Strategy):
    name = "longest"
    summary = "the rows with the longest responses first (Zhao et al. 2024's baseline)"
    parameters = ()
    needs_lengths = True

    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        if pool.lengths is None:
            raise SelectionError("longest needs the response lengths of the pool's rows")
        selection = longest(pool.lengths, chosen, k)
        progress.advance(k)
        return selection
