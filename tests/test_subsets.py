"""Subset artifacts: verify against the pool, list/show/diff, and exports that training
tools read (LLaMA-Factory/axolotl Alpaca and ShareGPT JSON, TRL messages, parquet, HF)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.errors import SubsetError
from curate.exports import export_subset
from curate.files import canonical_json
from curate.ingest import ingest
from curate.manifest import Manifest, ParentRef, PoolRef
from curate.select import SelectRequest, select
from curate.store import Store
from curate.subsets import (
    diff_subsets,
    list_subsets,
    load_subset,
    summarize,
    verify_subset,
)

DIM = 8  # the width of the 0.1 subsets' vectors (tests/data/subsets_v1)
RECORDS = [
    {
        "id": "single",
        "instruction": "Add 2 and 3.",
        "input": "Show the sum.",
        "output": "5",
        "category": "math",
    },
    {
        "id": "lima",
        "instruction": "And in French?",
        "input": "",
        "output": "Bonjour.",
        "history": [["Say hello.", "Hello."], ["In German?", "Hallo."]],
    },
    {
        "id": "chat",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Capital of France?"},
            {"from": "gpt", "value": "Paris."},
            {"from": "human", "value": "And Italy?"},
            {"from": "gpt", "value": "Rome."},
        ],
    },
    {
        "id": "twice",
        "messages": [
            {"role": "user", "content": "Here is a list: a, b."},
            {"role": "user", "content": "Sort it backwards."},
            {"role": "assistant", "content": "b, a"},
        ],
    },
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, sample_pool, add_embeddings):
    """A pool with single- and multi-turn rows, embeddings, and subsets rd_0 → rd_1."""
    root = tmp_path_factory.mktemp("subsets")
    source = root / "pool.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    store = Store(root / "db")
    ingest(store, [str(source), str(sample_pool)])
    vectors = np.random.default_rng(1).standard_normal((store.pool_count(), DIM)).astype(np.float32)
    add_embeddings(store, "e", vectors)
    subsets = root / "subsets"
    rd0 = select(store, SelectRequest(strategy="random", budget=6, seed=0, name="rd_0")).write(
        subsets / "rd_0"
    )
    req = SelectRequest(embeddings="e", parent=rd0.path, add=4, name="rd_1")
    rd1 = select(store, req).write(subsets / "rd_1")
    return root, store, rd0, rd1


def copy_subset(subset, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("examples.jsonl", "manifest.json"):
        (dest / name).write_bytes((subset.path / name).read_bytes())
    return dest


@pytest.fixture(scope="module")
def multi_turn(world, tmp_path_factory) -> Path:
    """A subset holding exactly the four hand-written records."""
    root, store, *_ = world
    rows = {r["id"]: r for r in store.read_pool().to_pylist()}
    from curate.records import Example
    from curate.subsets import write_subset

    examples = [Example.from_dict(rows[r["id"]]).to_dict() for r in RECORDS]
    manifest = Manifest(
        name="hand",
        strategy="manual",
        params={},
        seed=0,
        budget=len(examples),
        parent=None,
        pool=PoolRef(store.pool_version(), store.pool_count()),
        embeddings=None,
        picks=[{"id": e["id"], "hash": e["hash"]} for e in examples],
        created_by="test",
    )
    return write_subset(tmp_path_factory.mktemp("hand") / "hand", manifest, examples).path


# ----------------------------------------------------------------------------- verify


def test_verify_passes_and_checks_the_parent(world):
    _, store, rd0, rd1 = world
    report = verify_subset(rd1.path, store)
    assert report.examples == 10 and report.parent == "ok" and report.name == "rd_1"
    assert report.pool_version == report.pool_version_now == store.pool_version()
    assert verify_subset(rd0.path, store).parent == "none"


def test_verify_catches_tampering(world, tmp_path):
    _, store, _, rd1 = world
    edited = copy_subset(rd1, tmp_path / "edited")
    lines = (edited / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    with pytest.raises(SubsetError, match="sha256 does not match the manifest"):
        (edited / "examples.jsonl").write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
        verify_subset(edited, store)

    # content edited and the file's sha256 updated to match: the content hash still catches it
    row = json.loads(lines[2])
    row["output"] += " (edited)"
    blob = "\n".join([*lines[:2], json.dumps(row, sort_keys=True), *lines[3:]]) + "\n"
    (edited / "examples.jsonl").write_text(blob, encoding="utf-8")
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["examples_sha256"] = hashlib.sha256(blob.encode()).hexdigest()
    (edited / "manifest.json").write_text(canonical_json(manifest))
    with pytest.raises(SubsetError, match=r"examples.jsonl:3: content does not match its hash"):
        verify_subset(edited, store)


def test_unreadable_examples_name_the_file_and_line(world, tmp_path):
    _, _, rd0, _ = world
    broken = copy_subset(rd0, tmp_path / "broken")
    blob = (broken / "examples.jsonl").read_bytes().splitlines(keepends=True)
    (broken / "examples.jsonl").write_bytes(b"".join([blob[0], b"\xff\n", *blob[2:]]))
    with pytest.raises(SubsetError, match=r"examples.jsonl:2: invalid UTF-8"):
        load_subset(broken, verify=False)


def test_verify_checks_every_id_against_the_pool(world, tmp_path, sample_pool):
    _, _, _, rd1 = world
    other = Store(tmp_path / "other")
    lines = sample_pool.read_text(encoding="utf-8").splitlines()[:50]
    (tmp_path / "small.jsonl").write_text("\n".join(lines) + "\n")
    ingest(other, [str(tmp_path / "small.jsonl")])
    known = set(other.read_pool(["id"])["id"].to_pylist())
    missing = sum(i not in known for i in rd1.ids)
    with pytest.raises(SubsetError, match=f"{missing} of 10 examples .* are not in the pool at"):
        verify_subset(rd1.path, other)


def test_verify_notices_a_rebuilt_parent(world, tmp_path):
    _, store, rd0, rd1 = world
    copy_subset(rd1, tmp_path / "rd_1")
    assert verify_subset(tmp_path / "rd_1", store).parent == "not found"
    parent = copy_subset(rd0, tmp_path / "rd_0")
    manifest = json.loads((parent / "manifest.json").read_text())
    manifest["seed"] = 99  # a different round 0, same picks
    (parent / "manifest.json").write_text(canonical_json(manifest))
    with pytest.raises(SubsetError, match="parent .* changed after this subset was built"):
        verify_subset(tmp_path / "rd_1", store)


# ----------------------------------------------------------------------------- list/show/diff


def test_list_and_show(world):
    root, _, rd0, rd1 = world
    (root / "subsets" / "not-a-subset").mkdir(exist_ok=True)
    rows = list_subsets(root / "subsets")
    assert [r["name"] for r in rows] == ["rd_0", "rd_1"]
    assert rows[1]["parent"]["name"] == "rd_0" and rows[1]["size"] == 10
    assert rows[1]["manifest_sha256"] == rd1.manifest_sha256
    shown = summarize(rd1)
    assert shown["inherited"] == 6 and shown["coverage"]["picks_with_distance"] == 4
    distances = [p["distance"] for p in rd1.manifest.picks[6:]]
    assert shown["coverage"] == {
        "first": distances[0],
        "last": distances[-1],
        "picks_with_distance": 4,
    }
    assert sum(shown["categories"].values()) == 10
    assert list_subsets(root / "nowhere") == []


def test_diff(world):
    _, _, rd0, rd1 = world
    diff = diff_subsets(rd0, rd1)
    assert diff["common"] == 6 and diff["only_a"] == [] and diff["only_b"] == rd1.ids[6:]
    assert diff["b_extends_a"] and not diff["a_extends_b"]
    assert diff["jaccard"] == pytest.approx(6 / 10)
    back = diff_subsets(rd1, rd0)
    assert back["a_extends_b"] and back["only_a"] == rd1.ids[6:]


# ----------------------------------------------------------------------------- export


def test_export_alpaca_keeps_history_and_system(multi_turn, tmp_path):
    records = json.loads(export_subset(multi_turn, "alpaca", tmp_path / "a.json").read_text())
    by_id = {r["id"]: r for r in records}
    # Two user turns in a row were joined at ingest (curate.conversations), so the row
    # has an Alpaca form: one instruction.
    assert by_id["twice"] == {
        "id": "twice",
        "instruction": "Here is a list: a, b.\n\nSort it backwards.",
        "input": "",
        "output": "b, a",
    }
    assert by_id["single"] == {
        "id": "single",
        "instruction": "Add 2 and 3.",
        "input": "Show the sum.",
        "output": "5",
    }
    assert by_id["lima"]["history"] == [["Say hello.", "Hello."], ["In German?", "Hallo."]]
    assert (
        by_id["lima"]["instruction"] == "And in French?" and by_id["lima"]["output"] == "Bonjour."
    )
    assert by_id["chat"]["system"] == "Be brief."
    assert by_id["chat"]["history"] == [["Capital of France?", "Paris."]]
    assert (by_id["chat"]["instruction"], by_id["chat"]["output"]) == ("And Italy?", "Rome.")


def test_export_sharegpt_and_messages(multi_turn, tmp_path):
    conversations = json.loads(
        export_subset(multi_turn, "sharegpt", tmp_path / "s.json").read_text()
    )
    by_id = {c["id"]: c["conversations"] for c in conversations}
    assert by_id["single"] == [
        {"from": "human", "value": "Add 2 and 3.\n\nShow the sum."},
        {"from": "gpt", "value": "5"},
    ]
    assert [t["from"] for t in by_id["chat"]] == ["system", "human", "gpt", "human", "gpt"]
    assert [t["from"] for t in by_id["twice"]] == ["human", "gpt"]

    lines = export_subset(multi_turn, "messages", tmp_path / "m.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == [r["id"] for r in RECORDS]
    lima = rows[1]["messages"]
    assert [m["role"] for m in lima] == ["user", "assistant"] * 3
    assert lima[-1] == {"role": "assistant", "content": "Bonjour."}


def test_export_parquet_and_hf_read_back_with_datasets(multi_turn, tmp_path):
    import datasets

    subset = load_subset(multi_turn)
    table = pq.read_table(export_subset(multi_turn, "parquet", tmp_path / "p.parquet"))
    assert table.column("id").to_pylist() == subset.ids
    assert table.column("messages").to_pylist()[0] == [
        {"role": "user", "content": "Add 2 and 3.\n\nShow the sum."},
        {"role": "assistant", "content": "5"},
    ]
    folder = export_subset(multi_turn, "hf", tmp_path / "hf")
    ds = datasets.load_from_disk(str(folder))
    assert ds["id"] == subset.ids and ds["hash"] == [e["hash"] for e in subset.examples]
    assert ds[2]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "p.parquet"]


# ----------------------------------------------------------------------------- CLI


def test_cli_subsets_commands(world, tmp_path, cli):
    root, store, rd0, rd1 = world
    folder = str(root / "subsets")
    code, out, err = cli("subsets", "list", "--dir", folder, "--json")
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)] == ["rd_0", "rd_1"]
    code, out, _ = cli("subsets", "show", "rd_1", "--dir", folder, "--json")
    assert code == 0 and json.loads(out)["manifest_sha256"] == rd1.manifest_sha256
    code, out, _ = cli("subsets", "diff", "rd_0", str(rd1.path), "--dir", folder, "--json")
    assert code == 0 and json.loads(out)["b_extends_a"] is True
    code, out, _ = cli("subsets", "verify", "rd_1", "--dir", folder, "--db", str(store.path))
    assert code == 0 and "ok rd_1: 10 examples" in out and "parent ok" in out
    code, out, err = cli(
        "subsets", "verify", "rd_1", "--dir", folder, "--db", str(tmp_path / "empty")
    )
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    target = tmp_path / "x.jsonl"
    code, out, _ = cli(
        "subsets",
        "export",
        "rd_0",
        "--dir",
        folder,
        "--format",
        "messages",
        "--out",
        str(target),
        "--json",
    )
    assert code == 0 and json.loads(out) == {"format": "messages", "path": str(target)}
    assert len(target.read_text().splitlines()) == 6
    code, _, err = cli("subsets", "show", "nope", "--dir", folder)
    assert code == 1 and "nope: no subset folder" in err


# ----------------------------------------------------------------------------- manifest versions

V1_SUBSETS = Path(__file__).parent / "data" / "subsets_v1"


@pytest.fixture(scope="module")
def v1_pool(tmp_path_factory, sample_pool, add_embeddings):
    """The pool and embeddings the 0.1 subsets in tests/data/subsets_v1 were selected from
    (the sample pool, random vectors from seed 0, with uncertainty scores)."""
    from curate.embedders.causal_lm import CausalLMEmbedder

    store = Store(tmp_path_factory.mktemp("v1") / "db")
    ingest(store, [str(sample_pool)])
    n = store.pool_count()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    scores = {c: rng.random(n).astype(np.float32) for c in CausalLMEmbedder.score_columns}
    add_embeddings(store, "e", vectors, scores)
    return store


V1_REQUESTS = {  # how each 0.1 subset was made (`curate select` with these options)
    "rd_0": dict(strategy="random", budget=6, seed=3),
    "rd_1": dict(strategy="kcenter", add=4, parent="rd_0", embeddings="e"),
    "unc": dict(strategy="entropy", add=3, parent="rd_0", embeddings="e"),
    "kc": dict(strategy="kcenter", budget=5, seed=1, embeddings="e", metric="cosine", whiten=4),
}


@pytest.mark.parametrize("name", sorted(V1_REQUESTS))
def test_subsets_written_by_0_1_load_verify_and_reserialise_byte_for_byte(name, v1_pool):
    path = V1_SUBSETS / name
    report = verify_subset(path, v1_pool)
    assert report.examples == load_subset(path).manifest.budget
    assert report.parent == ("ok" if "parent" in V1_REQUESTS[name] else "none")
    manifest = Manifest.read(path)
    assert manifest.format_version == 1 and manifest.created_by == "curate 0.1.0"
    assert manifest.to_json().encode("utf-8") == (path / "manifest.json").read_bytes()


@pytest.mark.parametrize("name", sorted(V1_REQUESTS))
def test_selecting_again_rewrites_the_0_1_bytes(name, v1_pool, tmp_path):
    """Same pool, vectors and options as 0.1 → the same examples.jsonl and manifest.json
    (the version string and the LanceDB table version aside, which name the writer)."""
    fields = dict(V1_REQUESTS[name])
    if "parent" in fields:
        fields["parent"] = V1_SUBSETS / fields["parent"]
    params = {k: fields.pop(k) for k in ("metric", "whiten") if k in fields}
    request = SelectRequest(params=params, name=name, **fields)
    new = select(v1_pool, request).write(tmp_path / name)
    old = Manifest.read(V1_SUBSETS / name)
    for file in ("examples.jsonl",):
        assert (new.path / file).read_bytes() == (V1_SUBSETS / name / file).read_bytes()
    same_writer = new.manifest.replace(created_by=old.created_by, pool=old.pool)
    assert same_writer.to_json().encode() == (V1_SUBSETS / name / "manifest.json").read_bytes()
    assert (new.path / "manifest.json").read_text() == new.manifest.to_json()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("budget"), "field 'budget' is missing"),
        (lambda m: m.update(seed="0"), "field 'seed' must be an integer"),
        (lambda m: m.update(seed=True), "field 'seed' must be an integer"),
        (lambda m: m.update(format_version=3), "unsupported format_version 3"),
        (lambda m: m.update(colour="red"), "unknown field 'colour' for format_version 1"),
        (
            lambda m: m.update(pool={"version": 1}),
            "pool must have exactly the fields version, rows",
        ),
        (lambda m: m["picks"][1].pop("hash"), r"picks\[1\] has no string hash"),
        (lambda m: m["picks"][0].update(rank=1), r"picks\[0\] has an unknown field 'rank'"),
    ],
    ids=["missing", "type", "bool-int", "version", "unknown", "ref", "pick-hash", "pick-field"],
)
def test_a_bad_manifest_names_the_file_and_field(change, message, tmp_path):
    path = tmp_path / "rd_1"
    shutil.copytree(V1_SUBSETS / "rd_1", path)
    data = json.loads((path / "manifest.json").read_text())
    change(data)
    (path / "manifest.json").write_text(canonical_json(data))
    with pytest.raises(SubsetError, match=f"manifest.json: {message}"):
        load_subset(path, verify=False)


def test_manifest_dict_round_trip_keeps_absent_and_null_distances():
    data = json.loads((V1_SUBSETS / "rd_1" / "manifest.json").read_text())
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == data
    assert manifest.parent == ParentRef("rd_0", data["parent"]["manifest_sha256"])
    assert "distance" not in manifest.picks[0] and manifest.picks[-1]["distance"] > 0
    first_center = Manifest.read(V1_SUBSETS / "kc").picks[0]
    assert "distance" in first_center and first_center["distance"] is None
