"""`curate dedup` / `curate decontaminate` on a real LanceDB pool with planted near duplicates
and planted eval questions, and the selection rule that leaves their flagged rows out."""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import numpy as np
import pytest

from curate.errors import SubsetError
from curate.hygiene import minhash
from curate.hygiene.decontaminate import DecontaminateSettings, decontaminate
from curate.hygiene.dedup import DedupSettings, dedup
from curate.ingest import ingest
from curate.select import SelectRequest, select
from curate.store import Store
from curate.subsets import verify_subset

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "pool.jsonl"
ORIGINALS = (1, 5, 9)  # sample rows (0-based) that get planted near duplicates


def _rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def _edit(text: str, every: int) -> str:
    """Drop every ``every``-th word (a light edit)."""
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if i % every != every - 1)


def _variants(row: dict) -> list[dict]:
    base = {k: row[k] for k in ("instruction", "input", "output", "category")}
    return [
        {**base, "instruction": "2 / 2 " + row["instruction"]},  # a chat UI's regenerate prefix
        {**base, "output": _edit(row["output"], 40)},  # every 40th word of the answer dropped
        {**base, "output": row["output"] + " I hope this helps."},  # a longer continuation
    ]


@pytest.fixture
def planted(tmp_path) -> dict:
    """The sample pool, then 3 near duplicates of each of 3 rows, ingested in one append;
    an eval set (Vicuna's `text` layout) whose first question is pool row 20's prompt."""
    rows = _rows()
    extra = [v for i in ORIGINALS for v in _variants(rows[i])]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows + extra), encoding="utf-8")
    store = Store(tmp_path / "db")
    ingest(store, [str(pool)])
    question = rows[20]["instruction"] + (" " + rows[20]["input"] if rows[20]["input"] else "")
    eval_set = tmp_path / "questions.jsonl"
    eval_set.write_text(
        json.dumps({"question_id": 7, "text": question}) + "\n"
        + json.dumps({"question_id": 8, "text": "Compose a sonnet about the rings of Saturn "
                      "seen from a small boat drifting at night."}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    return {"store": store, "rows": rows, "n": len(rows), "eval": eval_set, "path": tmp_path}


def _pool_ids(store: Store) -> list[str]:
    return store.read_pool(["id"])["id"].to_pylist()


def _groups(store: Store) -> dict[int, set[int]]:
    groups: dict[int, set[int]] = {}
    for r in store.hygiene_result("dedup").rows.to_pylist():
        groups.setdefault(r["group"], set()).add(r["position"])
    return groups


def test_dedup_groups_every_planted_duplicate_with_its_original(planted):
    store, n = planted["store"], planted["n"]
    report = dedup(store, DedupSettings())
    ids = _pool_ids(store)
    rows = store.hygiene_result("dedup").rows.to_pylist()
    groups = _groups(store)
    for k, orig in enumerate(ORIGINALS):
        assert groups[orig] == {orig, *range(n + 3 * k, n + 3 * k + 3)}
    # the sample pool's own near duplicates: 10 pairs that differ by a word or a mark
    others = [g for key, g in groups.items() if key not in ORIGINALS]
    assert len(others) == 10 and all(len(g) == 2 for g in others)
    assert report.groups == 13 and report.flagged == 19 and report.largest_group == 4
    assert all(r["keep"] == (r["position"] == r["group"]) for r in rows)  # keep=first
    assert [r["id"] for r in rows] == [ids[r["position"]] for r in rows]
    first = min((r for r in rows if not r["keep"]), key=lambda r: r["position"])
    assert report.examples[0]["kept"]["id"] == ids[first["group"]]
    assert report.examples[0]["duplicate"]["id"] == ids[first["position"]]


@pytest.mark.parametrize(
    "keep, offset", [("longest", 2), ("central", None)], ids=["longest", "central"]
)
def test_keep_policies(planted, keep, offset):
    store, n = planted["store"], planted["n"]
    dedup(store, DedupSettings(keep=keep))
    rows = store.hygiene_result("dedup").rows.to_pylist()
    kept = {r["group"] for r in rows if r["position"] in ORIGINALS or r["position"] >= n}
    if keep == "longest":  # the variant with the appended sentence
        assert kept == {n + 3 * k + offset for k in range(3)}
    else:  # the original: every variant is one edit away from it, two from each other
        assert kept == set(ORIGINALS)


def test_a_rerun_on_the_same_pool_does_no_work_and_new_settings_replace_the_result(planted):
    store = planted["store"]
    first = dedup(store, DedupSettings())
    again = dedup(store, DedupSettings())
    assert again.reused and again.version == first.version and again.flagged == first.flagged
    other = dedup(store, DedupSettings(threshold=0.9))
    assert not other.reused and other.version > first.version
    assert store.hygiene_result("dedup").settings["threshold"] == 0.9


def test_an_interrupted_dedup_leaves_the_previous_result(planted, monkeypatch):
    store = planted["store"]
    before = dedup(store, DedupSettings())
    rows = store.hygiene_result("dedup").rows

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minhash, "agreement", killed)
    with pytest.raises(KeyboardInterrupt):
        dedup(store, DedupSettings(threshold=0.8))
    after = store.hygiene_result("dedup")
    assert after.version == before.version and after.rows.equals(rows)
    assert not list(store.path.glob(".curate-dedup-*"))  # the signature scratch file is gone


def test_embedding_dedup_groups_rows_with_near_identical_vectors(planted, add_embeddings):
    store = planted["store"]
    count = store.pool_count()
    vectors = np.random.default_rng(0).normal(size=(count, 16)).astype(np.float32)
    vectors[40] = vectors[3] * 2.0 + 0.01  # same direction: cosine ~1
    vectors[41] = vectors[3] + 0.001
    add_embeddings(store, "e", vectors)
    report = dedup(store, DedupSettings(method="embedding", threshold=0.99))
    rows = store.hygiene_result("dedup").rows.to_pylist()
    assert {r["position"] for r in rows} == {3, 40, 41} and report.flagged == 2
    assert {r["group"] for r in rows} == {3}
    assert dedup(store, DedupSettings(method="embedding", threshold=0.99)).reused
    store.replace_embeddings("e", store.read_embeddings("e"))  # re-embedded under one name
    assert not dedup(store, DedupSettings(method="embedding", threshold=0.99)).reused


def test_decontaminate_lists_each_row_with_the_question_it_matches(planted):
    store, ids = planted["store"], _pool_ids(planted["store"])
    report = decontaminate(store, DecontaminateSettings((str(planted["eval"]),)))
    rows = store.hygiene_result("decontaminate").rows.to_pylist()
    assert [(r["id"], r["eval_id"]) for r in rows] == [(ids[20], "7")]
    assert rows[0]["overlap"] == pytest.approx(1.0)
    assert report.flagged == 1 and report.per_set[str(planted["eval"])]["questions"] == 2
    again = decontaminate(store, DecontaminateSettings((str(planted["eval"]),)))
    assert again.reused and again.version == report.version


def test_decontaminate_reads_every_eval_format(planted):
    """WizardLM's `Instruction`/`answer` and a ShareGPT conversation match the same row."""
    store, rows, path = planted["store"], planted["rows"], planted["path"]
    row = rows[30]
    question = row["instruction"] + (" " + row["input"] if row["input"] else "")
    wizard = path / "wizard.jsonl"
    wizard.write_text(json.dumps({"idx": 1, "Instruction": question, "answer": "x"}) + "\n")
    chat = path / "chat.json"
    conv = [{"from": "human", "value": question}, {"from": "gpt", "value": "y"}]
    chat.write_text(json.dumps([{"id": "c1", "conversations": conv}]))
    decontaminate(store, DecontaminateSettings((str(wizard), str(chat))))
    found = store.hygiene_result("decontaminate").rows.to_pylist()
    assert {(r["position"], Path(r["eval_set"]).name) for r in found} == {
        (30, "wizard.jsonl"),
        (30, "chat.json"),
    }


def test_selection_leaves_flagged_rows_out_and_verify_checks_the_recorded_result(planted, tmp_path):
    store, n = planted["store"], planted["n"]
    dedup(store, DedupSettings())
    decontaminate(store, DecontaminateSettings((str(planted["eval"]),)))
    total = store.pool_count()
    whole = select(store, SelectRequest(strategy="random", whole_pool=True, name="w"))
    ids = set(whole.ids)
    pool_ids = _pool_ids(store)
    assert len(ids) == total - 19 - 1  # 19 near duplicates, row 20 overlaps the eval set
    assert not ids & {pool_ids[p] for p in [*range(n, n + 9), 20]}
    assert set(whole.manifest.hygiene) == {"dedup", "decontaminate"}
    assert whole.manifest.hygiene["dedup"]["flagged"] == 19
    subset = whole.write(tmp_path / "w")
    assert json.loads((subset.path / "manifest.json").read_text())["format_version"] == 2
    assert verify_subset(subset.path, store).hygiene == "ok"
    dedup(store, DedupSettings(threshold=0.95))  # a later result: verify reads the recorded one
    assert verify_subset(subset.path, store).hygiene == "ok"
    # rebuilt, as a pipeline rerun does: nothing to check (dropped behind the store's back)
    lancedb.connect(str(store.path)).drop_table("hyg_dedup")
    dedup(store, DedupSettings(threshold=0.9))
    assert verify_subset(subset.path, store).hygiene == "gone"

    opted = select(
        store,
        SelectRequest(strategy="random", whole_pool=True, include_duplicates=True, name="o"),
    )
    assert len(opted.ids) == total - 1 and set(opted.manifest.hygiene) == {"decontaminate"}


def test_verify_fails_when_a_pick_is_flagged_by_the_result_it_names(planted, tmp_path):
    store = planted["store"]
    dedup(store, DedupSettings())
    chosen = select(store, SelectRequest(strategy="random", budget=20, name="s"))
    flagged = store.hygiene_result("dedup").rows.to_pylist()
    bad = next(r for r in flagged if not r["keep"])
    pick = chosen.manifest.picks[-1]
    pool = store.read_pool()
    row = pool.slice(bad["position"], 1).to_pylist()[0]
    from curate.records import Example

    examples = chosen.examples[:-1] + [Example.from_dict(row).to_dict()]
    picks = chosen.manifest.picks[:-1] + [{"id": row["id"], "hash": row["hash"]}]
    assert pick["id"] != row["id"]
    forged = chosen.manifest.replace(picks=picks)
    from curate.subsets import write_subset

    write_subset(tmp_path / "forged", forged, examples)
    with pytest.raises(SubsetError, match="flagged by hyg_dedup"):
        verify_subset(tmp_path / "forged", store)


def test_kcenter_with_exclusions_picks_as_on_the_pool_without_those_rows(
    planted, add_embeddings, naive_kcenter
):
    store = planted["store"]
    count = store.pool_count()
    vectors = np.random.default_rng(1).normal(size=(count, 8)).astype(np.float32)
    add_embeddings(store, "v", vectors)
    dedup(store, DedupSettings())
    flagged = {
        r["position"] for r in store.hygiene_result("dedup").rows.to_pylist() if not r["keep"]
    }
    chosen = select(store, SelectRequest(budget=12, embeddings="v", name="k"))
    allowed = [i for i in range(count) if i not in flagged]
    pool_ids = _pool_ids(store)
    first = allowed.index(pool_ids.index(chosen.ids[0]))  # the seeded first center
    picks, _ = naive_kcenter(vectors[allowed], [first], 11)
    assert chosen.ids == [pool_ids[allowed[p]] for p in [first, *picks]]


def test_a_stale_result_is_reported_and_not_used(planted, tmp_path):
    store = planted["store"]
    dedup(store, DedupSettings())
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"instruction": "A new row", "output": "added later"}) + "\n")
    ingest(store, [str(more)])
    chosen = select(store, SelectRequest(strategy="random", whole_pool=True, name="s"))
    assert len(chosen.ids) == store.pool_count() and chosen.manifest.hygiene is None
    assert len(chosen.warnings) == 1 and "stale" not in chosen.warnings[0]
    assert "computed on pool version 1, the pool is at 2" in chosen.warnings[0]


def test_components_and_lsh_parameters():
    groups = minhash.components(np.array([[5, 9], [9, 12], [1, 2], [12, 5]]))
    assert dict(zip(groups.members.tolist(), groups.labels.tolist(), strict=True)) == {
        1: 1, 2: 1, 5: 5, 9: 5, 12: 5,
    }  # fmt: skip
    bands, rows = minhash.lsh_params(0.7, 128)
    assert bands * rows <= 128
    s_curve = lambda s: 1 - (1 - s**rows) ** bands  # noqa: E731
    assert s_curve(0.85) > 0.95 and s_curve(0.4) < 0.05


# ----------------------------------------------------------------------------- the command line


def _tables(db: Path) -> list[str]:
    return sorted(p.name for p in db.glob("hyg_*"))


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["dedup", "--threshold", "1.5"], 2, "1.5 is not in (0, 1]"),
        (["dedup", "--threshold", "0"], 2, "0 is not in (0, 1]"),
        (["dedup", "--method", "embedding"], 1, "the embedding method needs an embeddings table"),
        (["decontaminate", "--against", "EMPTY"], 1, "empty.jsonl: the file is empty"),
        (["decontaminate", "--against", "MISSING"], 1, "missing.jsonl: eval set not found"),
        (["decontaminate", "--against", "BINARY"], 1, "binary.jsonl"),
        (["decontaminate", "--against", "EVAL", "--min-overlap", "2"], 2, "not in (0, 1]"),
    ],
    ids=[
        "threshold-high",
        "threshold-zero",
        "no-embeddings",
        "empty-eval",
        "no-eval",
        "binary-eval",
        "overlap",
    ],  # fmt: skip
)
def test_bad_input_is_one_line_and_writes_nothing(planted, cli, args, code, message):
    db, path = planted["store"].path, planted["path"]
    (path / "empty.jsonl").write_text("")
    (path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage\x80\n")
    swap = {"EMPTY": path / "empty.jsonl", "MISSING": path / "missing.jsonl"}
    swap["BINARY"] = path / "binary.jsonl"
    swap["EVAL"] = planted["eval"]
    result = cli(*[swap.get(a, a) for a in args], "--db", db)
    assert result.code == code
    assert message in " ".join(result.err.split())
    assert _tables(db) == []


def test_cli_dedup_then_decontaminate_then_select(planted, cli, tmp_path):
    db = planted["store"].path
    result = cli("dedup", "--db", db, "--json")
    assert result.code == 0 and result.json()["flagged"] == 19
    assert cli("dedup", "--db", db, "--json").json()["reused"] is True
    result = cli("decontaminate", "--db", db, "--against", planted["eval"])
    assert result.code == 0 and "1 of" in result.out
    result = cli("select", "--db", db, "--strategy", "random", "--budget", "30",
                 "--out", tmp_path / "s", "--json")  # fmt: skip
    assert result.code == 0 and set(result.json()["hygiene"]) == {"dedup", "decontaminate"}
    assert cli("subsets", "verify", tmp_path / "s", "--db", db).code == 0


# ----------------------------------------------------------------------------- eval, pipeline


def test_the_eval_overlap_warning_counts_from_the_stored_result_or_computes_it(planted):
    from curate.hygiene.decontaminate import overlap_warning

    store, eval_set = planted["store"], planted["eval"]
    computed = overlap_warning(store, eval_set)
    assert "1 of its questions match 1 pool rows (8-gram overlap >= 0.5)" in computed
    assert "run `curate decontaminate" in computed and store.hygiene_result("decontaminate") is None
    decontaminate(store, DecontaminateSettings((str(eval_set),)))
    stored = overlap_warning(store, eval_set)
    assert "1 of its questions match 1 pool rows (hyg_decontaminate v1)" in stored
    clean = planted["path"] / "clean.jsonl"
    clean.write_text(json.dumps({"text": "Name three moons of Jupiter and say who found them."}))
    assert overlap_warning(store, clean) is None


def test_curate_eval_model_warns_when_the_eval_set_overlaps_the_pool(planted, cli, tiny_lm):
    row = planted["rows"][20]
    eval_set = planted["path"] / "qa.jsonl"
    eval_set.write_text(json.dumps({**row, "id": "q1"}) + "\n")
    result = cli("eval", "model", tiny_lm, "--eval-set", eval_set, "--db", planted["store"].path,
                 "--device", "cpu", "--max-length", "128")  # fmt: skip
    assert result.code == 0, result.err
    assert "overlaps the pool" in result.err and "1 of its questions match 1 pool rows" in (
        " ".join(result.err.split())
    )


def test_the_pipeline_cleans_the_pool_before_every_selection():
    import yaml

    root = Path(__file__).resolve().parents[1]
    template = root / "curate" / "templates" / "dvc.yaml"
    stages = yaml.safe_load(template.read_text())["stages"]
    assert stages["dedup"]["cmd"] == "curate dedup --db ${db}"
    assert stages["decontaminate"]["cmd"] == "curate decontaminate --db ${db} --against ${eval.set}"
    tables = {"${db}/hyg_dedup.lance", "${db}/hyg_decontaminate.lance"}
    for name in ("select_rd_0", "select_full", "select"):
        body = stages[name].get("do", stages[name])
        assert tables <= set(body["deps"]), name
    assert (root / "dvc.yaml").read_text() == template.read_text()


def test_a_pool_that_changes_during_dedup_gets_no_result(planted, monkeypatch, tmp_path):
    from curate.errors import ConflictError

    store = planted["store"]
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"instruction": "Arrived mid-run", "output": "yes"}) + "\n")
    real = minhash.components

    def ingest_meanwhile(pairs):
        ingest(Store(store.path), [str(more)])
        return real(pairs)

    monkeypatch.setattr(minhash, "components", ingest_meanwhile)
    with pytest.raises(ConflictError, match="changed while `curate dedup` read it"):
        dedup(store, DedupSettings())
    assert store.hygiene_result("dedup") is None


def test_the_python_api_cleans_then_selects(planted):
    import curate

    pool = curate.Pool(planted["store"].path)
    assert pool.dedup(keep="longest").flagged == 19
    assert pool.decontaminate(planted["eval"], min_overlap=0.9).flagged == 1
    chosen = pool.select(strategy="random", whole_pool=True)
    assert len(chosen.ids) == len(pool) - 20 and set(chosen.to_dict()["hygiene"]) == {
        "dedup",
        "decontaminate",
    }
    assert len(pool.select(strategy="random", whole_pool=True, include_duplicates=True,
                           include_contaminated=True).ids) == len(pool)  # fmt: skip


@pytest.mark.slow
def test_dedup_killed_mid_run_keeps_the_previous_result_and_the_rerun_cleans_up(tmp_path):
    """kill -9 of a real `curate dedup` while its signature file exists (the heavy part)."""
    import time

    from tests.faults.tools import kill_after, records, run, start, write_jsonl

    rows = records(0, 40_000) + [{**r, "output": r["output"] + " ok"} for r in records(0, 500)]
    store = Store(tmp_path / "db")
    ingest(store, [str(write_jsonl(tmp_path / "pool.jsonl", rows))])
    before = dedup(store, DedupSettings())
    proc = start("dedup", "--db", "db", "--threshold", "0.9", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(store.path.glob(".curate-dedup-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kill_after(proc, 0.2), "the run ended before it could be killed"
    assert list(store.path.glob(".curate-dedup-*"))  # what the killed run left
    after = store.hygiene_result("dedup")
    assert after.version == before.version and after.settings["threshold"] == 0.7
    done = run("dedup", "--db", "db", "--threshold", "0.9", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not list(store.path.glob(".curate-dedup-*"))
    assert store.hygiene_result("dedup").settings["threshold"] == 0.9
