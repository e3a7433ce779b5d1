"""What every selection strategy takes and returns.

Strategies are pure functions of arrays and a seed: no I/O, no global RNG. The caller
(``curate.select``) loads the pool, vectors and parent, and turns the :class:`Selection`
into a subset artifact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

OnPick = Callable[[int], None]  # called with the number of new picks made so far


@dataclass(frozen=True)
class PoolArrays:
    """The inputs a strategy may read, aligned to pool order (row i = pool position i)."""

    size: int
    vectors: np.ndarray | None = None  # (size, d) float32
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)  # column -> (size,) float32


@dataclass(frozen=True)
class Selection:
    """New picks in pick order, with what each pick was chosen for.

    ``distances[t]`` is the distance of pick t to the chosen set at the moment it was
    picked (K-center's coverage curve; NaN for a random first pick). ``scores[t]`` is the
    uncertainty score that ranked pick t.
    """

    indices: np.ndarray  # (k,) int64 pool positions
    distances: np.ndarray | None = None  # (k,) float64
    scores: np.ndarray | None = None  # (k,) float64

    def __len__(self) -> int:
        return len(self.indices)


class Strategy(ABC):
    """One way to add ``k`` rows to an already-chosen set. Settings are class attributes
    (what the strategy needs) and instance fields (its parameters, recorded in the manifest)."""

    name: ClassVar[str]
    needs_vectors: ClassVar[bool] = False
    needs_scores: ClassVar[bool] = False

    def params(self) -> dict[str, Any]:
        """Parameters that change the result; written to the manifest."""
        return {}

    @abstractmethod
    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        on_pick: OnPick | None = None,
    ) -> Selection:
        """Pick ``k`` pool positions not in ``chosen`` (int64 positions, in their order)."""


def unchosen_mask(size: int, chosen: np.ndarray) -> np.ndarray:
    mask = np.ones(size, dtype=bool)
    mask[chosen] = False
    return mask
