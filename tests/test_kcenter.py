"""K-center greedy against a naive full-matrix implementation, plus the other strategies.

The reference (the `naive_kcenter` fixture in conftest.py) is the textbook algorithm: the
full N×N float64 distance matrix, then per pick the row with the largest distance to its
nearest chosen row (np.argmax: ties to the lowest position). Every backend and setting
must reproduce its picks exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import SelectionError
from curate.plugins import ParamError
from curate.strategies import STRATEGIES, PoolArrays, make_strategy
from curate.strategies.coverage import exact_sq_distances, expansion_error_bound
from curate.strategies.coverage_numpy import NumpyCoverage
from curate.strategies.kcenter import kcenter_greedy, whiten
from curate.strategies.random import random_picks
from curate.strategies.uncertainty import rank_by_score


def dataset(kind: str, n: int = 600, d: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((n, d)).astype(np.float32)
    if kind == "clustered":
        centers = rng.standard_normal((8, d)) * 4
        return (centers[rng.integers(8, size=n)] + 0.2 * rng.standard_normal((n, d))).astype(
            np.float32
        )
    if kind == "duplicates":  # exact ties: every row appears three times
        base = rng.standard_normal((n // 3, d)).astype(np.float32)
        return base[rng.permutation(np.repeat(np.arange(n // 3), 3))]
    if kind == "lattice":  # small integers: many equal distances, exact in any precision
        return rng.integers(-2, 3, size=(n, 4)).astype(np.float32)
    if kind == "offset":  # far from the origin: float32 expansion error >> gaps between distances
        return (1000.0 + 0.01 * rng.standard_normal((n, d))).astype(np.float32)
    raise ValueError(kind)


BACKENDS = {
    "numpy": dict(device="cpu"),
    "numpy-small-chunks": dict(device="cpu", chunk_rows=64),
    "numpy-threads": dict(device="cpu", chunk_rows=100, workers=2),
    "numpy-no-prune": dict(device="cpu", prune=False, chunk_rows=100),
    "numpy-one-center-per-pass": dict(device="cpu", lookahead=False, chunk_rows=100),
    "torch": dict(device="torch-cpu", chunk_rows=128),
}


@pytest.mark.parametrize("kind", ["gaussian", "clustered", "duplicates", "lattice", "offset"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_picks_equal_naive_full_matrix(kind, backend, naive_kcenter):
    x = dataset(kind)
    sel = kcenter_greedy(x, None, 60, seed=3, **BACKENDS[backend])
    first = int(sel.indices[0])
    assert first == int(np.random.default_rng(3).integers(len(x)))
    picks, sq = naive_kcenter(x, [first], 59)
    assert sel.indices.tolist() == [first, *picks]
    assert np.isnan(sel.distances[0])
    np.testing.assert_array_equal(sel.distances[1:], np.sqrt(sq))


@pytest.mark.parametrize("backend", ["numpy", "numpy-threads", "torch"])
def test_parent_is_the_initial_chosen_set(backend, naive_kcenter):
    x = dataset("clustered", n=500)
    parent = [7, 300, 42, 499, 0]
    sel = kcenter_greedy(x, np.array(parent), 40, seed=0, **BACKENDS[backend])
    picks, sq = naive_kcenter(x, parent, 40)
    assert sel.indices.tolist() == picks
    assert not set(parent) & set(sel.indices.tolist())
    np.testing.assert_array_equal(sel.distances, np.sqrt(sq))
    assert np.all(np.diff(sel.distances) <= 0)  # the coverage radius never grows


def test_exact_ties_go_to_the_lowest_pool_position():
    # a near row first, then three rows at distance 3 that keep tying as centres are added
    x = np.array([[0, 0], [1, 0], [0, 3], [3, 0], [0, -3]], dtype=np.float32)
    for device in ("cpu", "torch-cpu"):
        sel = kcenter_greedy(x, np.array([0]), 4, seed=0, device=device)
        assert sel.indices.tolist() == [2, 3, 4, 1]
        np.testing.assert_array_equal(sel.distances, [3, 3, 3, 1])


def test_float32_alone_would_pick_differently_and_we_do_not():
    """On data far from the origin the float32 expansion cannot order the rows; the
    float64 re-check still reproduces the reference."""
    x = dataset("offset", n=300)
    cov = NumpyCoverage(x)
    cov.add_centers([0])
    x64 = x.astype(np.float64)
    exact = ((x64 - x64[0]) ** 2).sum(axis=1)
    exact[0] = -np.inf
    approx = cov.m.astype(np.float64)
    assert int(np.argmax(approx)) != int(np.argmax(exact))  # float32 alone gets it wrong
    assert cov.farthest() == int(np.argmax(exact))


def test_error_bound_holds_for_float32_expansion():
    rng = np.random.default_rng(1)
    for scale, offset in ((1.0, 0.0), (0.01, 50.0), (30.0, -3.0)):
        x = (offset + scale * rng.standard_normal((400, 96))).astype(np.float32)
        cov = NumpyCoverage(x, prune=False)
        cov.add_centers([5])
        exact = exact_sq_distances(x, x[5:6])[:, 0]
        gap = np.abs(np.where(np.isinf(cov.m), exact, cov.m) - exact)
        gap[5] = 0
        assert gap.max() <= cov.bound
        max_sq_norm = float(exact_sq_distances(x, np.zeros((1, 96))).max())
        assert cov.bound == pytest.approx(expansion_error_bound(96, max_sq_norm), rel=1e-12)


def test_negative_float32_distances_are_clamped():
    """Duplicated rows far from the origin: the unclamped float32 expansion
    |x|² + |c|² − 2x·c of a row and its own copy goes below zero (a NaN after a square
    root); the objective never holds a negative value, and a copy of a center stays
    within the expansion's error bound of 0."""
    x = dataset("duplicates", n=90, d=8) * np.float32(300.0)
    centers = np.arange(0, 90, 9)
    sq = np.einsum("ij,ij->i", x, x)
    raw = sq[:, None] + sq[centers][None, :] - 2 * (x @ x[centers].T)
    twins = (x[:, None, :] == x[centers][None, :, :]).all(axis=2)
    assert (raw[twins] < 0).any(), "the data must drive the unclamped expansion below zero"
    cov = NumpyCoverage(x)
    cov.add_centers(centers)
    covered = twins.any(axis=1)
    assert np.all(cov.m[np.isfinite(cov.m)] >= 0)
    twin_m = cov.m[covered & np.isfinite(cov.m)]
    assert len(twin_m) and np.all(twin_m <= expansion_error_bound(8, float(sq.max())))


def pick_in_lockstep(first: NumpyCoverage, second: NumpyCoverage, k: int) -> None:
    """Start both from row 0 and make ``k`` picks with each: they must be the same."""
    for cov in (first, second):
        cov.add_centers([0])
    for _ in range(k):
        a, b = first.farthest(), second.farthest()
        assert a == b
        first.add_centers([a])
        second.add_centers([b])


def test_pruning_skips_rows_on_clustered_data_with_the_same_picks():
    x = dataset("clustered", n=3000, d=16)
    pruned = NumpyCoverage(x, chunk_rows=512, prune=True, lookahead=False)
    full = NumpyCoverage(x, chunk_rows=512, prune=False, lookahead=False)
    pick_in_lockstep(pruned, full, 80)
    assert pruned.rows_scanned < 0.5 * full.rows_scanned


@pytest.mark.parametrize("kind", ["gaussian", "clustered"])
def test_lookahead_blocks_serve_many_picks_per_pass_with_the_same_picks(kind):
    x = dataset(kind, n=3000, d=16)
    ahead = NumpyCoverage(x, chunk_rows=512)
    single = NumpyCoverage(x, chunk_rows=512, lookahead=False)
    pick_in_lockstep(ahead, single, 200)
    assert single.blocks_computed == 201  # one pass over the vectors per pick
    assert ahead.blocks_computed < 201 / 3
    chosen = np.isinf(single.m)
    np.testing.assert_array_equal(np.isinf(ahead.m), chosen)
    # the same float32 expansion, summed in another order: within the error bound of each other
    assert np.abs(ahead.m[~chosen] - single.m[~chosen]).max() <= 2 * ahead.bound


def test_cosine_and_whitening_are_kcenter_on_transformed_rows(naive_kcenter):
    x = dataset("gaussian", n=300, d=12) + np.float32(0.5)
    unit = (x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
    sel = kcenter_greedy(x, np.array([0]), 25, seed=0, metric="cosine", device="cpu")
    picks, sq = naive_kcenter(unit, [0], 25)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.distances, np.array(sq) / 2)  # 1 − cos on unit rows

    # whitening as the DiverseEvol reference writes it (SVD of np.cov), up to component signs
    mu = x.mean(axis=0, keepdims=True, dtype=np.float64)
    u, s, _ = np.linalg.svd(np.cov(x.astype(np.float64).T))
    ref = (x - mu) @ (u @ np.diag(1 / np.sqrt(s)))[:, :6]
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours = whiten(x, 6)
    np.testing.assert_allclose(ours @ ours.T, ref @ ref.T, atol=1e-5)
    with pytest.raises(ParamError, match="--whiten must be between 1 and"):  # exit 2
        whiten(x, 13)


@pytest.mark.parametrize(
    "chosen, k, message",
    [
        ([], 0, "nothing to select"),
        ([1, 1], 2, "twice"),
        ([0, 1], 9, "cannot add 9 rows"),
        ([10], 1, "lie in"),
    ],
)
def test_impossible_requests_are_selection_errors(chosen, k, message):
    with pytest.raises(SelectionError, match=message):
        kcenter_greedy(dataset("gaussian", n=10), np.array(chosen, dtype=np.int64), k, seed=0)


# ----------------------------------------------------------------------------- other strategies


def test_random_is_seeded_uniform_over_unchosen_rows():
    chosen = np.arange(0, 100, 2)
    a, b = random_picks(100, chosen, 30, seed=5), random_picks(100, chosen, 30, seed=5)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 30
    assert not set(a.tolist()) & set(chosen.tolist())
    assert a.tolist() != random_picks(100, chosen, 30, seed=6).tolist()
    draws = np.concatenate([random_picks(10, np.array([3]), 1, s) for s in range(900)])
    counts = np.bincount(draws, minlength=10)
    assert counts[3] == 0 and np.delete(counts, 3).min() > 60  # ~100 each over 9 open rows


@pytest.mark.parametrize(
    "name, expected",
    [("least-confidence", [2, 4, 0]), ("margin", [1, 3, 4]), ("entropy", [3, 1, 0])],
)
def test_uncertainty_rankings_follow_the_paper(name, expected):
    scores = {
        "least_confidence": np.array([0.3, 0.9, 0.1, 0.5, 0.2], np.float32),
        "margin": np.array([0.7, 0.1, 0.9, 0.4, 0.4], np.float32),
        "entropy": np.array([1.0, 2.0, 0.5, 3.0, 1.0], np.float32),
    }
    sel = make_strategy(name).select(
        PoolArrays(5, scores=scores), np.array([], np.int64), 3, seed=0
    )
    assert sel.indices.tolist() == expected
    column = make_strategy(name).score_column
    np.testing.assert_array_equal(sel.scores, scores[column][expected])


def test_uncertainty_ties_keep_pool_order_and_skip_chosen():
    scores = np.array([1.0, 0.5, 0.5, 0.5, 2.0])
    assert rank_by_score(scores, np.array([2]), 3, descending=False).tolist() == [1, 3, 0]
    assert rank_by_score(scores, np.array([4]), 2, descending=True).tolist() == [0, 1]


def test_uncertainty_without_scores_says_what_to_run():
    with pytest.raises(SelectionError, match="`lm:` embedder"):
        make_strategy("entropy").select(PoolArrays(3), np.array([], np.int64), 1, seed=0)
    nan = {"margin": np.array([0.1, np.nan, 0.3], np.float32)}
    with pytest.raises(SelectionError, match="1 rows have a NaN"):
        make_strategy("margin").select(PoolArrays(3, scores=nan), np.array([], np.int64), 1, seed=0)


def test_registry_names_and_unknown_strategy():
    assert list(STRATEGIES)[:5] == ["kcenter", "random", "least-confidence", "margin", "entropy"]
    assert STRATEGIES.get("kcenter").needs_vectors and not STRATEGIES.get("random").needs_vectors
    with pytest.raises(ParamError, match="unknown strategy 'vendi'"):
        make_strategy("vendi")
