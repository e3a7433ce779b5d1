"""Test-only plugins: strategies (every ``step``-th unchosen pool position from ``offset``;
the highest of one score column) and an embedder (letter counts, and the vowels' share of
the letters as a score column)."""

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


class TopScoreStrategy(Strategy):
    """The ``k`` unchosen rows of highest ``reads_scores[0]``, ties to the lowest position;
    refuses any score column it did not declare (the declaration is all it is given)."""

    name = "entropy-top"
    summary = "highest stored entropy first (a test plugin)"
    reads_scores = ("entropy",)

    def select(self, pool: PoolArrays, chosen, k, seed, progress=None) -> Selection:
        if set(pool.scores) != set(self.reads_scores):
            raise ValueError(f"{self.name} was given the scores {sorted(pool.scores)}")
        scores = pool.scores[self.reads_scores[0]]
        open_rows = np.flatnonzero(unchosen_mask(pool.size, chosen))
        picks = open_rows[np.argsort(-scores[open_rows], kind="stable")][:k]
        if progress is not None:
            progress.advance(k)
        return Selection(picks.astype(np.int64), scores=scores[picks].astype(np.float64))


class VowelShareStrategy(TopScoreStrategy):
    name = "vowels"
    summary = "highest share of vowels first (a test plugin; reads chars: scores)"
    reads_scores = ("vowel_share",)


class CharCountEmbedder(Embedder):
    """A test-only embedder plugin: letter counts a..z of the instruction, scaled by the
    spec's target (``chars:2`` doubles them); asked for scores, the vowels' share of them."""

    name = "chars"
    summary = "letter counts of the instruction (a test plugin)"
    pooling = "letter-counts"
    text_format = "instruction"
    score_columns = ("vowel_share",)

    def embed_batch(self, rows):
        scale = float(self.model_path)
        vectors = np.zeros((len(rows), 26), np.float32)
        for i, row in enumerate(rows):
            for ch in row["instruction"].lower():
                if "a" <= ch <= "z":
                    vectors[i, ord(ch) - 97] += scale
        if not self.with_scores:
            return BatchResult(vectors)
        vowels = vectors[:, [ord(v) - 97 for v in "aeiou"]].sum(axis=1)
        return BatchResult(vectors, {"vowel_share": vowels / np.maximum(vectors.sum(axis=1), 1)})
