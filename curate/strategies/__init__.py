"""Selection strategies, chosen by name from :data:`STRATEGIES`.

Each strategy is a :class:`~curate.strategies.base.Strategy`: a pure function of pool
arrays, the already-chosen positions, a budget and a seed, returning a
:class:`~curate.strategies.base.Selection`, with its parameters declared on the class.
Adding one is a module with its class plus one line in the tuple below; another package
adds one through the ``curate.strategies`` entry-point group instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curate.devices import DEFAULT_DEVICE
from curate.plugins import Registry
from curate.strategies.base import PoolArrays, Selection, Strategy
from curate.strategies.clusters import ClusterSampleStrategy
from curate.strategies.density import DensityKCenterStrategy
from curate.strategies.facility import FacilityLocationStrategy
from curate.strategies.ifd import IFDDiverseStrategy, IFDStrategy
from curate.strategies.kcenter import KCenterStrategy
from curate.strategies.kmeanspp import KMeansPPStrategy
from curate.strategies.longest import LongestStrategy
from curate.strategies.random import RandomStrategy
from curate.strategies.robust import RobustKCenterStrategy
from curate.strategies.typical import TypicalStrategy
from curate.strategies.uncertainty import Entropy, LeastConfidence, Margin

STRATEGIES: Registry[Strategy] = Registry(
    "curate.strategies",
    "strategy",
    (KCenterStrategy, RandomStrategy, LeastConfidence, Margin, Entropy)
    + (RobustKCenterStrategy, DensityKCenterStrategy, FacilityLocationStrategy)
    + (ClusterSampleStrategy, KMeansPPStrategy, TypicalStrategy, LongestStrategy)
    + (IFDStrategy, IFDDiverseStrategy),
)

__all__ = ["STRATEGIES", "PoolArrays", "Selection", "Strategy", "make_strategy"]


def make_strategy(
    name: str, options: Mapping[str, Any] | None = None, device: str = DEFAULT_DEVICE
) -> Strategy:
    """The strategy called ``name`` with its parameters checked against its declaration."""
    return STRATEGIES.get(name)(options, device)
