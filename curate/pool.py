"""``curate pool``: what is in the pool table."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from curate.store import Store

PERCENTILES = (5, 25, 50, 75, 95, 100)


def summarize(store: Store) -> dict[str, Any]:
    """Rows, sources, categories, duplicates dropped at ingest, length percentiles, version."""
    table = store.read_pool(["source", "category", "n_chars", "messages"])
    n_chars = np.asarray(table["n_chars"].to_pylist() or [0])
    duplicates = store.ingest_log_totals()["duplicates"]
    categories = Counter(c for c in table["category"].to_pylist() if c is not None)
    return {
        "db": str(store.path),
        "version": store.pool_version(),
        "rows": table.num_rows,
        "multi_turn": sum(m is not None for m in table["messages"].to_pylist()),
        "sources": dict(sorted(Counter(table["source"].to_pylist()).items())),
        "categories": dict(sorted(categories.items())),
        "duplicates_dropped": duplicates,
        "n_chars_percentiles": {f"p{p}": int(np.percentile(n_chars, p)) for p in PERCENTILES},
    }
