"""Selection strategies, chosen by name.

Each strategy is a :class:`~curate.strategies.base.Strategy`: a pure function of pool
arrays, the already-chosen positions, a budget and a seed, returning a
:class:`~curate.strategies.base.Selection`. ``--strategy`` choices come from
:data:`STRATEGIES`.
"""

from __future__ import annotations

from typing import Any

from curate.errors import SelectionError
from curate.strategies.base import PoolArrays, Selection, Strategy
from curate.strategies.kcenter import KCenterStrategy
from curate.strategies.random import RandomStrategy
from curate.strategies.uncertainty import Entropy, LeastConfidence, Margin

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (KCenterStrategy, RandomStrategy, LeastConfidence, Margin, Entropy)
}

__all__ = ["STRATEGIES", "PoolArrays", "Selection", "Strategy", "make_strategy"]


def make_strategy(name: str, **params: Any) -> Strategy:
    """The strategy called ``name`` with its parameters (only kcenter takes any)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise SelectionError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return cls(**params)
