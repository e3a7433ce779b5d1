"""A test-only strategy plugin: every ``step``-th unchosen pool position from ``offset``."""

import numpy as np

from curate.plugins import Param
from curate.strategies import PoolArrays, Selection, Strategy
from curate.strategies.base import unchosen_mask


class StrideStrategy(Strategy):
    name = "stride"
    summary = "every step-th unchosen row (a test plugin)"
    parameters = (
        Param("step", int, 2, "distance between picks", minimum=1),
        Param("offset", int, 0, "first unchosen row to pick", minimum=0),
    )

    def select(self, pool: PoolArrays, chosen, k, seed, progress=None) -> Selection:
        open_rows = np.flatnonzero(unchosen_mask(pool.size, chosen))
        picks = open_rows[self.options["offset"] :: self.options["step"]][:k]
        if len(picks) < k:
            raise ValueError(f"stride cannot make {k} picks")
        if progress is not None:
            progress.advance(k)
        return Selection(picks.astype(np.int64))
