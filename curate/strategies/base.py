"""What every selection strategy takes and returns.

Strategies are pure functions of arrays and a seed: no I/O, no global RNG. The caller
(``curate.select``) loads the pool, vectors and parent, and turns the :class:`Selection`
into a subset artifact.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from curate.devices import DEFAULT_DEVICE
from curate.errors import SelectionError
from curate.plugins import Plugin
from curate.progress import NO_PROGRESS, Progress


@dataclass(frozen=True)
class PoolArrays:
    """The inputs a strategy may read, aligned to pool order (row i = pool position i)."""

    size: int
    vectors: np.ndarray | None = None  # (size, d) float32
    # column -> (size,) float32: the columns the strategy's reads_scores names
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    lengths: np.ndarray | None = None  # (size,) int64 characters of each row's response(s)


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


class Strategy(Plugin, ABC):
    """One way to add ``k`` rows to an already-chosen set.

    A strategy is one class: its ``name``, a one-line ``summary``, what it reads
    (``needs_vectors``, ``needs_lengths``, and ``reads_scores``: the score columns it takes
    from ``PoolArrays.scores``, e.g. ``("entropy",)``, which the embeddings must hold) and
    its ``parameters`` (:class:`~curate.plugins.Param`) are class attributes, and
    :meth:`select` is the one method to write. ``self.options`` holds every parameter's
    value (checked against the declaration), ``self.device`` where to compute (``auto``,
    ``cpu``, ``cuda``; it never changes the picks). Register it with one line in
    :mod:`curate.strategies` or, from another package, an entry point in the
    ``curate.strategies`` group.
    """

    needs_vectors: ClassVar[bool] = False
    reads_scores: ClassVar[tuple[str, ...]] = ()  # score columns (an embedder's score_columns)
    needs_lengths: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None, device: str = DEFAULT_DEVICE):
        self.options = self.resolve_params(options)
        self.device = device

    @classmethod
    def kind_label(cls) -> str:
        return "strategy"

    def params(self) -> dict[str, Any]:
        """The parameters that change the result; written to the manifest."""
        return {p.name: self.options[p.name] for p in self.parameters if p.recorded}

    @abstractmethod
    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        """Pick ``k`` pool positions not in ``chosen`` (int64 positions, in their order),
        reporting picks through ``progress.advance`` (the caller has called ``start``)."""


def unchosen_mask(size: int, chosen: np.ndarray) -> np.ndarray:
    mask = np.ones(size, dtype=bool)
    mask[chosen] = False
    return mask


class VectorStrategy(Strategy):
    """A strategy that reads the pool's vectors through one strategy function.

    ``function`` is ``f(vectors, chosen, k, [seed], *, <parameters>, [device], progress)``
    returning a :class:`Selection`: the base checks the vectors are present and calls it with
    every declared parameter as the keyword of its name (``keywords`` renames one, e.g.
    ``whiten`` → ``whiten_to``), plus ``seed`` and ``device`` where its signature takes them.
    A subclass declares its parameters and ``function = staticmethod(f)``; nothing else.
    """

    needs_vectors = True
    function: ClassVar[Callable[..., Selection]]
    keywords: ClassVar[Mapping[str, str]] = MappingProxyType({"whiten": "whiten_to"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A parameter the function has no keyword for fails when the class is defined."""
        super().__init_subclass__(**kwargs)
        function = cls.__dict__.get("function")
        if function is None:
            return  # an abstract middle class, or one that overrides pick()
        takes = inspect.signature(function).parameters
        missing = [p.name for p in cls.parameters if cls.keywords.get(p.name, p.name) not in takes]
        if missing:
            raise TypeError(f"strategy {cls.name!r}: its function takes no {missing[0]!r}")

    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        if pool.vectors is None:
            raise SelectionError(f"{self.name} needs embeddings; run `curate embed` first")
        return self.pick(pool.vectors, chosen, k, seed, progress)

    def pick(
        self, vectors: np.ndarray, chosen: np.ndarray, k: int, seed: int, progress: Progress
    ) -> Selection:
        """Pick ``k`` rows of ``vectors`` not in ``chosen``, as :meth:`Strategy.select`."""
        function = type(self).function
        takes = inspect.signature(function).parameters
        arguments = {
            self.keywords.get(p.name, p.name): self.options[p.name] for p in self.parameters
        }
        context = {"seed": seed, "device": self.device}
        arguments |= {name: value for name, value in context.items() if name in takes}
        return function(vectors, chosen, k, **arguments, progress=progress)
