"""Test-only plugins: a strategy (every ``step``-th unchosen pool position from ``offset``)
and an embedder (letter counts)."""

import numpy as np

from curate.embedders import BatchResult, Embedder
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


class CharCountEmbedder(Embedder):
    """A test-only embedder plugin: letter counts a..z of the instruction, scaled by the
    spec's target (``chars:2`` doubles them)."""

    name = "chars"
    summary = "letter counts of the instruction (a test plugin)"
    pooling = "letter-counts"
    text_format = "instruction"

    def embed_batch(self, rows):
        scale = float(self.model_path)
        vectors = np.zeros((len(rows), 26), np.float32)
        for i, row in enumerate(rows):
            for ch in row["instruction"].lower():
                if "a" <= ch <= "z":
                    vectors[i, ord(ch) - 97] += scale
        return BatchResult(vectors)
