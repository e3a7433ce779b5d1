"""The record readers every source goes through (pools and eval sets alike): container by
content when the extension does not say, BOMs, directories, unreadable and empty sources,
no silent coercion, TRL prompt/completion rows. Real files, real LanceDB."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli import error_line
from curate.errors import InvalidInputError
from curate.ingest import ingest
from curate.readers import read_records
from curate.records import to_example

ROWS = [
    {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": r["instruction"]},
            {"from": "gpt", "value": r["output"]},
        ]
    }
    for r in ROWS
]


def _jsonl(records: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _pool(store) -> list[tuple[str, str]]:
    return sorted((r["instruction"], r["output"]) for r in store.read_pool().to_pylist())


EXPECTED = sorted((r["instruction"], r["output"]) for r in ROWS)


# ------------------------------------------------------------ --format on any extension


@pytest.mark.parametrize("name", ["x.txt", "r.alpaca", "noext"])
@pytest.mark.parametrize("layout", ["array", "lines"])
def test_record_format_applies_to_any_extension(store, tmp_path, name, layout):
    src = tmp_path / name
    src.write_text(json.dumps(ROWS, indent=1) if layout == "array" else _jsonl(ROWS))
    report = ingest(store, [str(src)], fmt="alpaca")
    assert report.added == 2 and _pool(store) == EXPECTED


def test_tool_export_names_ingest_with_their_format(store, tmp_path):
    (tmp_path / "r.sharegpt").write_text(json.dumps(SHAREGPT))
    (tmp_path / "r.messages").write_text(
        _jsonl(
            [
                {
                    "messages": [
                        {"role": "user", "content": "Say hi."},
                        {"role": "assistant", "content": "Hi."},
                    ]
                }
            ]
        )
    )
    ingest(store, [str(tmp_path / "r.sharegpt")], fmt="sharegpt")
    ingest(store, [str(tmp_path / "r.messages")], fmt="messages")
    assert _pool(store) == sorted([*EXPECTED, ("Say hi.", "Hi.")])


def test_unknown_extension_without_a_format_still_asks_for_one(tmp_path):
    src = tmp_path / "x.txt"
    src.write_text(_jsonl(ROWS))
    with pytest.raises(InvalidInputError) as raised:
        read_records(str(src))
    line = error_line(raised.value)  # what `curate ingest` prints
    assert re.search(r"x.txt: unknown format .*pass --format", line), line


def test_cli_format_alpaca_on_a_txt_file(tmp_path, cli):
    src = tmp_path / "x.txt"
    src.write_text(json.dumps(ROWS))
    db = str(tmp_path / "db")
    code, out, err = cli("ingest", str(src), "--db", db, "--format", "alpaca")
    assert code == 0, err
    code, out, err = cli("pool", "--db", db, "--json")
    assert code == 0 and json.loads(out)["rows"] == 2


# ------------------------------------------------------------ BOMs


@pytest.mark.parametrize(
    "name, body",
    [
        ("a.json", json.dumps(ROWS)),
        ("a.jsonl", _jsonl(ROWS)),
        ("a.csv", "instruction,input,output\nName a primary colour.,,Red.\nAdd 2 and 3.,,5\n"),
    ],
)
def test_utf8_bom_is_skipped(store, tmp_path, name, body):
    src = tmp_path / name
    src.write_bytes(b"\xef\xbb\xbf" + body.encode())
    ingest(store, [str(src)])
    assert _pool(store) == EXPECTED


# ------------------------------------------------------------ paths that are not readable files


def test_directory_says_it_is_a_directory(store, tmp_path):
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    with pytest.raises(InvalidInputError) as err:
        ingest(store, [str(folder)])
    assert str(err.value) == (
        f"{folder}: is a directory, not a file: name the files in it (or hf://DIR for a dataset)"
    )
    with pytest.raises(InvalidInputError, match=r"missing.jsonl: no such file$"):
        ingest(store, [str(tmp_path / "missing.jsonl")])
    assert not store.has_pool()


def _deny(monkeypatch, target: Path, err: int, after_bytes: bool = False) -> None:
    """Opening ``target`` fails with ``err`` (root ignores file modes, so inject the OSError),
    or, with ``after_bytes``, reading it does: the file opens, then the read fails."""
    real_open = Path.open

    class Failing:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def __iter__(self):
            raise OSError(err, "Input/output error")

        def read(self, *a):
            raise OSError(err, "Input/output error")

    def fake_open(self, *args, **kwargs):
        if Path(self) == target:
            if not after_bytes:
                raise OSError(err, "Permission denied", str(self))
            return Failing(real_open(self, *args, **kwargs))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", fake_open)


def test_unreadable_file_is_one_line_in_the_cli(tmp_path, cli, monkeypatch, sample_pool):
    src = tmp_path / "locked.jsonl"
    src.write_text(_jsonl(ROWS))
    db = str(tmp_path / "db")
    assert cli("ingest", str(sample_pool), "--db", db)[0] == 0
    _deny(monkeypatch, src, errno.EACCES)
    code, out, err = cli("ingest", str(src), "--db", db)
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: {src}: permission denied: cannot read this file (check its permissions)"
    ]


def test_read_error_midway_is_one_line_and_leaves_the_pool(store, tmp_path, monkeypatch):
    good = tmp_path / "good.jsonl"
    good.write_text(_jsonl(ROWS[:1]))
    ingest(store, [str(good)])
    version = store.pool_version()
    src = tmp_path / "flaky.jsonl"
    src.write_text(_jsonl(ROWS[1:]))
    _deny(monkeypatch, src, errno.EIO, after_bytes=True)
    with pytest.raises(InvalidInputError) as err:
        ingest(store, [str(src)])
    assert str(err.value) == f"{src}: cannot read: Input/output error"
    assert store.pool_version() == version and store.pool_count() == 1


# ------------------------------------------------------------ no silent coercion


@pytest.mark.parametrize(
    "record, field, kind",
    [
        ({"instruction": 42, "output": "b"}, "instruction", "a number (42)"),
        ({"instruction": True, "output": "b"}, "instruction", "true"),
        ({"instruction": "a", "output": 3.5}, "output", "a number (3.5)"),
        ({"instruction": "a", "input": False, "output": "b"}, "input", "false"),
        ({"instruction": "a", "output": ["b"]}, "output", "a list"),
        (
            {"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "x"}]},
            "messages[0].content",
            "a number (7)",
        ),
        ({"prompt": "a", "completion": 1}, "completion", "a number (1)"),
    ],
)
def test_non_string_text_is_rejected_with_file_line_and_field(store, tmp_path, record, field, kind):
    src = tmp_path / "a.jsonl"
    src.write_text(_jsonl([ROWS[0], record]))
    with pytest.raises(InvalidInputError) as err:
        ingest(store, [str(src)])
    assert str(err.value) == f"{src}:2: field '{field}' must be a string, got {kind}"
    assert store.pool_count() == 0


# ------------------------------------------------------------ one rule for empty sources


def _empty_parquet(path: Path) -> None:
    schema = pa.schema([("instruction", pa.string()), ("output", pa.string())])
    pq.write_table(pa.Table.from_pylist([], schema=schema), path)


EMPTY = {
    "empty-jsonl": ("a.jsonl", b"", "the file is empty: no records"),
    "blank-jsonl": ("a.jsonl", b"\n  \n\t\n", "the file is empty: no records"),
    "empty-json": ("a.json", b"", "the file is empty: no records"),
    "blank-json": ("a.json", b"  \n", "the file is empty: no records"),
    "bom-only-json": ("a.json", b"\xef\xbb\xbf\n", "the file is empty: no records"),
    "empty-array": ("a.json", b"[ ]\n", "no records"),
    "empty-csv": ("a.csv", b"", "the file is empty: no records"),
    "blank-csv": ("a.csv", b"\n\n", "the file is empty: no records"),
    "header-only-csv": ("a.csv", b"instruction,output\n", "no records"),
    "empty-parquet-file": ("a.parquet", b"", "the file is empty: no records"),
    "zero-row-parquet": ("a.parquet", None, "no records"),
    "empty-txt-as-alpaca": ("a.txt", b"\n", "the file is empty: no records"),
}


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_a_source_without_records_is_an_error_in_every_format(store, tmp_path, case):
    name, content, reason = EMPTY[case]
    src = tmp_path / name
    if content is None:
        _empty_parquet(src)
    else:
        src.write_bytes(content)
    fmt = "alpaca" if name.endswith(".txt") else "auto"
    with pytest.raises(InvalidInputError) as err:
        ingest(store, [str(src)], fmt=fmt)
    assert str(err.value) == f"{src}: {reason}"


def test_cli_empty_jsonl_exits_1_with_one_line(tmp_path, cli):
    (tmp_path / "empty.jsonl").write_text("")
    code, out, err = cli("ingest", str(tmp_path / "empty.jsonl"), "--db", str(tmp_path / "db"))
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {tmp_path / 'empty.jsonl'}: the file is empty: no records"]


# ------------------------------------------------------------ TRL prompt / completion


def test_trl_prompt_completion_rows_match_their_alpaca_twins(store, tmp_path):
    standard = [{"prompt": r["instruction"], "completion": " " + r["output"]} for r in ROWS]
    conversational = [
        {
            "prompt": [{"role": "user", "content": r["instruction"]}],
            "completion": [{"role": "assistant", "content": r["output"]}],
        }
        for r in ROWS
    ]
    alpaca = [to_example(r, "s") for r in ROWS]
    for records in (standard, conversational):
        examples = [to_example(r, "s") for r in records]
        assert [e.hash for e in examples] == [e.hash for e in alpaca]
        assert all(e.messages is None for e in examples)
    multi = {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
        ],
        "completion": [{"role": "assistant", "content": "Hello."}],
    }
    example = to_example(multi, "s")
    assert [m["role"] for m in example.messages] == ["system", "user", "assistant"]
    src = tmp_path / "trl.jsonl"
    src.write_text(_jsonl([*standard, multi]))
    report = ingest(store, [str(src)])
    assert report.added == 3 and ("Hi?", "Hello.") in _pool(store)


def test_trl_prompt_without_completion_names_the_field(store, tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(_jsonl([{"prompt": "Only a question."}]))
    with pytest.raises(InvalidInputError, match=r"p.jsonl:1: missing or empty 'completion'$"):
        ingest(store, [str(src)])


# ------------------------------------------------------------ Hub model fingerprints (issue 13.11)


def test_hub_fingerprint_follows_the_resolved_revision(tmp_path, monkeypatch):
    """Vectors cached for a Hub id must not be reused after the Hub's main moves on."""
    from huggingface_hub import constants

    from curate.models import weights_fingerprint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = tmp_path / "hub" / "models--org--tiny" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40 + "\n")
    first = weights_fingerprint("org/tiny")
    assert weights_fingerprint("org/tiny") == first
    ref.write_text("b" * 40 + "\n")
    assert weights_fingerprint("org/tiny") != first
    assert weights_fingerprint("org/other") != first
