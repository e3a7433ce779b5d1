"""kill -9 at seeded random points of real `curate ingest`, `embed`, `select` and `train`.

Each test runs the command once uninterrupted (the reference: its result and its wall
time T), then kills the same command at delays drawn from a seeded RNG in [0.4 T, T], each
run starting from what the last kill left (a state a user would rerun from; reset to the
start once a run got through, so later kills still land in real work). After every kill
the checker runs (tests/faults/conftest.py); at the end one uninterrupted rerun must give
the reference's bytes, and must have removed what the killed runs left behind
(issue 13, point 9).

`dvc repro` is killed mid-round in tests/test_pipeline.py (round 1's embed stage, then a
resumed repro reruns exactly round 1 and leaves round 0's bytes alone); a second pipeline
run here would cost minutes, so it is not repeated.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from curate.files import sha256_file
from tests.faults.tools import kill_after, pool_state, records, run, start, write_jsonl

SEED = 13


def _delays(name: str, n: int, reference_seconds: float) -> list[float]:
    rng = random.Random(f"{SEED}-{name}")
    return [reference_seconds * rng.uniform(0.4, 1.0) for _ in range(n)]


def _leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith(".")
        and (".tmp-" in p.name or ".old-" in p.name or "staging" in p.name)
    )


def _base_db(tmp_path: Path, rows: int) -> Path:
    from curate.ingest import ingest
    from curate.store import Store

    db = tmp_path / "base"
    ingest(Store(db), [str(write_jsonl(tmp_path / "first.jsonl", records(0, rows)))])
    return db


@pytest.mark.slow
def test_ingest_killed_anywhere_keeps_the_pool_whole(tmp_path, fault_check):
    base = _base_db(tmp_path, 200)
    before = pool_state(base)
    source = write_jsonl(tmp_path / "more.jsonl", records(150, 12_000))  # 50 already stored
    shutil.copytree(base, tmp_path / "ref")
    reference = run("ingest", str(source), "--db", "ref", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    after = pool_state(tmp_path / "ref")

    work = tmp_path / "work"
    shutil.copytree(base, work)
    killed = []
    for delay in _delays("ingest", 12, reference.seconds):
        killed.append(kill_after(start("ingest", str(source), "--db", "work", cwd=tmp_path), delay))
        if fault_check(work, before, after) == "new":  # start again, so the next kill hits work
            shutil.rmtree(work)
            shutil.copytree(base, work)
    assert any(killed)

    rerun = run("ingest", str(source), "--db", "work", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert pool_state(work) == after
    assert _leftovers(work) == []  # the killed runs' staging folders are gone
    from curate.store import Store

    assert Store(work).ingest_log_totals()["added"] == len(after)


@pytest.mark.slow
def test_select_killed_anywhere_leaves_the_old_subset_or_the_new_one(tmp_path, fault_check):
    from curate.embed import import_vectors
    from curate.store import Store

    db = _base_db(tmp_path, 3000)
    ids = Store(db).read_pool(["id"])["id"].to_pylist()
    vectors = np.random.default_rng(SEED).standard_normal((len(ids), 32)).astype(np.float32)
    np.savez(tmp_path / "v.npz", id=np.array(ids), vector=vectors)
    import_vectors(Store(db), tmp_path / "v.npz", "v")
    rows = pool_state(db)
    args = ["select", "--budget", "400", "--embeddings", "v", "--db", str(db), "--seed", "3"]

    reference = run(*args, "--out", str(tmp_path / "ref" / "s"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "work" / "s"
    for delay in _delays("select", 7, reference.seconds):
        kill_after(start(*args, "--out", str(out), cwd=tmp_path), delay)
        fault_check(db, rows, rows, subsets=[out], embeddings=("v",))

    rerun = run(*args, "--out", str(out), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    for name in ("examples.jsonl", "manifest.json"):
        assert sha256_file(out / name) == sha256_file(tmp_path / "ref" / "s" / name)
    assert _leftovers(out.parent) == []


@pytest.mark.slow
def test_embed_killed_anywhere_resumes_to_the_same_vectors(tmp_path, fault_check, tiny_lm):
    from curate.embedders.causal_lm import CausalLMEmbedder
    from curate.store import Store

    base = _base_db(tmp_path, 200)
    rows = pool_state(base)
    args = ["embed", "--embedder", f"lm:{tiny_lm}", "--scores", "--name", "t", "--device", "cpu"]
    args += ["--batch-size", "16", "--max-length", "64"]
    shutil.copytree(base, tmp_path / "ref")
    reference = run(*args, "--db", "ref", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    expected = Store(tmp_path / "ref").load_vectors("t", scores=CausalLMEmbedder.score_columns)

    work = tmp_path / "work"
    shutil.copytree(base, work)
    for delay in _delays("embed", 3, reference.seconds):
        kill_after(start(*args, "--db", "work", cwd=tmp_path), delay)
        fault_check(work, rows, rows, embeddings=("t",))

    rerun = run(*args, "--db", "work", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    got = Store(work).load_vectors("t", scores=CausalLMEmbedder.score_columns)
    assert got.ids == expected.ids
    assert got.matrix.tobytes() == expected.matrix.tobytes()
    assert Store(work).embeddings_count("t") == len(rows)


@pytest.mark.slow
def test_train_killed_anywhere_resumes_to_the_same_weights(tmp_path, fault_check, tiny_lm):
    db = _base_db(tmp_path, 60)
    rows = pool_state(db)
    subset = tmp_path / "subset"
    _random_subset(db, 24, subset)
    args = ["train", str(subset), "--base-model", str(tiny_lm), "--epochs", "2", "--lr", "1e-3"]
    args += ["--batch-size", "4", "--max-length", "64", "--save-steps", "4", "--device", "cpu"]
    args += ["--resume"]

    reference = run(*args, "--out", str(tmp_path / "ref" / "m"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "work" / "m"
    for delay in _delays("train", 2, reference.seconds):
        kill_after(start(*args, "--out", str(out), cwd=tmp_path), delay)
        fault_check(db, rows, rows, subsets=[subset])
        assert not out.exists() or (out / "train_metrics.json").is_file()  # whole or absent

    rerun = run(*args, "--out", str(out), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    weights = "model.safetensors"
    assert sha256_file(out / weights) == sha256_file(tmp_path / "ref" / "m" / weights)
    assert [p for p in _leftovers(out.parent) if ".old-" in p or ".tmp-" in p] == []


def _random_subset(db: Path, budget: int, out: Path) -> None:
    import curate

    curate.write_subset(curate.Pool(db).select(budget=budget, strategy="random"), out)
