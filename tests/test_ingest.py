"""`curate ingest` and `curate pool` on a real LanceDB folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InvalidInputError
from curate.ingest import ingest
from curate.pool import summarize
from curate.records import content_hash


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


GOOD = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
]


# ------------------------------------------------------------------ shared pools


def test_shared_pools_counts_multiturn_and_duplicates(store, shared_data):
    lima = str(shared_data / "pools" / "lima.json")
    alpaca = str(shared_data / "pools" / "alpaca_en_demo.json")
    report = ingest(store, [lima, alpaca])
    assert report.per_source[lima] == {"read": 1029, "duplicates": 0, "rejected": 0}
    assert report.per_source[alpaca]["read"] == 1000
    # the Alpaca demo file repeats some records verbatim: stored once, counted
    assert report.duplicates == report.per_source[alpaca]["duplicates"] > 0
    assert report.added == 2029 - report.duplicates == store.pool_count()
    assert report.version_before is None and report.version_after == store.pool_version()

    pool = store.read_pool()
    rows = pool.to_pylist()
    multi = [r for r in rows if r["messages"] is not None]
    assert len(multi) == 29 and all(r["source"] == "lima" for r in multi)
    first = multi[0]
    roles = [m["role"] for m in first["messages"]]
    assert roles[-2:] == ["user", "assistant"] and roles.count("user") >= 2
    assert first["messages"][-1]["content"] == first["output"]
    assert len(set(pool["hash"].to_pylist())) == pool.num_rows
    assert pool["pos"].to_pylist() == list(range(pool.num_rows))

    # idempotent: the same files again add nothing and make no new table version
    version = store.pool_version()
    again = ingest(store, [lima, alpaca])
    assert again.added == 0 and again.duplicates == 2029
    assert store.pool_version() == version and store.pool_count() == report.added


def test_sample_pool_ingests_cleanly_with_categories(store, sample_pool):
    report = ingest(store, [str(sample_pool)])
    assert report.rejected == 0 and report.added >= 300
    summary = summarize(store)
    assert len(summary["categories"]) >= 8
    assert sum(summary["categories"].values()) == summary["rows"]
    assert summary["sources"] == {"pool": summary["rows"]}


# ------------------------------------------------------------------ formats


def test_explicit_ids_kept_and_derived_ids_from_hash(store, tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": 7, **GOOD[0]}, GOOD[1]])
    ingest(store, [str(src)])
    rows = store.read_pool(["id", "hash", "n_chars"]).to_pylist()
    assert rows[0]["id"] == "7"
    expected = content_hash("Add 2 and 3.", "", "5", None)
    assert rows[1]["hash"] == expected and rows[1]["id"] == expected[:16]
    assert rows[1]["n_chars"] == len("Add 2 and 3.") + 1


@pytest.mark.parametrize(
    "fmt", ["sharegpt", "messages", "dolly", "parquet", "csv", "hf-disk", "hf-folder"]
)
def test_source_formats_normalise_to_the_same_rows(store, tmp_path, fmt):
    convo = [("What is 2+2?", "4"), ("And times 3?", "12")]
    if fmt == "sharegpt":
        turns = [
            t
            for u, a in convo
            for t in ({"from": "human", "value": u}, {"from": "gpt", "value": a})
        ]
        src = write_jsonl(tmp_path / "s.jsonl", [{"conversations": turns, "category": "math"}])
    elif fmt == "messages":
        turns = [
            t
            for u, a in convo
            for t in ({"role": "user", "content": u}, {"role": "assistant", "content": a})
        ]
        src = write_jsonl(tmp_path / "m.jsonl", [{"messages": turns, "category": "math"}])
    else:
        records = [
            {
                "instruction": "Summarise.",
                "context": "A long text.",
                "response": "Short.",
                "category": "summarization",
            }
            if fmt == "dolly"
            else {
                "instruction": "Summarise.",
                "input": "A long text.",
                "output": "Short.",
                "category": "summarization",
            }
        ]
        if fmt in ("dolly",):
            src = write_jsonl(tmp_path / "d.jsonl", records)
        elif fmt == "parquet":
            src = tmp_path / "p.parquet"
            pq.write_table(pa.Table.from_pylist(records), src)
        elif fmt == "csv":
            src = tmp_path / "c.csv"
            with src.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(records[0]))
                writer.writeheader()
                writer.writerows(records)
        else:
            import datasets

            ds = datasets.Dataset.from_list(records)
            if fmt == "hf-disk":
                ds.save_to_disk(str(tmp_path / "ds"))
            else:
                (tmp_path / "ds").mkdir()
                ds.to_json(str(tmp_path / "ds" / "train.jsonl"))
            src = f"hf://{tmp_path / 'ds'}:train"
    report = ingest(store, [str(src)])
    assert report.added == 1, report
    row = store.read_pool().to_pylist()[0]
    if fmt in ("sharegpt", "messages"):
        assert row["instruction"] == "And times 3?" and row["output"] == "12"
        assert [m["content"] for m in row["messages"]] == [
            "What is 2+2?",
            "4",
            "And times 3?",
            "12",
        ]
        assert row["category"] == "math"
    else:
        assert (row["instruction"], row["input"], row["output"]) == (
            "Summarise.",
            "A long text.",
            "Short.",
        )
        assert row["messages"] is None and row["category"] == "summarization"


def test_sharegpt_single_turn_is_not_stored_as_messages(store, tmp_path):
    turns = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
    ingest(store, [str(write_jsonl(tmp_path / "s.jsonl", [{"conversations": turns}]))])
    row = store.read_pool().to_pylist()[0]
    assert (row["instruction"], row["output"], row["messages"]) == ("Hi?", "Hello.", None)


# ------------------------------------------------------------------ bad input


BAD_CASES = {
    "malformed-jsonl": (
        "a.jsonl",
        b'{"instruction": "a", "output": "b"}\n{"instruction": "x",\n',
        2,
        "malformed JSON",
    ),
    "malformed-json": (
        "a.json",
        b'[{"instruction": "a", "output": "b"},\n {"instruction": "x" "output": "y"}]',
        2,
        "malformed JSON",
    ),
    "missing-output": (
        "a.json",
        b'[{"instruction": "a", "output": "b"},\n\n {"instruction": "x"}]',
        3,
        "'output'",
    ),
    "empty-instruction": (
        "a.jsonl",
        b'{"instruction": "a", "output": "b"}\n{"instruction": "  ", "output": "y"}\n',
        2,
        "'instruction'",
    ),
    "non-utf8-jsonl": (
        "a.jsonl",
        b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff", "output": "y"}\n',
        2,
        "UTF-8",
    ),
    "non-utf8-json": (
        "a.json",
        b'[{"instruction": "a", "output": "b"},\n{"instruction": "\xfe", "output": "y"}]',
        2,
        "UTF-8",
    ),
    "unknown-extension": ("a.txt", b"hello\n", None, "unknown format"),
    "duplicate-id": (
        "a.jsonl",
        b'{"id": "q1", "instruction": "a", "output": "b"}\n{"id": "q1", "instruction": "c", "output": "d"}\n',
        2,
        "q1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_names_file_and_line_and_leaves_pool_untouched(store, tmp_path, case):
    ingest(store, [str(write_jsonl(tmp_path / "good.jsonl", GOOD))])
    version, count = store.pool_version(), store.pool_count()
    name, content, line, reason = BAD_CASES[case]
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(InvalidInputError) as err:
        ingest(store, [str(src)])
    message = str(err.value)
    assert message.startswith(f"{src}:{line}:" if line else f"{src}:"), message
    assert reason in message and "\n" not in message
    assert store.pool_version() == version and store.pool_count() == count


def test_explicit_id_clash_with_pool_is_an_error(store, tmp_path):
    ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", [{"id": "q1", **GOOD[0]}]))])
    version = store.pool_version()
    with pytest.raises(InvalidInputError, match="'q1' is already in the pool"):
        ingest(
            store,
            [
                str(
                    write_jsonl(
                        tmp_path / "b.jsonl", [GOOD[1], {"id": "q1", **GOOD[1], "output": "6"}]
                    )
                )
            ],
        )
    assert store.pool_version() == version and store.pool_count() == 1


def test_skip_invalid_writes_rejects_and_ingests_the_rest(store, tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(
        b'{"instruction": "a", "output": "b"}\n{"instruction": "x"}\nnot json\n{"instruction": "c", "output": "d"}\n'
    )
    rejects = tmp_path / "out" / "rejects.jsonl"
    report = ingest(store, [str(src)], skip_invalid=True, rejects_path=rejects)
    assert report.added == 2 and report.rejected == 2 and store.pool_count() == 2
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in lines] == [(2, str(src)), (3, str(src))]
    assert "'output'" in lines[0]["reason"] and "malformed JSON" in lines[1]["reason"]


# ------------------------------------------------------------------ CLI


def test_cli_error_is_one_line_with_nonzero_exit(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a"}\n')
    result = cli("ingest", "bad.jsonl", "--db", "db")
    assert result.code != 0
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert errors == ["error: bad.jsonl:1: missing or empty 'output'"]
    assert "Traceback" not in result.err


def test_cli_ingest_then_pool_json(tmp_path, monkeypatch, sample_pool, cli):
    monkeypatch.chdir(tmp_path)
    result = cli("ingest", str(sample_pool), "--db", "db", "--json")
    assert result.code == 0, result.err
    added = result.json()["added"]
    result = cli("pool", "--db", "db", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["rows"] == added and summary["version"] == 1
    assert list(summary["n_chars_percentiles"]) == ["p5", "p25", "p50", "p75", "p95", "p100"]


def test_cli_pool_without_table_says_what_to_run(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    result = cli("pool", "--db", "nowhere")
    assert result.code != 0 and "curate ingest" in result.err
