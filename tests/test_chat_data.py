"""Real chat data through every verb: text that line-oriented code breaks on reads back, and
conversations in the shapes real pools hold (curate.conversations) train, embed and score.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.conversations import RESHAPES, canonical_turns, render_turns
from curate.files import jsonl_lines
from curate.manifest import Manifest, PoolRef
from curate.prompts import IGNORE_INDEX, encode_head, prompt_text, tokenize
from curate.readers import read_records
from curate.records import to_example
from curate.subsets import examples_blob, load_subset, write_subset
from tests.conftest import HOSTILE_TEXT

SEPARATORS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # everything str.splitlines() breaks on


def _u(*turns: str) -> list[dict[str, str]]:
    """Turns from 'role:text' strings (an empty text is an empty turn)."""
    return [{"role": t.split(":")[0], "content": t.split(":", 1)[1]} for t in turns]


# ------------------------------------------------------------------ JSON Lines, read back


def test_jsonl_lines_split_on_newline_only():
    text = "".join(json.dumps({"t": f"a{sep}b"}, ensure_ascii=False) + "\n" for sep in SEPARATORS)
    rows = [json.loads(line) for _, line in jsonl_lines(text)]
    assert [r["t"] for r in rows] == [f"a{sep}b" for sep in SEPARATORS]
    assert [n for n, _ in jsonl_lines('{"a":1}\n\n{"a":2}\n')] == [1, 3]  # numbers count blanks


def _subset(tmp_path: Path, examples: list[dict]) -> Path:
    manifest = Manifest(
        name="s", strategy="manual", params={}, seed=0, budget=len(examples), parent=None,
        pool=PoolRef(0, len(examples)), embeddings=None,
        picks=[{"id": e["id"], "hash": e["hash"]} for e in examples], created_by="tests",
    )  # fmt: skip
    return write_subset(tmp_path / "s", manifest, examples).path


def test_a_subset_holding_every_line_separator_reads_back(tmp_path):
    rec = {"instruction": f"Split {SEPARATORS} here", "output": HOSTILE_TEXT}
    example = to_example(rec, "chat").to_dict()
    raw = (_subset(tmp_path, [example]) / "examples.jsonl").read_bytes()
    assert raw.count(b"\n") == 1 and "\u2028".encode() in raw  # written raw: valid JSON Lines
    assert load_subset(tmp_path / "s").examples == [example]


# Every code point but the surrogates (not Unicode text on their own; see the next test).
UNICODE = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(instruction=UNICODE, output=UNICODE, ascii_only=st.booleans())
def test_readers_and_subset_files_round_trip_any_text(tmp_path, instruction, output, ascii_only):
    source = tmp_path / "pool.jsonl"
    record = {"instruction": instruction, "output": output}
    source.write_text(json.dumps(record, ensure_ascii=ascii_only) + "\n", encoding="utf-8")
    records = list(read_records(str(source)))
    assert [r for _, r in records] == [record]  # one record, however its text breaks lines
    norm = {
        k: unicodedata.normalize("NFC", v.replace("\r\n", "\n")).strip() for k, v in record.items()
    }
    if not (norm["instruction"] and norm["output"]):
        with pytest.raises(ValueError, match="missing or empty"):
            to_example(record, "p")
        return
    example = to_example(record, "p").to_dict()
    assert (example["instruction"], example["output"]) == (norm["instruction"], norm["output"])
    folder = _subset(tmp_path / "out", [example])
    assert load_subset(folder).examples == [example]
    assert (folder / "examples.jsonl").read_bytes() == examples_blob([example])


def test_an_escaped_lone_surrogate_is_rejected_with_the_field(tmp_path, cli):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "hi \\ud800", "output": "x"}\n', encoding="utf-8")
    code, _, err = cli("ingest", str(pool), "--db", str(tmp_path / "db"))
    assert code != 0 and err.count("\n") == 1
    assert f"{pool}:1:" in err and "'instruction' holds a lone surrogate U+D800" in err


# ------------------------------------------------------------------ the chat-shape rule


@pytest.mark.parametrize(
    "turns, expected, reshaped",
    [
        (_u("user:q", "assistant:a"), _u("user:q", "assistant:a"), {}),
        (_u("assistant:late", "user:q", "assistant:a"), _u("user:q", "assistant:a"),
         {"leading_assistant": 1}),
        (_u("system:s1", "system:s2", "user:q", "assistant:a"),
         _u("system:s1\n\ns2", "user:q", "assistant:a"), {}),
        (_u("user:q", "assistant:", "user:q2", "assistant:a"),
         _u("user:q\n\nq2", "assistant:a"), {"empty_turn": 1, "joined_turn": 1}),
        (_u("user:q", "assistant:a", "assistant:b"), _u("user:q", "assistant:a\n\nb"),
         {"joined_turn": 1}),
        (_u("user:q", "assistant:a", "user:more?"), _u("user:q", "assistant:a"),
         {"trailing_user": 1}),
        (_u("system:s", "assistant:x", "user:q", "assistant:a", "user:"),
         _u("system:s", "user:q", "assistant:a"), {"leading_assistant": 1, "empty_turn": 1}),
    ],
    ids=["plain", "leading-assistant", "systems", "empty-turn", "same-role", "trailing-user",
         "all-at-once"],
)  # fmt: skip
def test_canonical_turns(turns, expected, reshaped):
    counts: Counter = Counter()
    assert canonical_turns(turns, counts=counts) == expected
    assert dict(counts) == reshaped and set(counts) <= set(RESHAPES)
    assert canonical_turns(expected) == expected  # idempotent: a stored row stays as it is
    # Renderers apply the same rule, keeping a last question (generation continues it).
    assert render_turns(turns) == canonical_turns(turns, need_output=False)


@pytest.mark.parametrize(
    "turns, need_output, message",
    [
        (_u("user:q", "system:late", "assistant:a"), True, r"'m\[1\]' is a system turn after"),
        (_u("assistant:a", "user:q"), True, "has no user turn answered by an assistant"),
        (_u("system:s", "assistant:a"), False, "has no user turn"),
        (_u("user:", "assistant:a"), True, "no user turn"),
    ],
)
def test_canonical_turns_rejects_with_a_reason(turns, need_output, message):
    with pytest.raises(ValueError, match=message):
        canonical_turns(turns, "m", need_output)


def test_questions_keep_their_last_user_turn():
    assert canonical_turns(_u("assistant:hi", "user:q"), need_output=False) == _u("user:q")


def test_ingest_counts_what_the_rule_reshaped(tmp_path, cli, chat_records):
    pool = tmp_path / "chats.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in chat_records(10)), encoding="utf-8")
    code, out, err = cli("ingest", str(pool), "--db", str(tmp_path / "db"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["added"] == 10 and report["rejected"] == 0
    assert report["reshaped"] == {
        "empty_turn": 2, "leading_assistant": 2, "joined_turn": 4, "trailing_user": 2
    }  # fmt: skip
    code, out, _ = cli("ingest", str(pool), "--db", str(tmp_path / "db2"))
    assert "2 leading assistant turns dropped" in " ".join(out.split())  # rich wraps lines


# ------------------------------------------------------------------ every renderer


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


STORED_SHAPES = {  # as rows ingested before the rule may hold them
    "leading-assistant": _u("assistant:earlier", "user:q", "assistant:a"),
    "system": _u("system:be brief", "user:q", "assistant:a", "user:q2", "assistant:a2"),
    "same-role": _u("user:q", "user:q2", "assistant:a"),
    "empty-turn": _u("user:q", "assistant:", "user:q2", "assistant:a"),
    "late-system": _u("user:q", "system:late", "assistant:a"),
    "no-user": _u("system:s", "assistant:a"),
    "hostile": _u(f"user:{HOSTILE_TEXT}", f"assistant:{HOSTILE_TEXT}"),
}


@pytest.mark.parametrize("shape", STORED_SHAPES)
@pytest.mark.parametrize("template", ["chat-template", "refuses-system", "no-template"])
def test_every_shape_renders_with_a_response_to_learn(tokenizer, shape, template):
    tok = tokenizer
    if template != "chat-template":
        import copy

        tok = copy.copy(tokenizer)
        tok.chat_template = (
            None if template == "no-template" else
            "{% for m in messages %}{% if m.role == 'system' %}"
            "{{ raise_exception('System role not supported') }}{% endif %}"
            "<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"
        )  # fmt: skip
    row = {"instruction": "q", "input": "", "output": "a", "messages": STORED_SHAPES[shape]}
    out = tokenize(row, tok, max_length=4096)
    response = [t for t in out.labels if t != IGNORE_INDEX]
    assert response, "no response token to learn"
    assert tok.decode(response).strip().startswith(HOSTILE_TEXT[:4] if shape == "hostile" else "a")
    assert prompt_text({**row, "messages": row["messages"][:-1]}, tok)


def test_a_long_conversation_keeps_its_first_turns(tokenizer):
    turns = []
    for i in range(40):
        turns += _u(f"user:question {i}", f"assistant:answer {i} " + "word " * 20)
    out = tokenize({"instruction": "", "input": "", "output": "", "messages": turns}, tokenizer, 96)
    assert len(out.input_ids) == 96
    text = tokenizer.decode(out.input_ids)
    assert "question 0" in text and "answer 0" in text and "question 39" not in text


# ------------------------------------------------------------------ through every verb


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_chat_pool_with_hostile_text_goes_through_every_verb(tmp_path, cli, chat_records, tiny_lm):
    """ingest → lm: embed → select → verify → select --parent → export (read back by the
    libraries their users read them with) → train → eval, on every chat shape, hostile
    text and a 10 MB row."""
    import datasets
    import pyarrow.parquet as pq

    records = chat_records(10)
    records.append(
        {"id": "huge", "instruction": "Summarise:", "output": ("word \u2028" * 1_700_000)}
    )
    pool = tmp_path / "chats.jsonl"
    pool.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    db = str(tmp_path / "db")
    run = lambda *args: cli(*map(str, args))  # noqa: E731
    assert run("ingest", pool, "--db", db).code == 0
    embed = run(
        "embed", "--db", db, "--embedder", f"lm:{tiny_lm}", "--name", "lm", "--max-length", "64"
    )
    assert embed.code == 0, embed.err
    rd0, rd1 = tmp_path / "rd_0", tmp_path / "rd_1"
    first = run("select", "--db", db, "--strategy", "random", "--budget", "6", "--out", rd0)
    assert first.code == 0, first.err
    again = run(
        "select", "--db", db, "--embeddings", "lm", "--parent", rd0, "--add", "5", "--out", rd1
    )
    assert again.code == 0, again.err  # reads rd_0 back: every round after the first does this
    assert run("subsets", "verify", rd1, "--db", db).code == 0
    examples = load_subset(rd1).examples
    assert {e["id"] for e in examples} == {r["id"] for r in records}

    by_id = {e["id"]: e for e in examples}
    for fmt, name in [("alpaca", "a.json"), ("sharegpt", "s.json"), ("messages", "m.jsonl"),
                      ("parquet", "p.parquet"), ("hf", "hf")]:  # fmt: skip
        result = run("subsets", "export", rd1, "--format", fmt, "--out", tmp_path / name)
        assert result.code == 0, result.err
    alpaca = json.loads((tmp_path / "a.json").read_text("utf-8"))
    assert {r["id"]: r["output"] for r in alpaca} == {i: e["output"] for i, e in by_id.items()}
    messages = datasets.load_dataset("json", data_files=str(tmp_path / "m.jsonl"))["train"]
    assert {r["id"]: r["messages"][-1]["content"] for r in messages} == {
        i: e["output"] for i, e in by_id.items()
    }
    assert pq.read_table(tmp_path / "p.parquet").column("output").to_pylist() == [
        e["output"] for e in examples
    ]
    assert datasets.load_from_disk(str(tmp_path / "hf"))["output"] == [
        e["output"] for e in examples
    ]

    model = tmp_path / "model"
    trained = run("train", rd1, "--base-model", tiny_lm, "--out", model, "--max-steps", "2",
                  "--batch-size", "4", "--max-length", "64", "--json")  # fmt: skip
    assert trained.code == 0, trained.err
    questions = tmp_path / "eval.jsonl"
    answered = [records[i] for i in (0, 1, 2, 4)]  # records[3] ends with an open question
    questions.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in answered), "utf-8"
    )
    scored = run("eval", "model", model, "--eval-set", questions, "--max-length", "64",
                 "--out", tmp_path / "m.json", "--json")  # fmt: skip
    assert scored.code == 0, scored.err
    assert json.loads((tmp_path / "m.json").read_text())["questions"] == 4


# Texts where a prefix tokenizes differently from the whole: whitespace runs, long words,
# digits, punctuation runs, chat-template tokens and partial ones, astral characters.
PIECES = st.sampled_from(
    ["word", " ", "  ", "\n", "\n\n ", "\t", "1234567", "!!?", "<|im_start|>", "<|im_end|>",
     "<|im_sta", "user\n", "\u2028", "é", "\U0001f600", "a" * 40, "don't", " 's"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(PIECES, min_size=1, max_size=400), limit=st.integers(1, 120))
def test_encode_head_equals_the_whole_encoding_cut(tokenizer, pieces, limit):
    text = "".join(pieces)
    for special in (True, False):
        whole = tokenizer(text, add_special_tokens=special)["input_ids"][:limit]
        assert encode_head(tokenizer, text, special, limit) == whole


def test_an_error_line_holding_markup_brackets_is_printed_as_is(tmp_path, cli):
    pool = tmp_path / "pool.jsonl"
    rows = [{"id": "[/red]", "instruction": "x", "output": str(i)} for i in range(2)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, _, err = cli("ingest", str(pool), "--db", str(tmp_path / "db"))
    assert code != 0 and err.count("\n") == 1  # rich read "[/red]" as a closing tag: a crash
    assert "id '[/red]' is used by two different records" in err
