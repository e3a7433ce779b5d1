"""The strategies beyond K-center, each against a straightforward reference implementation.

Every reference below is the textbook algorithm on the full N×N float64 distance matrix,
with plain loops and ``np.argmax``/stable sorts for ties (lowest position first), drawing
from ``np.random.default_rng(seed)`` in the same order as the strategy documents. The
strategies must give the same picks on small random data, with and without a parent.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from curate.errors import SelectionError
from curate.plugins import ParamError
from curate.scaffold import pipeline_files, validate_params
from curate.strategies import STRATEGIES, PoolArrays, make_strategy
from curate.strategies.clusters import cluster_sample, seats
from curate.strategies.density import density_kcenter
from curate.strategies.facility import facility_location
from curate.strategies.kcenter import kcenter_greedy, normalize_rows
from curate.strategies.kmeanspp import kmeanspp_sampling
from curate.strategies.neighbors import knn_graph
from curate.strategies.robust import robust_kcenter
from curate.strategies.typical import typical
from curate.subsets import load_subset

NEW = [
    "kcenter-robust", "kcenter-density", "facility-location", "cluster-sample", "kmeans-pp",
    "typical",
]  # fmt: skip


def data(n: int = 120, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def full_sq(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=-1)


def nearest_sq(full: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Each row's squared distance to its nearest chosen row; −inf for chosen rows."""
    out = full[:, chosen].min(axis=1)
    out[chosen] = -np.inf
    return out


def by_value_desc(values: np.ndarray) -> list[int]:
    """Positions by descending value, ties to the lowest position (a stable sort)."""
    return [int(i) for i in np.argsort(-values, kind="stable")]


# ----------------------------------------------------------------------------- references
def naive_robust(x, chosen, k, seed, z, eps, mode):
    full = full_sq(x)
    rng = np.random.default_rng(seed)
    chosen, picks = list(chosen), []
    if not chosen:
        picks.append(int(rng.integers(len(x))))
        chosen.append(picks[-1])
    while len(picks) < k:
        nearest = nearest_sq(full, chosen)
        ranked = [i for i in by_value_desc(nearest) if i not in chosen]
        if mode == "sample":
            window = ranked[: max(1, int((1 + eps) * z))]
            pick = window[int(rng.integers(len(window)))]
        else:
            pick = ranked[min(z, len(ranked) - 1)]
        picks.append(pick)
        chosen.append(pick)
    return picks


def naive_density(x, chosen, k, seed, neighbors, beta):
    full = full_sq(x)
    n = len(x)
    r = np.empty(n)
    for i in range(n):
        others = np.sort(np.delete(full[i], i))[:neighbors]
        r[i] = np.sqrt(others.mean())
    rho = (r.mean() / np.maximum(r, r.mean() / 100)) ** beta
    chosen, picks = list(chosen), []
    if not chosen:
        picks.append(int(np.random.default_rng(seed).integers(n)))
        chosen.append(picks[-1])
    while len(picks) < k:
        score = rho * np.sqrt(np.maximum(nearest_sq(full, chosen), 0))
        score[chosen] = -np.inf
        picks.append(int(np.argmax(score)))
        chosen.append(picks[-1])
    return picks


def naive_facility(x, chosen, k, neighbors):
    """Dense greedy facility location on max(0, cos) restricted to each row's neighbours."""
    u = normalize_rows(x)
    full = full_sq(u)
    n = len(u)
    sim = np.maximum(1 - full / 2, 0)
    keep = np.eye(n, dtype=bool)
    for i in range(n):
        d = full[i].copy()
        d[i] = np.inf
        keep[i, np.argsort(d, kind="stable")[:neighbors]] = True
    sim[~keep] = 0.0
    cover = np.zeros(n)
    for j in chosen:
        cover = np.maximum(cover, sim[:, j])
    chosen, picks, gains = list(chosen), [], []
    for _ in range(k):
        gain = np.array([np.maximum(sim[:, j] - cover, 0).sum() for j in range(n)])
        gain[chosen] = -np.inf
        pick = int(np.argmax(gain))
        picks.append(pick)
        gains.append(gain[pick])
        chosen.append(pick)
        cover = np.maximum(cover, sim[:, pick])
    return picks, gains


def naive_kmeans(x, clusters, rng, iterations):
    full = full_sq(x)
    seeds = [int(rng.integers(len(x)))]
    while len(seeds) < clusters:
        d2 = full[:, seeds].min(axis=1)
        cumulative = np.cumsum(d2)
        seeds.append(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], "right")))
    x64 = x.astype(np.float64)
    centroids = x64[seeds]
    labels = None
    for _ in range(iterations):
        fresh = np.array([int(np.argmin(((c - centroids) ** 2).sum(axis=1))) for c in x64])
        if labels is not None and (fresh == labels).all():
            break
        labels = fresh
        for c in range(clusters):
            if (labels == c).any():
                centroids[c] = x64[labels == c].mean(axis=0)
    return labels, centroids


def naive_cluster_sample(x, chosen, k, seed, clusters, pick, iterations=25):
    rng = np.random.default_rng(seed)
    labels, centroids = naive_kmeans(x, clusters, rng, iterations)
    n, total = len(x), len(chosen) + k
    sizes = [int((labels == c).sum()) for c in range(clusters)]
    alloc = [int((labels[list(chosen)] == c).sum()) for c in range(clusters)]
    held = list(alloc)
    for _ in range(k):  # one seat at a time to the cluster furthest below its share
        open_ = [c for c in range(clusters) if alloc[c] < sizes[c]]
        best = max(open_, key=lambda c: (Fraction(sizes[c] * total, n) - alloc[c], -c))
        alloc[best] += 1
    per_cluster = []
    for c in range(clusters):
        members = [i for i in range(n) if labels[i] == c and i not in chosen]
        need = alloc[c] - held[c]
        if need == 0:
            per_cluster.append([])
        elif pick == "random":
            per_cluster.append([members[j] for j in rng.permutation(len(members))[:need]])
        else:
            dist = [((x[i].astype(np.float64) - centroids[c]) ** 2).sum() for i in members]
            order = sorted(range(len(members)), key=lambda j: (dist[j], members[j]))
            per_cluster.append([members[j] for j in order[:need]])
    rounds = max(len(p) for p in per_cluster)
    return [p[r] for r in range(rounds) for p in per_cluster if r < len(p)]


def naive_typical(x, chosen, k, seed, neighbors, iterations=25):
    """TypiClust as the paper states it, on the dense float64 distance matrix."""
    labels, _ = naive_kmeans(x, len(chosen) + k, np.random.default_rng(seed), iterations)
    dist = np.sqrt(full_sq(x))
    clusters = int(labels.max()) + 1
    sizes = [int((labels == c).sum()) for c in range(clusters)]

    def typicality(i):
        mates = [j for j in range(len(x)) if labels[j] == labels[i] and j != i]
        if not mates:
            return 0.0
        near = sorted(dist[i, j] for j in mates)[:neighbors]
        return 1 / np.mean(near) if np.mean(near) > 0 else np.inf

    queue = {}
    for c in range(clusters):
        free = [i for i in range(len(x)) if labels[i] == c and i not in chosen]
        queue[c] = sorted(free, key=lambda i: (-typicality(i), i))
    picks, taken = [], dict.fromkeys(queue, 0)
    uncovered = [c for c in queue if queue[c] and not any(labels[i] == c for i in chosen)]
    for c in sorted(uncovered, key=lambda c: (-sizes[c], c))[:k]:
        picks.append(queue[c][0])
        taken[c] = 1
    while len(picks) < k:
        open_ = [c for c in queue if taken[c] < len(queue[c])]
        for c in sorted(open_, key=lambda c: (taken[c], -sizes[c], c))[: k - len(picks)]:
            picks.append(queue[c][taken[c]])
            taken[c] += 1
    return picks


def naive_kmeanspp(x, chosen, k, seed):
    full = full_sq(x)
    rng = np.random.default_rng(seed)
    chosen, picks = list(chosen), []
    if not chosen:
        picks.append(int(rng.integers(len(x))))
        chosen.append(picks[-1])
    while len(picks) < k:
        d2 = np.maximum(nearest_sq(full, chosen), 0)
        cumulative = np.cumsum(d2)
        pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        picks.append(pick)
        chosen.append(pick)
    return picks


# ----------------------------------------------------------------------------- kcenter-robust
@pytest.mark.parametrize("mode", ["sample", "trim"])
@pytest.mark.parametrize("parent", [[], [4, 17, 60]], ids=["no-parent", "parent"])
def test_robust_kcenter_equals_reference(mode, parent):
    x = data()
    sel = robust_kcenter(x, np.array(parent), 25, seed=5, outliers=6, epsilon=0.5, mode=mode)
    assert sel.indices.tolist() == naive_robust(x, parent, 25, 5, z=6, eps=0.5, mode=mode)


def test_robust_kcenter_without_outliers_is_kcenter_and_fraction_counts_rows():
    x = data(150)
    plain = kcenter_greedy(x, None, 20, seed=2)
    robust = robust_kcenter(x, None, 20, seed=2, outliers=0)
    assert robust.indices.tolist() == plain.indices.tolist()
    np.testing.assert_array_equal(robust.distances, plain.distances)
    by_fraction = robust_kcenter(x, None, 20, seed=2, outliers=0.04, mode="trim")  # 6 rows
    assert by_fraction.indices.tolist() == naive_robust(x, [], 20, 2, 6, 0, "trim")


def test_robust_kcenter_skips_far_outliers_that_kcenter_picks():
    x = data(150, d=4)
    x[:5] += 40.0 * np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [-1, 0, 0, 0]]
    )
    plain = kcenter_greedy(x, np.array([10]), 10, seed=0).indices
    assert set(range(5)) <= set(plain.tolist())
    trimmed = robust_kcenter(x, np.array([10]), 10, seed=0, outliers=5, mode="trim").indices
    assert not set(range(5)) & set(trimmed.tolist())


# ----------------------------------------------------------------------------- kcenter-density
@pytest.mark.parametrize("parent", [[], [3, 99]], ids=["no-parent", "parent"])
@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_density_kcenter_equals_reference(parent, beta):
    x = data(100, d=6, seed=1)
    sel = density_kcenter(x, np.array(parent), 20, seed=7, neighbors=5, density_power=beta)
    assert sel.indices.tolist() == naive_density(x, parent, 20, 7, neighbors=5, beta=beta)


@pytest.mark.slow  # imports torch (seconds)
def test_torch_backend_gives_the_same_picks():
    x = data(100, d=6, seed=1)
    for device in ("cpu", "torch-cpu"):
        robust = robust_kcenter(x, np.array([2]), 15, seed=4, outliers=8, device=device)
        assert robust.indices.tolist() == naive_robust(x, [2], 15, 4, z=8, eps=0.5, mode="sample")
        dense = density_kcenter(x, np.array([2]), 15, seed=4, neighbors=5, device=device)
        assert dense.indices.tolist() == naive_density(x, [2], 15, 4, neighbors=5, beta=1.0)


def test_density_power_zero_is_kcenter(naive_kcenter):
    x = data(90)
    sel = density_kcenter(x, np.array([1, 2]), 15, seed=0, density_power=0)
    picks, sq = naive_kcenter(x, [1, 2], 15)
    assert sel.indices.tolist() == picks
    np.testing.assert_array_equal(sel.distances, np.sqrt(sq))


def test_knn_graph_equals_full_matrix_sort_with_ties():
    x = np.random.default_rng(3).integers(-2, 3, size=(80, 3)).astype(np.float32)  # many ties
    idx, sq = knn_graph(x, 7)
    full = full_sq(x)
    for i in range(len(x)):
        d = full[i].copy()
        d[i] = np.inf
        order = np.argsort(d, kind="stable")[:7]
        assert idx[i].tolist() == order.tolist()
        np.testing.assert_array_equal(sq[i], d[order])


# ----------------------------------------------------------------------------- facility-location
@pytest.mark.parametrize("neighbors", [119, 6], ids=["complete-graph", "sparse-graph"])
@pytest.mark.parametrize("parent", [[], [0, 50, 51]], ids=["no-parent", "parent"])
def test_facility_location_equals_dense_greedy(neighbors, parent):
    x = data(120, d=5, seed=2)
    sel = facility_location(x, np.array(parent), 30, neighbors=neighbors)
    picks, gains = naive_facility(x, parent, 30, neighbors)
    assert sel.indices.tolist() == picks
    if neighbors == len(x) - 1:  # the same sums in the same order: the same bits
        np.testing.assert_array_equal(sel.scores, gains)
    np.testing.assert_allclose(sel.scores, gains, rtol=1e-12)
    assert np.all(np.diff(sel.scores) <= 1e-12)  # submodular: gains never grow


# ----------------------------------------------------------------------------- cluster-sample
@pytest.mark.parametrize("pick", ["random", "central"])
@pytest.mark.parametrize("parent", [[], [5, 6, 7, 8, 9, 70]], ids=["no-parent", "parent"])
def test_cluster_sample_equals_reference(pick, parent):
    x = data(160, d=6, seed=4)
    sel = cluster_sample(x, np.array(parent), 24, seed=3, clusters=6, pick=pick)
    assert sel.indices.tolist() == naive_cluster_sample(x, parent, 24, 3, 6, pick)


def test_seats_are_largest_remainder_and_respect_held_rows():
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(1, 40, size=rng.integers(2, 9))
        k = int(rng.integers(1, sizes.sum() + 1))
        share = [Fraction(int(s) * k, int(sizes.sum())) for s in sizes]
        floors = [int(q) for q in share]
        order = sorted(range(len(sizes)), key=lambda c: (-(share[c] - floors[c]), c))
        for c in order[: k - sum(floors)]:
            floors[c] += 1
        assert seats(sizes, np.zeros_like(sizes), k).tolist() == floors
    need = seats(np.array([10, 10, 10]), np.array([8, 0, 0]), 4)  # cluster 0 over its share
    assert need.tolist() == [0, 2, 2]


# ----------------------------------------------------------------------------- kmeans-pp
@pytest.mark.parametrize("parent", [[], [11, 12]], ids=["no-parent", "parent"])
def test_kmeanspp_equals_reference(parent):
    x = data(130, d=4, seed=6)
    sel = kmeanspp_sampling(x, np.array(parent), 30, seed=9)
    assert sel.indices.tolist() == naive_kmeanspp(x, parent, 30, 9)


# ----------------------------------------------------------------------------- typical
@pytest.mark.parametrize("neighbors", [3, 50], ids=["few-neighbours", "whole-cluster"])
@pytest.mark.parametrize("parent", [[], [2, 30, 31, 90]], ids=["no-parent", "parent"])
def test_typical_equals_reference(neighbors, parent):
    x = data(110, d=5, seed=12)
    sel = typical(x, np.array(parent, dtype=np.int64), 9, seed=4, neighbors=neighbors)
    assert sel.indices.tolist() == naive_typical(x, parent, 9, 4, neighbors)


def test_typical_takes_the_dense_row_where_kcenter_takes_the_outlier():
    rng = np.random.default_rng(0)
    blob = rng.normal(0, 0.05, (40, 2))
    x = np.vstack([blob, [[5.0, 5.0]]]).astype(np.float32)  # 40 dense rows, one outlier
    centre = int(np.argmin(((blob - blob.mean(axis=0)) ** 2).sum(axis=1)))
    first = kcenter_greedy(x, np.array([centre]), 1, seed=0).indices.tolist()
    assert first == [40]  # K-center: the outlier
    pick = typical(x, np.zeros(0, np.int64), 1, seed=0, neighbors=10).indices.tolist()
    assert pick != [40] and pick[0] < 40  # typical: a row inside the blob


# ----------------------------------------------------------------------------- every new one
@pytest.mark.parametrize("name", NEW)
def test_parent_first_distances_at_pick_time_and_determinism(name):
    x = data(70, d=5, seed=8)
    strategy = make_strategy(name, {"neighbors": 69} if name == "facility-location" else {})
    parent = np.array([3, 40, 41])
    pool = PoolArrays(len(x), x)
    sel = strategy.select(pool, parent, 12, seed=1)
    assert len(sel) == 12 and len(set(sel.indices.tolist())) == 12
    assert not set(sel.indices.tolist()) & set(parent.tolist())
    full = full_sq(normalize_rows(x) if name == "facility-location" else x)
    before = parent.tolist()
    for t, pick in enumerate(sel.indices.tolist()):
        sq = full[pick, before].min()
        expected = sq / 2 if name == "facility-location" else np.sqrt(sq)  # cosine distance
        assert sel.distances[t] == pytest.approx(expected, rel=1e-12, abs=1e-12)
        before.append(pick)
    again = strategy.select(pool, parent, 12, seed=1)
    assert again.indices.tolist() == sel.indices.tolist()
    np.testing.assert_array_equal(again.distances, sel.distances)
    everything = strategy.select(pool, parent, len(x) - 3, seed=1)  # k = every unchosen row
    assert sorted(everything.indices.tolist()) == sorted(set(range(len(x))) - set(parent))
    first = strategy.select(pool, np.zeros(0, np.int64), 5, seed=1)
    if name != "facility-location":  # a random first pick: no distance yet
        assert np.isnan(first.distances[0])
    with pytest.raises(SelectionError, match="cannot add"):
        strategy.select(pool, parent, len(x) - 2, seed=1)


@pytest.mark.parametrize("name", ["kcenter-robust", "cluster-sample", "kmeans-pp"])
def test_seeds_change_the_picks(name):
    x = data(100)
    pool = PoolArrays(len(x), x)
    options = {"outliers": 10} if name == "kcenter-robust" else {}  # default 1% = 1 row here
    a = make_strategy(name, options).select(pool, np.array([0]), 10, seed=1).indices.tolist()
    b = make_strategy(name, options).select(pool, np.array([0]), 10, seed=2).indices.tolist()
    assert a != b


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("kcenter-robust", {"outliers": -1}, "--outliers -1 is below the minimum 0"),
        ("kcenter-robust", {"outliers": 2.5}, "must be a whole number of rows"),
        ("kcenter-robust", {"mode": "drop"}, "is not one of sample, trim"),
        ("kcenter-robust", {"epsilon": "x"}, "--epsilon 'x' is not a number"),
        ("kcenter-density", {"neighbors": 0}, "--neighbors 0 is below the minimum 1"),
        ("kcenter-density", {"density_power": -0.5}, "below the minimum 0"),
        ("facility-location", {"metric": "cosine"}, "has no parameter --metric"),
        ("cluster-sample", {"pick": "middle"}, "is not one of random, central"),
        ("cluster-sample", {"clusters": 0}, "--clusters 0 is below the minimum 1"),
        ("cluster-sample", {"iterations": 1.5}, "--iterations 1.5 is not an integer"),
        ("kmeans-pp", {"whiten": 0}, "--whiten 0 is below the minimum 1"),
    ],
)
def test_bad_parameters_are_one_clear_error(name, options, message):
    with pytest.raises(ParamError, match=message):
        make_strategy(name, options)


def test_more_clusters_than_rows_fails_before_selecting():
    x = data(20)
    with pytest.raises(SelectionError, match="--clusters 21 is more than the pool's 20 rows"):
        make_strategy("cluster-sample", {"clusters": 21}).select(
            PoolArrays(20, x), np.zeros(0, np.int64), 3, seed=0
        )


def test_every_new_strategy_is_registered_with_help():
    for name in NEW:
        cls = STRATEGIES.get(name)
        assert cls.name == name and cls.summary and cls.needs_vectors
        assert all(p.help for p in cls.parameters)


# ----------------------------------------------------------------------------- CLI and rounds
CLI_CASES = {
    "kcenter-robust": (
        ["--outliers", "0.05", "--epsilon", "1", "--mode", "sample"],
        {"outliers": 0.05, "epsilon": 1.0, "mode": "sample", "metric": "euclidean", "whiten": None},
        lambda v, chosen, k, s: robust_kcenter(v, chosen, k, s, outliers=0.05, epsilon=1.0),
    ),
    "kcenter-density": (
        ["--neighbors", "4", "--density_power", "2", "--metric", "cosine"],  # DVC's spelling
        {"neighbors": 4, "density_power": 2.0, "metric": "cosine", "whiten": None},
        lambda v, chosen, k, s: density_kcenter(
            v, chosen, k, s, neighbors=4, density_power=2.0, metric="cosine"
        ),
    ),
    "facility-location": (
        ["--neighbors", "8"],
        {"neighbors": 8, "whiten": None},
        lambda v, chosen, k, s: facility_location(v, chosen, k, neighbors=8),
    ),
    "cluster-sample": (
        ["--clusters", "5", "--pick", "central", "--iterations", "10"],
        {"clusters": 5, "pick": "central", "iterations": 10, "metric": "euclidean", "whiten": None},
        lambda v, chosen, k, s: cluster_sample(
            v, chosen, k, s, clusters=5, pick="central", iterations=10
        ),
    ),
    "kmeans-pp": (
        ["--metric", "cosine"],
        {"metric": "cosine", "whiten": None},
        lambda v, chosen, k, s: kmeanspp_sampling(v, chosen, k, s, metric="cosine"),
    ),
    "typical": (
        ["--neighbors", "5", "--iterations", "10"],
        {"neighbors": 5, "iterations": 10, "metric": "euclidean", "whiten": None},
        lambda v, chosen, k, s: typical(v, chosen, k, s, neighbors=5, iterations=10),
    ),
}


@pytest.mark.parametrize("name", NEW)
def test_cli_options_reach_the_strategy_and_the_manifest(pool_db, tmp_path, cli, name):
    db, vectors, _ = pool_db
    args, params, reference = CLI_CASES[name]
    base = ["select", "--db", str(db), "--embeddings", "plain", "--seed", "3", "--json"]
    code, out, err = cli(*base, "--strategy", name, "--budget", "8", "--out", str(tmp_path / "a"), *args)  # fmt: skip
    assert code == 0, err
    first = load_subset(tmp_path / "a")
    assert first.manifest.strategy == name
    assert first.manifest.params == {**params, "added": 8}
    assert json.loads(out)["params"] == {**params, "added": 8}
    ids = [r["id"] for r in _pool_ids(db)]
    expected = reference(vectors, np.zeros(0, np.int64), 8, 3).indices
    assert first.ids == [ids[i] for i in expected]
    # a round: the parent first, then the strategy's picks after it
    code, out, err = cli(*base, "--strategy", name, "--parent", str(first.path), "--add", "4", "--out", str(tmp_path / "b"), *args)  # fmt: skip
    assert code == 0, err
    second = load_subset(tmp_path / "b")
    parent = np.array([ids.index(i) for i in first.ids])
    expected = reference(vectors, parent, 4, 3).indices
    assert second.ids == first.ids + [ids[i] for i in expected]
    assert all(p["distance"] is not None for p in second.manifest.picks[8:])


def _pool_ids(db: Path) -> list[dict]:
    from curate.store import Store

    return Store(db).read_pool(["id"]).to_pylist()


@pytest.mark.parametrize("name", NEW)
def test_params_yaml_accepts_each_strategy_and_rejects_a_bad_value(name):
    params = yaml.safe_load(pipeline_files("default")["params.yaml"])
    params["strategy"] = name
    params["strategy_params"] = CLI_CASES[name][1]
    validate_params(params, "params.yaml")
    params["strategy_params"] = {"neighbors": -3}
    with pytest.raises(Exception, match="strategy_params: strategy " + name):
        validate_params(params, "params.yaml")


# ----------------------------------------------------------------------------- longest
def test_longest_takes_the_longest_responses_of_any_shape(tmp_path, cli, chat_records):
    from curate.store import Store

    rows = chat_records(10) + [
        {"instruction": f"q{i}", "output": "x" * n} for i, n in enumerate([5, 900, 40, 900, 1])
    ]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    db = str(tmp_path / "db")
    assert cli("ingest", pool, "--db", db).code == 0
    stored = Store(db).read_pool(["id", "output", "messages"]).to_pylist()

    def response_chars(row):  # the plain reference: assistant turns, or the output
        if row["messages"]:
            return sum(len(m["content"]) for m in row["messages"] if m["role"] == "assistant")
        return len(row["output"])

    lengths = [response_chars(r) for r in stored]
    expected = sorted(range(len(stored)), key=lambda i: (-lengths[i], i))
    code, _, err = cli("select", "--db", db, "--strategy", "longest", "--budget", "6",
                       "--out", tmp_path / "a")  # fmt: skip
    assert code == 0, err
    first = load_subset(tmp_path / "a")
    assert first.ids == [stored[i]["id"] for i in expected[:6]]
    assert [p["score"] for p in first.manifest.picks] == [lengths[i] for i in expected[:6]]
    code, _, err = cli("select", "--db", db, "--strategy", "longest", "--parent", tmp_path / "a",
                       "--add", "3", "--out", tmp_path / "b")  # fmt: skip
    assert code == 0, err
    assert load_subset(tmp_path / "b").ids == [stored[i]["id"] for i in expected[:9]]


def test_longest_leaves_out_rows_a_hygiene_result_flags(tmp_path, cli):
    rows = [{"instruction": f"q{i}", "output": f"answer {i} " + "x" * (10 * i)} for i in range(8)]
    rows.append({"instruction": "q7 ", "output": rows[7]["output"] + "!"})  # a near duplicate
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    db = str(tmp_path / "db")
    assert cli("ingest", pool, "--db", db).code == 0
    assert cli("dedup", "--db", db).code == 0
    code, _, err = cli("select", "--db", db, "--strategy", "longest", "--budget", "3",
                       "--out", tmp_path / "a")  # fmt: skip
    assert code == 0, err
    picked = [e["output"] for e in load_subset(tmp_path / "a").examples]
    assert len({o.rstrip("!") for o in picked}) == 3  # never both copies of the longest row
