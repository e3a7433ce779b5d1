"""`curate select` on a real LanceDB pool with stored vectors: picks, manifest, errors, CLI.

Embedding tables are written directly with `embedding_schema` (random vectors: the `pool_db`
and `add_embeddings` fixtures in conftest.py), so these tests do not depend on `curate embed`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from curate.cli import error_line
from curate.errors import ConflictError, CurateError, EmbeddingError, SelectionError
from curate.ingest import ingest
from curate.plugins import ParamError
from curate.records import Example
from curate.select import SelectRequest, SubsetSelection, select
from curate.store import Store
from curate.subsets import Subset, load_subset

DIM = 8


class Written(NamedTuple):
    selection: SubsetSelection
    subset: Subset

    @property
    def added(self) -> int:
        return self.selection.added


def run(db: Path, out: Path, **fields) -> Written:
    """Select with ``fields`` (strategy parameters among them) and write the subset to ``out``."""
    params = {k: fields.pop(k) for k in ("metric", "whiten") if k in fields}
    fields.setdefault("name", out.name)
    selection = select(Store(db), SelectRequest(params=params, **fields))
    return Written(selection, selection.write(out))


def pool_rows(db: Path) -> list[dict]:
    return [Example.from_dict(r).to_dict() for r in Store(db).read_pool().to_pylist()]


# ----------------------------------------------------------------------------- picks + manifest


def test_kcenter_subset_has_naive_picks_and_a_complete_manifest(pool_db, tmp_path, naive_kcenter):
    db, vectors, _ = pool_db
    result = run(db, tmp_path / "kc", strategy="kcenter", budget=12, embeddings="e", seed=4)
    rows = pool_rows(db)
    first = int(np.random.default_rng(4).integers(len(rows)))
    picks, sq = naive_kcenter(vectors, [first], 11)
    expected = [rows[i] for i in [first, *picks]]
    subset = load_subset(tmp_path / "kc")
    assert subset.examples == expected  # canonical pool rows, in pick order
    m = subset.manifest
    assert [p["id"] for p in m.picks] == [r["id"] for r in expected]
    assert [p["hash"] for p in m.picks] == [r["hash"] for r in expected]
    assert m.picks[0]["distance"] is None
    np.testing.assert_array_equal([p["distance"] for p in m.picks[1:]], np.sqrt(sq))
    assert m.name == "kc" and m.strategy == "kcenter" and m.seed == 4
    assert m.params == {"metric": "euclidean", "whiten": None, "added": 12}
    assert m.budget == 12 and m.parent is None
    assert m.pool.to_dict() == {"version": Store(db).pool_version(), "rows": len(rows)}
    assert m.embeddings.to_dict() == {"name": "e", "fingerprint": "fp-e"}
    assert m.created_by.startswith("curate ") and m.format_version == 1
    assert result.added == 12 and result.subset.path == tmp_path / "kc"


def test_parent_examples_come_first_and_add_equals_budget(pool_db, tmp_path, naive_kcenter):
    db, vectors, _ = pool_db
    rd0 = run(db, tmp_path / "rd_0", strategy="random", budget=10, seed=1).subset
    rd1 = run(db, tmp_path / "rd_1", embeddings="e", parent=rd0.path, add=5).subset
    ids = [r["id"] for r in pool_rows(db)]
    parent_pos = [ids.index(i) for i in rd0.ids]
    picks, _ = naive_kcenter(vectors, parent_pos, 5)
    assert rd1.ids == rd0.ids + [ids[i] for i in picks]
    assert rd1.manifest.parent.to_dict() == {
        "name": "rd_0",
        "manifest_sha256": rd0.manifest_sha256,
    }
    assert all("distance" not in p for p in rd1.manifest.picks[:10])
    assert all(p["distance"] > 0 for p in rd1.manifest.picks[10:])
    same = run(db, tmp_path / "by_budget", embeddings="e", parent=rd0.path, budget=15, name="rd_1")
    for file in ("examples.jsonl", "manifest.json"):
        assert (same.subset.path / file).read_bytes() == (rd1.path / file).read_bytes()


@pytest.mark.parametrize(
    "fields",
    [
        dict(strategy="kcenter", embeddings="e"),
        dict(strategy="kcenter", embeddings="e", metric="cosine", whiten=4),
        dict(strategy="random"),
        dict(strategy="entropy", embeddings="e"),
    ],
    ids=["kcenter", "kcenter-whiten", "random", "entropy"],
)
def test_same_inputs_and_seed_give_byte_identical_files(pool_db, tmp_path, fields):
    db = pool_db[0]
    a = run(db, tmp_path / "a", budget=9, seed=7, name="s", **fields).subset
    b = run(db, tmp_path / "b", budget=9, seed=7, name="s", **fields).subset
    for file in ("examples.jsonl", "manifest.json"):
        assert (a.path / file).read_bytes() == (b.path / file).read_bytes()
    other = run(db, tmp_path / "c", budget=9, seed=8, name="s", **fields).subset
    if fields["strategy"] != "entropy":  # seeds change random picks and K-center's first center
        assert other.ids != a.ids


def test_large_subsets_read_the_pool_once_with_the_same_result(pool_db, tmp_path, monkeypatch):
    import curate.select

    db = pool_db[0]
    by_id = run(db, tmp_path / "a", strategy="random", budget=40, seed=1, name="s").subset
    monkeypatch.setattr(curate.select, "LOOKUP_LIMIT", 10)
    by_scan = run(db, tmp_path / "b", strategy="random", budget=40, seed=1, name="s").subset
    for file in ("examples.jsonl", "manifest.json"):
        assert (by_id.path / file).read_bytes() == (by_scan.path / file).read_bytes()


def test_random_needs_no_embeddings(tmp_path, sample_pool):
    store = Store(tmp_path / "db")
    ingest(store, [str(sample_pool)])
    subset = run(tmp_path / "db", tmp_path / "r", strategy="random", budget=30, seed=0).subset
    assert len(set(subset.ids)) == 30 and subset.manifest.embeddings is None
    assert "distance" not in subset.manifest.picks[0]


@pytest.mark.parametrize(
    "strategy, column, sign",
    [("least-confidence", "least_confidence", 1), ("entropy", "entropy", -1)],
)
def test_uncertainty_strategies_rank_stored_scores(pool_db, tmp_path, strategy, column, sign):
    db, _, scores = pool_db
    rd0 = run(db, tmp_path / "p", strategy="random", budget=5, seed=2).subset
    subset = run(
        db, tmp_path / "u", strategy=strategy, embeddings="e", parent=rd0.path, add=6
    ).subset
    ids = [r["id"] for r in pool_rows(db)]
    open_rows = [i for i in range(len(ids)) if ids[i] not in rd0.ids]
    best = sorted(open_rows, key=lambda i: (sign * scores[column][i], i))[:6]
    assert subset.ids[5:] == [ids[i] for i in best]
    got = [p["score"] for p in subset.manifest.picks[5:]]
    np.testing.assert_allclose(got, scores[column][best])


def test_vectors_load_exactly_the_score_columns_asked_for(pool_db):
    db, vectors, scores = pool_db
    store = Store(db)
    got = store.load_vectors("e", scores=("entropy",))
    assert list(got.scores) == ["entropy"]
    np.testing.assert_array_equal(got.scores["entropy"], scores["entropy"])
    np.testing.assert_array_equal(got.matrix, vectors)
    assert store.load_vectors("e").scores == {}
    with pytest.raises(EmbeddingError) as missing:
        store.load_vectors("e", scores=("margin", "perplexity", "vector", "coherence"))
    line = error_line(missing.value)
    assert len(line.splitlines()) == 1
    assert f"embeddings 'e' (table emb_e in {db}) have no 'perplexity', 'vector', " in line
    assert "'coherence' scores;" in line and "'margin'" not in line


def test_default_name_and_folder(pool_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = select(Store(pool_db[0]), SelectRequest(strategy="random", budget=4, seed=3))
    assert result.write().path == Path("data/subsets/random-4-s3")
    assert load_subset(tmp_path / "data/subsets/random-4-s3").name == "random-4-s3"


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def broken_db(tmp_path_factory, sample_pool, add_embeddings) -> Path:
    """A 40-row pool with embeddings missing 3 rows, with an inf row (LanceDB refuses NaN
    on write), and with no scores."""
    db = tmp_path_factory.mktemp("broken") / "db"
    store = Store(db)
    lines = sample_pool.read_text(encoding="utf-8").splitlines()[:40]
    (db.parent / "small.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest(store, [str(db.parent / "small.jsonl")])
    vectors = np.random.default_rng(0).standard_normal((40, DIM)).astype(np.float32)
    add_embeddings(store, "partial", vectors, rows=np.arange(3, 40))
    bad = vectors.copy()
    bad[7, 2] = np.inf
    add_embeddings(store, "nan", bad)
    add_embeddings(store, "noscores", vectors)
    return db


@pytest.mark.parametrize(
    "fields, error, message",
    [
        (
            dict(budget=41, embeddings="noscores"),
            SelectionError,
            "budget 41 is larger than the pool \\(40 rows\\)",
        ),
        (dict(budget=5, add=2, embeddings="noscores"), SelectionError, "exactly one of --budget"),
        (dict(add=2, embeddings="noscores"), SelectionError, "--add K needs --parent"),
        (
            dict(budget=5, embeddings="partial"),
            EmbeddingError,
            "3 of 40 pool rows have no vector.*curate embed --name partial",
        ),
        (dict(budget=5, embeddings="nan"), EmbeddingError, "NaN/inf vectors for 1 rows"),
        (dict(budget=5, embeddings="missing"), EmbeddingError, "no embeddings named 'missing'"),
        (
            dict(budget=5),
            SelectionError,
            "needs --embeddings NAME \\(known: nan, noscores, partial\\)",
        ),
        (
            dict(budget=5, strategy="margin", embeddings="noscores"),
            EmbeddingError,
            "embeddings 'noscores' \\(table emb_noscores in .*\\) have no 'margin' score; "
            "run `curate embed --name noscores` again with --scores",
        ),
        (
            dict(budget=5, strategy="random", whiten=3),
            ParamError,
            "strategy random has no parameter --whiten",
        ),
        (
            dict(budget=5, embeddings="noscores", whiten=9),
            ParamError,  # a bad option value: exit 2
            "--whiten must be between 1 and",
        ),
    ],
)
def test_bad_requests_fail_before_writing(broken_db, tmp_path, fields, error, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(error) as raised:
        run(broken_db, out, **fields)
    line = error_line(raised.value)  # what the command line prints: the flags it names
    assert re.search(message, line), line
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no temp folders left
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_library_errors_name_the_callers_parameters_and_the_cli_its_flags(broken_db, tmp_path):
    """An API caller reads the keywords it passed, the command line prints its flags
    (issue 22: the library said `--add K needs --parent` to callers who typed `add=2`)."""
    with pytest.raises(SelectionError) as raised:
        run(broken_db, tmp_path / "x", strategy="random", add=2)
    assert str(raised.value) == "`add` needs `parent` (the subset to add rows to)"
    assert error_line(raised.value) == "--add K needs --parent (the subset to add rows to)"
    with pytest.raises(SelectionError) as raised:
        run(broken_db, tmp_path / "x", budget=5)
    known = "(known: nan, noscores, partial)"
    assert str(raised.value) == f"`strategy='kcenter'` needs `embeddings` {known}"
    assert error_line(raised.value) == f"--strategy kcenter needs --embeddings NAME {known}"


def test_parent_problems(pool_db, broken_db, tmp_path):
    parent = run(pool_db[0], tmp_path / "p", strategy="random", budget=6, seed=0).subset
    small_pool = set(Store(broken_db).read_pool(["id"])["id"].to_pylist())
    outside = sum(i not in small_pool for i in parent.ids)
    assert 0 < outside < 6  # the small pool is the sample's first 40 rows
    with pytest.raises(
        SelectionError, match=f"was built on a different pool: {outside} of 6 picks"
    ):
        run(broken_db, tmp_path / "x", strategy="random", parent=parent.path, add=2)
    with pytest.raises(SelectionError) as raised:
        run(pool_db[0], tmp_path / "x", strategy="random", parent=parent.path, budget=6)
    line = error_line(raised.value)
    assert re.search(r"--budget 6 adds nothing to the parent's 6 rows", line), line
    (parent.path / "examples.jsonl").write_text("tampered\n")
    with pytest.raises(CurateError, match="sha256 does not match"):
        run(pool_db[0], tmp_path / "x", strategy="random", parent=parent.path, add=2)
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- CLI


def test_cli_options_reach_the_core(pool_db, tmp_path, cli):
    db = str(pool_db[0])
    code, out, err = cli(
        "select",
        "--db",
        db,
        "--strategy",
        "random",
        "--budget",
        "5",
        "--out",
        str(tmp_path / "rd_0"),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["name"] == "rd_0" and json.loads(out)["size"] == 5
    args = [
        "select",
        "--db",
        db,
        "--embeddings",
        "e",
        "--parent",
        str(tmp_path / "rd_0"),
        "--add",
        "3",
    ]
    args += [
        "--metric",
        "cosine",
        "--whiten",
        "4",
        "--seed",
        "9",
        "--name",
        "r1",
        "--out",
        str(tmp_path / "x"),
        "--json",
    ]
    code, out, err = cli(*args)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["size"] == 8 and summary["added"] == 3 and summary["parent"]["name"] == "rd_0"
    manifest = load_subset(tmp_path / "x").manifest
    assert manifest.name == "r1" and manifest.seed == 9
    assert manifest.params == {"metric": "cosine", "whiten": 4, "added": 3}
    code, out, err = cli("select", "--db", db, "--strategy", "vendi", "--budget", "3")
    assert code != 0 and "vendi" in err


def test_cli_error_is_one_line_and_writes_nothing(pool_db, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["select", "--db", str(pool_db[0]), "--budget", "100000", "--strategy", "random"]
    code, out, err = cli(*args)
    assert code == SelectionError.exit_code and out == ""
    rows = pool_db[1].shape[0]
    assert err.strip() == f"error: budget 100000 is larger than the pool ({rows} rows)"
    assert not (tmp_path / "data").exists()


def test_a_different_subset_at_out_needs_force_and_a_rerun_does_not(pool_db, tmp_path, cli):
    db = str(pool_db[0])
    args = ["select", "--db", db, "--strategy", "random", "--budget", "4", "--out"]
    first = cli(*args, str(tmp_path / "s"), "--seed", "1")
    assert first[0] == 0, first[2]
    before = (tmp_path / "s" / "manifest.json").read_bytes()
    assert cli(*args, str(tmp_path / "s"), "--seed", "1")[0] == 0  # same bytes: a rerun
    code, out, err = cli(*args, str(tmp_path / "s"), "--seed", "2")
    assert code == ConflictError.exit_code == 3
    assert (
        err.strip()
        == f"error: {tmp_path / 's'} already holds a different subset; pass --force to replace it"
    )
    assert (tmp_path / "s" / "manifest.json").read_bytes() == before
    code, _, err = cli(*args, str(tmp_path / "s"), "--seed", "2", "--force")
    assert code == 0, err
    assert load_subset(tmp_path / "s").manifest.seed == 2


def test_a_parent_is_verified_as_subsets_verify_does(pool_db, tmp_path):
    """An edited example with a recomputed examples_sha256 passes the file check; its
    content hash does not (issue 13.7)."""
    import hashlib

    db = pool_db[0]
    parent = run(db, tmp_path / "p", strategy="random", budget=4, seed=0).subset
    lines = (parent.path / "examples.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["output"] += " (edited)"
    lines[1] = json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    blob = ("\n".join(lines) + "\n").encode()
    (parent.path / "examples.jsonl").write_bytes(blob)
    manifest = json.loads((parent.path / "manifest.json").read_text())
    manifest["examples_sha256"] = hashlib.sha256(blob).hexdigest()
    (parent.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CurateError, match=r"examples.jsonl:2: content does not match its hash"):
        run(db, tmp_path / "child", strategy="random", parent=parent.path, add=2)
    assert not (tmp_path / "child").exists()


def test_select_writes_nothing_unless_asked_to_embed_a_pool_without_embeddings(
    store, build_pool, tmp_path
):
    """`select()` embeds only with ``embed_missing`` (issue 22); without it a strategy that
    reads vectors on a pool with no embeddings fails naming `curate embed`, and no table,
    model or file appears. (Before, the library embedded the pool whatever the caller.)"""
    build_pool(store, tmp_path / "src", rows=12)
    tables = store.table_names()
    with pytest.raises(SelectionError, match=r"known: none; run `curate embed` first"):
        select(store, SelectRequest(strategy="kcenter", budget=5))
    assert store.table_names() == tables and store.embedding_names() == []
    chosen = select(store, SelectRequest(strategy="random", budget=5))  # reads no vectors
    assert chosen.embedded == 0 and store.table_names() == tables


@pytest.mark.slow
def test_select_on_a_pool_without_embeddings_embeds_it_first(tmp_path, sample_pool, cli):
    """One-off curation in two commands: ingest, then select (issue 11.9)."""
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(sample_pool.read_text().splitlines()[:20]) + "\n")
    db = str(tmp_path / "db")
    assert cli("ingest", str(small), "--db", db)[0] == 0
    code, out, err = cli("select", "--db", db, "--embeddings", "nope", "--budget", "5")
    assert code == EmbeddingError.exit_code and "no embeddings named 'nope'" in err
    out_dir = str(tmp_path / "s")
    code, out, err = cli("select", "--db", db, "--budget", "5", "--out", out_dir, "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["embedded"] == 20 and summary["embeddings"]["name"] == "minilm"
    assert summary["size"] == 5 and summary["coverage_radius"] > 0
    code, out, err = cli("embed", "--db", db, "--json")  # the same cache `embed` uses
    assert code == 0 and json.loads(out)["embedded"] == 0 and json.loads(out)["reused"] == 20
