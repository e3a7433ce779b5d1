"""`VectorStrategy`: the one mapping from a strategy's declared options to its function.

Each strategy class is its parameters plus ``function = staticmethod(f)``; these tests
spell out, per strategy, the call the hand-written ``pick()`` adapters used to make and
check the class makes the same one, byte for byte (``whiten`` reaches ``whiten_to``,
``device`` reaches the functions that take it, ``seed`` only those that take one).
"""

from __future__ import annotations

import numpy as np
import pytest

from curate.plugins import Param
from curate.strategies import PoolArrays, make_strategy
from curate.strategies.base import VectorStrategy
from curate.strategies.clusters import cluster_sample
from curate.strategies.density import density_kcenter
from curate.strategies.facility import facility_location
from curate.strategies.kcenter import kcenter_greedy
from curate.strategies.kmeanspp import kmeanspp_sampling
from curate.strategies.robust import robust_kcenter
from curate.strategies.typical import typical

CASES = {
    "kcenter": (
        {"metric": "cosine", "whiten": 3},
        lambda v, c, k, s: kcenter_greedy(v, c, k, s, metric="cosine", whiten_to=3, device="cpu"),
    ),
    "kcenter-robust": (
        {"outliers": 4, "epsilon": 0.5, "mode": "trim", "whiten": 3},
        lambda v, c, k, s: robust_kcenter(
            v, c, k, s, outliers=4, epsilon=0.5, mode="trim", whiten_to=3, device="cpu"
        ),
    ),
    "kcenter-density": (
        {"neighbors": 4, "density_power": 2.0, "metric": "cosine", "whiten": 3},
        lambda v, c, k, s: density_kcenter(
            v, c, k, s, neighbors=4, density_power=2.0, metric="cosine", whiten_to=3, device="cpu"
        ),
    ),
    "facility-location": (
        {"neighbors": 6, "whiten": 3},
        lambda v, c, k, s: facility_location(v, c, k, neighbors=6, whiten_to=3),
    ),
    "cluster-sample": (
        {"clusters": 4, "pick": "central", "iterations": 7, "whiten": 3},
        lambda v, c, k, s: cluster_sample(
            v, c, k, s, clusters=4, pick="central", iterations=7, whiten_to=3
        ),
    ),
    "kmeans-pp": (
        {"metric": "cosine", "whiten": 3},
        lambda v, c, k, s: kmeanspp_sampling(v, c, k, s, metric="cosine", whiten_to=3),
    ),
    "typical": (
        {"neighbors": 5, "iterations": 7, "whiten": 3},
        lambda v, c, k, s: typical(v, c, k, s, neighbors=5, iterations=7, whiten_to=3),
    ),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("parent", [[], [2, 30]])
def test_declared_options_reach_the_function_unchanged(name, parent):
    x = np.random.default_rng(4).standard_normal((60, 6)).astype(np.float32)
    options, reference = CASES[name]
    chosen = np.array(parent, dtype=np.int64)
    got = make_strategy(name, options, device="cpu").select(PoolArrays(60, x), chosen, 9, seed=7)
    want = reference(x, chosen, 9, 7)
    assert got.indices.tolist() == want.indices.tolist()
    np.testing.assert_array_equal(got.distances, want.distances)
    if want.scores is not None:
        np.testing.assert_array_equal(got.scores, want.scores)


def test_a_parameter_the_function_does_not_take_fails_when_the_class_is_defined():
    with pytest.raises(TypeError, match="'broken': its function takes no 'radius'"):

        class Broken(VectorStrategy):  # noqa: F841 - defining it is the test
            name = "broken"
            summary = "declares a parameter its function never takes"
            parameters = (Param("radius", float, 1.0, "unused"),)
            function = staticmethod(kcenter_greedy)
