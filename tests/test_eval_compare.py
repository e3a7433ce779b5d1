"""Paired bootstrap: deterministic for a fixed seed, honest about pairing and seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate.errors import EvalError
from curate.evaluation.compare import compare_runs, paired_bootstrap


def test_same_seed_same_ci_other_seed_other_ci():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 120), rng.normal(0.8, 1.0, 120)
    first = paired_bootstrap(a, b, n_boot=3000, seed=7)
    assert paired_bootstrap(a, b, n_boot=3000, seed=7) == first
    assert paired_bootstrap(a, b, n_boot=3000, seed=8) != first
    assert first["diff"] == pytest.approx(a.mean() - b.mean())
    assert first["ci_low"] < first["diff"] < first["ci_high"]


def test_pairing_cancels_question_difficulty():
    """Questions differ wildly in difficulty; the models differ by 0.1 on each one."""
    rng = np.random.default_rng(1)
    difficulty = rng.normal(0, 5.0, 300)
    a = difficulty + 0.1 + rng.normal(0, 0.05, 300)
    stats = paired_bootstrap(a, difficulty, n_boot=4000, seed=0)
    assert 0.08 < stats["ci_low"] < 0.1 < stats["ci_high"] < 0.12
    constant = paired_bootstrap(difficulty + 0.5, difficulty, n_boot=500)
    assert constant["ci_low"] == pytest.approx(0.5) and constant["ci_high"] == pytest.approx(0.5)


def test_ci_width_matches_the_standard_error():
    rng = np.random.default_rng(2)
    diff = rng.normal(0.3, 1.0, 400)
    stats = paired_bootstrap(diff, np.zeros(400), n_boot=5000, seed=0)
    expected = 2 * 1.96 * diff.std(ddof=1) / np.sqrt(400)
    assert stats["ci_high"] - stats["ci_low"] == pytest.approx(expected, rel=0.1)


def test_several_runs_per_side_widen_the_ci_by_seed_variation():
    rng = np.random.default_rng(3)
    questions = rng.normal(0, 1.0, 200)
    # three seeds per side: each seed shifts all its questions together by N(0, 0.3)
    a = questions + 0.2 + rng.normal(0, 0.3, (3, 1)) + rng.normal(0, 0.05, (3, 200))
    b = questions + rng.normal(0, 0.3, (3, 1)) + rng.normal(0, 0.05, (3, 200))
    across = paired_bootstrap(a, b, n_boot=3000, seed=0)
    one_seed = paired_bootstrap(a[:1], b[:1], n_boot=3000, seed=0)
    assert across["diff"] == pytest.approx(a.mean() - b.mean())
    width = across["ci_high"] - across["ci_low"]
    assert width > 3 * (one_seed["ci_high"] - one_seed["ci_low"])


def _run(folder, name, nll, judge=None, sha="x"):
    questions = [{"id": str(i), "nll": v} for i, v in enumerate(nll)]
    if judge is not None:
        for q, s in zip(questions, judge, strict=True):
            q["judge"] = {"score": s}
    (folder / f"{name}.json").write_text(json.dumps({"nll": float(np.mean(nll))}))
    (folder / f"{name}.details.json").write_text(
        json.dumps({"eval_set_sha256": sha, "questions": questions})
    )
    return folder / f"{name}.json"


def test_compare_runs_reads_details_and_names_the_better_side(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.normal(2.0, 0.5, 60)
    a = _run(tmp_path, "a", base - 0.3, judge=[1] * 50 + [None] * 10)
    b = _run(tmp_path, "b", base, judge=[0] * 60)
    result = compare_runs([a], [b], n_boot=1000)
    assert result["nll"]["better"] == "a" and result["nll"]["questions"] == 60
    # a judge score of None (unparseable) drops that question from the paired judge comparison
    assert (
        result["judge_score"]["questions"] == 50
        and result["judge_score"]["questions_excluded"] == 10
    )
    assert result["judge_score"]["better"] == "a"
    assert compare_runs([b], [a], n_boot=1000)["nll"]["better"] == "b"


def test_compare_refuses_unpaired_runs(tmp_path):
    a = _run(tmp_path, "a", [1.0, 2.0, 3.0])
    fewer = _run(tmp_path, "fewer", [1.0, 2.0])
    other_set = _run(tmp_path, "other", [1.0, 2.0, 3.0], sha="y")
    with pytest.raises(EvalError, match="scored on different questions"):
        compare_runs([a], [fewer])
    with pytest.raises(EvalError, match="different eval set files"):
        compare_runs([a], [other_set])
    (tmp_path / "lonely.json").write_text("{}")
    with pytest.raises(EvalError, match=r"lonely.details.json: no such details file"):
        compare_runs([a], [tmp_path / "lonely.json"])
