"""Uniform random picks: DiverseEvol's round 0 and the baseline every strategy must beat."""

from __future__ import annotations

import numpy as np

from curate.strategies.base import OnPick, PoolArrays, Selection, Strategy, unchosen_mask


def random_picks(size: int, chosen: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` distinct positions drawn uniformly from those not in ``chosen``."""
    candidates = np.flatnonzero(unchosen_mask(size, chosen))
    order = np.random.default_rng(seed).permutation(len(candidates))[:k]
    return candidates[order].astype(np.int64)


class RandomStrategy(Strategy):
    name = "random"

    def select(
        self, pool: PoolArrays, chosen: np.ndarray, k: int, seed: int, on_pick: OnPick | None = None
    ) -> Selection:
        picks = random_picks(pool.size, chosen, k, seed)
        if on_pick is not None:
            on_pick(k)
        return Selection(picks)
