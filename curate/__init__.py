"""curate: self-evolved diverse data sampling (DiverseEvol) for instruction tuning.

The Python API (see :mod:`curate.api`), imported on first use so that ``import curate``
and the command line start fast::

    import curate

    pool = curate.Pool("data/lancedb")
    selection = pool.select(budget=100)
    subset = curate.write_subset(selection, "data/subsets/kc-100")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "Pool": "curate.api",
    "write_subset": "curate.api",
    "load_subset": "curate.api",
    "train": "curate.api",
    "evaluate": "curate.api",
    "CurateError": "curate.errors",
    "Param": "curate.plugins",
    "Strategy": "curate.strategies",
    "Selection": "curate.strategies",
    "PoolArrays": "curate.strategies",
    "STRATEGIES": "curate.strategies",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'curate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
