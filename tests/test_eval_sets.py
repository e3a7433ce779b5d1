"""Eval sets are read by the pool readers: every format `ingest` accepts is an eval set, TRL
prompt/completion rows included; a question whose prompt fills --max-length is skipped and
counted instead of stopping the evaluation. Real files, the tiny real LM."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InvalidInputError
from curate.evaluation.eval_sets import load_eval_set
from curate.evaluation.model_eval import ModelEvalSettings, evaluate_model

QA = [
    ("q1", "Name a primary colour.", "Red."),
    ("q2", "Add 2 and 3.", "5"),
    ("q3", "Translate 'thank you' into French.", "Merci."),
]


def _alpaca() -> list[dict]:
    return [{"id": i, "instruction": q, "input": "", "output": a} for i, q, a in QA]


def _writers() -> dict:
    def jsonl(path: Path, rows: list[dict]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def json_array(path: Path, rows: list[dict]) -> None:
        path.write_text(json.dumps(rows, indent=2))

    def csv_file(path: Path, rows: list[dict]) -> None:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def parquet(path: Path, rows: list[dict]) -> None:
        pq.write_table(pa.Table.from_pylist(rows), path)

    return {".jsonl": jsonl, ".json": json_array, ".csv": csv_file, ".parquet": parquet}


SHAPES = {
    "alpaca": _alpaca,
    "dolly": lambda: [{"id": i, "instruction": q, "context": "", "response": a} for i, q, a in QA],
    "vicuna": lambda: [{"question_id": i, "text": q, "answer": a} for i, q, a in QA],
    "wizardlm": lambda: [{"idx": i, "Instruction": q, "answer": a} for i, q, a in QA],
    "trl": lambda: [{"id": i, "prompt": q, "completion": a} for i, q, a in QA],
    "trl-conversational": lambda: [
        {
            "id": i,
            "prompt": [{"role": "user", "content": q}],
            "completion": [{"role": "assistant", "content": a}],
        }
        for i, q, a in QA
    ],
    "sharegpt": lambda: [
        {"id": i, "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
        for i, q, a in QA
    ],
    "messages": lambda: [
        {
            "id": i,
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        }
        for i, q, a in QA
    ],
}
FLAT = ("alpaca", "dolly", "vicuna", "wizardlm", "trl")  # CSV holds only flat records


@pytest.mark.parametrize(
    "shape, ext",
    [
        (shape, ext)
        for shape in sorted(SHAPES)
        for ext in (".jsonl", ".json", ".csv", ".parquet")
        if ext != ".csv" or shape in FLAT  # CSV cells hold text, not lists of turns
    ],
)
def test_every_ingest_format_is_an_eval_set(tmp_path, shape, ext):
    path = tmp_path / f"questions{ext}"
    _writers()[ext](path, SHAPES[shape]())
    items = load_eval_set(path, need_reference=True).items
    assert [(i.id, i.question, i.reference) for i in items] == QA
    assert [i.as_row(i.reference) for i in items] == [
        {"instruction": q, "input": "", "output": a} for _, q, a in QA
    ]


def test_hf_dataset_folder_is_an_eval_set(tmp_path):
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list(SHAPES["trl"]()).save_to_disk(str(folder))
    spec = f"hf://{folder}"
    loaded = load_eval_set(spec, need_reference=True)
    assert [(i.id, i.question, i.reference) for i in loaded.items] == QA
    assert loaded.path == spec and len(loaded.sha256) == 64
    assert load_eval_set(spec).sha256 == loaded.sha256


def test_prompt_only_questions_load_without_references(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": q}) + "\n" for _, q, _ in QA))
    items = load_eval_set(path).items
    assert [(i.id, i.question, i.reference) for i in items] == [
        (str(n), q, None) for n, (_, q, _) in enumerate(QA, start=1)
    ]
    with pytest.raises(InvalidInputError, match=r"prompts.jsonl:1: no reference answer"):
        load_eval_set(path, need_reference=True)


def test_input_and_turns_reach_the_rendered_row(tmp_path):
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "And in French?"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps({"instruction": "Summarise.", "context": "Long text.", "response": "Short."})
        + "\n"
        + json.dumps({"messages": [*turns, {"role": "assistant", "content": "Bonjour."}]})
        + "\n"
        + json.dumps({"messages": turns})
        + "\n"
    )
    dolly, chat, open_chat = load_eval_set(path).items
    assert dolly.question == "Summarise.\n\nLong text."
    assert dolly.as_row("x") == {"instruction": "Summarise.", "input": "Long text.", "output": "x"}
    assert (chat.question, chat.reference) == ("And in French?", "Bonjour.")
    assert chat.as_row(chat.reference)["messages"] == [
        *turns,
        {"role": "assistant", "content": "Bonjour."},
    ]
    assert open_chat.reference is None and open_chat.as_row()["messages"] == turns


@pytest.mark.parametrize(
    "line, message",
    [
        ({"text": 42, "answer": "a"}, "field 'instruction' must be a string, got a number (42)"),
        ({"prompt": "q", "completion": True}, "field 'completion' must be a string, got true"),
        ({"query": "q"}, "no question field (expected one of text, Instruction"),
    ],
)
def test_bad_questions_name_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine", "answer": "ok"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(InvalidInputError) as err:
        load_eval_set(path)
    assert str(err.value).startswith(f"{path}:2: {message}")


@pytest.mark.parametrize("content", [b"", b"\n \n"])
def test_empty_eval_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=r"empty.jsonl: the file is empty: no records$"):
        load_eval_set(path)


def test_eval_set_path_that_is_a_directory(tmp_path):
    with pytest.raises(InvalidInputError, match="is a directory, not a file"):
        load_eval_set(tmp_path)


# ------------------------------------------------------------ a prompt that fills --max-length


@pytest.fixture
def long_prompt_file(tmp_path) -> Path:
    rows = [{"id": i, "prompt": q, "completion": a} for i, q, a in QA]
    rows.insert(1, {"id": "long", "prompt": "word " * 3600, "completion": "An answer."})
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow  # loads a model and evaluates it
def test_a_prompt_that_fills_max_length_is_skipped_and_counted(tiny_lm, long_prompt_file):
    settings = ModelEvalSettings(max_length=128, batch_size=2, device="cpu", precision="fp32")
    metrics, details = evaluate_model(str(tiny_lm), long_prompt_file, settings)
    by_id = {q["id"]: q for q in details["questions"]}
    assert list(by_id) == ["q1", "long", "q2", "q3"]
    assert by_id["long"]["skipped"] is True and by_id["long"]["nll"] is None
    assert by_id["long"]["tokens"] == 0 and by_id["long"]["truncated"] is True
    assert metrics["questions"] == 4 and metrics["skipped"] == 1
    assert metrics["truncated"] == 1  # the skipped question's answer is cut entirely
    # the mean is over the scored questions, exactly what scoring them alone gives
    scored = [by_id[q]["nll"] for q in ("q1", "q2", "q3")]
    assert all(math.isfinite(x) for x in scored)
    assert metrics["nll"] == pytest.approx(sum(scored) / 3)
    alone = long_prompt_file.with_name("short.jsonl")
    alone.write_text(
        "".join(
            line + "\n" for line in long_prompt_file.read_text().splitlines() if "long" not in line
        )
    )
    short, _ = evaluate_model(str(tiny_lm), alone, settings)
    assert short["nll"] == pytest.approx(metrics["nll"]) and short["skipped"] == 0


@pytest.mark.slow  # loads a model and evaluates it
def test_cli_eval_model_completes_with_one_over_long_prompt(
    tiny_lm, long_prompt_file, tmp_path, cli
):
    out = tmp_path / "m.json"
    code, _, err = cli(
        "eval",
        "model",
        str(tiny_lm),
        "--eval-set",
        str(long_prompt_file),
        "--max-length",
        "128",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert json.loads(out.read_text())["skipped"] == 1
