"""Uniform random picks: DiverseEvol's round 0 and the baseline every strategy must beat."""

from __future__ import annotations

import numpy as np

from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import PoolArrays, Selection, Strategy, unchosen_mask


def random_picks(size: int, chosen: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` distinct positions drawn uniformly from those not in ``chosen``."""
    candidates = np.flatnonzero(unchosen_mask(size, chosen))
    order = np.random.default_rng(seed).permutation(len(candidates))[:k]
    return candidates[order].astype(np.int64)


class RandomStrategy(Strategy):
    name = "random"
    summary = "uniform random picks (DiverseEvol's round 0, the baseline to beat)"

    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        picks = random_picks(pool.size, chosen, k, seed)
        progress.advance(k)
        return Selection(picks)
