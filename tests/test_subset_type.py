"""One subset type: what `select` returns and what `load_subset` reads are both `Subset`,
and every view of a subset (select's summary, `subsets show`) reads `Manifest.summary()`,
with the keys, in the order, each printed before."""

from __future__ import annotations

import pytest

import curate
from curate.errors import SubsetError
from curate.subsets import Subset, load_subset, summarize

SELECT_KEYS = [
    "name", "strategy", "params", "size", "added", "embedded", "ranks", "parent",
    "embeddings", "coverage_radius", "seconds", "hygiene", "warnings",
]  # fmt: skip
SHOW_KEYS = [
    "path", "name", "strategy", "params", "seed", "size", "budget", "parent", "pool",
    "embeddings", "created_by", "manifest_sha256", "examples_sha256", "coverage", "inherited",
    "categories",
]  # fmt: skip


def test_a_selection_and_a_loaded_subset_are_one_type_with_the_same_views(pool_db, tmp_path):
    db, _, _ = pool_db
    pool = curate.Pool(db)
    first = pool.select(6, embeddings="plain", seed=2)
    assert isinstance(first, Subset) and first.location is None
    with pytest.raises(SubsetError, match="not written yet"):
        _ = first.path
    written = curate.write_subset(first, tmp_path / "rd_0")
    assert written.path == tmp_path / "rd_0" and written.ids == first.ids
    assert list(first.to_dict()) == SELECT_KEYS
    assert written.to_dict() == first.to_dict()  # what select printed, after writing too

    child = pool.select(add=3, parent=written.path, embeddings="plain", seed=2)
    summary = child.to_dict()
    m = child.manifest.summary()
    assert summary["size"] == m["size"] == 9 and summary["added"] == child.added == 3
    assert (
        summary["coverage_radius"] == m["coverage"]["last"] == child.manifest.picks[-1]["distance"]
    )
    assert summary["parent"] == child.manifest.to_dict()["parent"] == m["parent"]
    assert "picks" not in m and m["inherited"] == 6

    loaded = load_subset(curate.write_subset(child, tmp_path / "rd_1").path)
    assert isinstance(loaded, Subset) and loaded.manifest == load_subset(tmp_path / "rd_1").manifest
    shown = summarize(loaded)
    assert list(shown) == SHOW_KEYS
    assert shown["coverage"] == loaded.manifest.summary()["coverage"]
    assert (shown["size"], shown["inherited"]) == (9, 6)
