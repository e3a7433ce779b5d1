"""Subset diversity: Vendi score against the vendi-score package, coverage against brute
force, and `curate eval subset` on a real LanceDB pool with embeddings and subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate.errors import EmbeddingError, EvalError
from curate.evaluation.diversity import (
    coverage_distances,
    evaluate_subset,
    nearest_distances,
    vendi_score,
)
from curate.store import Store


@pytest.fixture
def pool_store(store, tmp_path, build_pool, write_embeddings) -> tuple[Store, np.ndarray]:
    build_pool(store, tmp_path)
    return store, write_embeddings(store, "e")


# ------------------------------------------------------------------ Vendi score


def _package_vendi(x: np.ndarray) -> float:
    from vendi_score import vendi

    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return float(vendi.score_K(unit @ unit.T))


@pytest.mark.parametrize("n, d", [(200, 16), (12, 40), (30, 30)])  # dual form, primal form, square
def test_vendi_matches_the_vendi_score_package(n, d):
    x = np.random.default_rng(n * d).normal(size=(n, d)) * np.linspace(0.2, 3.0, d)
    assert vendi_score(x) == pytest.approx(_package_vendi(x), abs=1e-6)
    assert vendi_score(x.astype(np.float32)) == pytest.approx(_package_vendi(x), abs=1e-4)


def test_vendi_counts_distinct_directions():
    """k orthogonal directions, each repeated, have Vendi score exactly k; scale is ignored."""
    base = np.eye(5)[:3]
    x = np.repeat(base, 4, axis=0) * np.arange(1, 13)[:, None]
    assert vendi_score(x) == pytest.approx(3.0, abs=1e-9)
    assert vendi_score(np.ones((7, 4))) == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------ coverage


@pytest.mark.parametrize("chunk", [7, 1 << 22])  # many blocks, one block
def test_nearest_distances_match_brute_force(chunk):
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(301, 9)).astype(np.float32)
    centers = pool[rng.choice(301, 13, replace=False)]
    p, c = pool.astype(np.float64), centers.astype(np.float64)
    brute = np.sqrt(((p[:, None, :] - c[None, :, :]) ** 2).sum(-1)).min(axis=1)
    got = nearest_distances(pool, centers, chunk_elements=chunk)
    np.testing.assert_allclose(got, brute, rtol=1e-9, atol=1e-7)  # sqrt of rounding at 0
    assert not np.isnan(got).any()


def test_cosine_coverage_is_one_minus_the_best_cosine():
    rng = np.random.default_rng(2)
    pool = rng.normal(size=(120, 5)).astype(np.float32)
    chosen = np.array([3, 50, 77])
    unit = pool.astype(np.float64) / np.linalg.norm(pool, axis=1, keepdims=True)
    brute = 1 - (unit @ unit[chosen].T).max(axis=1)
    got = coverage_distances(pool, chosen, "cosine")
    np.testing.assert_allclose(got, brute, atol=1e-6)
    assert (got[chosen] == 0).all()
    with pytest.raises(EvalError, match="unknown metric"):
        coverage_distances(pool, chosen, "manhattan")


# ------------------------------------------------------------------ evaluate_subset on a real store


def test_evaluate_subset_on_a_real_pool(pool_store, tmp_path, make_subset):
    store, matrix = pool_store
    positions = [3, 17, 0, 29, 8, 21]
    subset = make_subset(store, tmp_path / "rd_0", positions)
    metrics = evaluate_subset(store, subset)  # embeddings default to the manifest's

    brute = np.sqrt(((matrix[:, None, :] - matrix[None, positions, :]) ** 2).sum(-1)).min(axis=1)
    assert metrics["n"] == 6 and metrics["pool_rows"] == 40 and metrics["embeddings"] == "e"
    assert metrics["vendi"] == pytest.approx(
        _package_vendi(matrix[positions].astype(np.float64)), abs=1e-5
    )
    assert metrics["coverage_radius"] == pytest.approx(brute.max(), rel=1e-6)
    assert metrics["mean_coverage"] == pytest.approx(brute.mean(), rel=1e-6)
    # build_pool gives row i the category POOL_CATEGORIES[i % 4]
    assert metrics["categories"] == {"brainstorming": 2, "open_qa": 3, "summarization": 1}
    assert metrics["category_entropy"] == pytest.approx(
        -(2 / 6 * np.log(2 / 6) + 3 / 6 * np.log(3 / 6) + 1 / 6 * np.log(1 / 6))
    )
    assert list(metrics["n_chars"]) == ["p5", "p25", "p50", "p75", "p95", "p100"]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_coverage_radius_is_the_distance_of_kcenters_next_pick(pool_store, tmp_path, metric):
    """Measured in the selection's own metric: after k K-center picks, the radius is the
    distance at which K-center makes pick k + 1."""
    from curate.select import SelectRequest, select

    store, _ = pool_store

    def kcenter(budget):
        request = SelectRequest(
            "kcenter", {"metric": metric}, budget=budget, embeddings="e", name=f"kc{budget}"
        )
        return select(store, request).write(tmp_path / f"kc{budget}")

    subset, longer = kcenter(7), kcenter(8)
    metrics = evaluate_subset(store, subset.path)
    assert metrics["metric"] == metric
    assert metrics["coverage_radius"] == pytest.approx(
        longer.manifest.picks[7]["distance"], rel=1e-5
    )


def test_subset_errors_name_what_to_do(pool_store, tmp_path, make_subset, build_pool):
    store, _ = pool_store
    random_subset = make_subset(store, tmp_path / "random", [0, 1], embeddings=None)
    with pytest.raises(EvalError, match="pass --embeddings NAME"):
        evaluate_subset(store, random_subset)
    with pytest.raises(EmbeddingError, match="no embeddings named 'nope'"):
        evaluate_subset(store, random_subset, "nope")

    other = Store(tmp_path / "other-db")
    build_pool(other, tmp_path / "other", rows=10, salt=" (edited)")
    # same ids as in our pool, different content: matched on (id, hash), so it is refused
    foreign = make_subset(other, tmp_path / "foreign", [0])
    with pytest.raises(EvalError, match=r"1 of 1 picks are not in the pool"):
        evaluate_subset(store, foreign, "e")


def test_cli_eval_subset_writes_scalar_metrics(pool_store, tmp_path, cli, make_subset):
    store, _ = pool_store
    subset = make_subset(store, tmp_path / "rd_0", [0, 5, 10, 15])
    out = tmp_path / "metrics" / "subset.json"
    result = cli("eval", "subset", subset, "--db", store.path, "--out", out, "--json")
    assert result.code == 0, result.err
    written = json.loads(out.read_text())
    assert written == result.json()
    assert written["n"] == 4 and written["vendi"] > 1.0
    for value in written.values():  # dvc metrics: scalars or dicts of scalars
        assert isinstance(value, int | float | str) or all(
            isinstance(v, int | float) for v in value.values()
        )
