"""`curate eval model` / `eval round` / `eval compare` with the tiny LM on real files:
NLL against a hand computation from logits, batched generation, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.errors import EvalError, InvalidInputError, ModelError
from curate.evaluation.eval_sets import load_eval_set
from curate.evaluation.model_eval import ModelEvalSettings, evaluate_model
from curate.prompts import ALPACA_PROMPT_NO_INPUT

# The three question-field spellings of ../shared/data/eval, and both answer spellings.
QUESTIONS = [
    {
        "question_id": 1,
        "text": "How can I improve my time management skills?",
        "answer": "Plan each day.",
    },
    {"idx": 2, "Instruction": "What is 12 times 8?", "answer": "12 times 8 is 96."},
    {
        "id": "q3",
        "instruction": "Name three primary colours.",
        "output": "Red, yellow and blue are the traditional primary colours used in painting.",
    },
    {"question_id": 4, "text": "Translate 'thank you' into French.", "answer": "Merci."},
    {
        "question_id": 5,
        "text": "Write a haiku about rain.",
        "answer": "Soft rain on the roof\nwhispers...",
    },
]
CPU = ModelEvalSettings(batch_size=2, device="cpu", precision="fp32")


@pytest.fixture
def eval_file(tmp_path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def _hand_nll(model, tokenizer, question: str, answer: str) -> float:
    """Alpaca prompt + answer + EOS, one unpadded sequence; mean −log p of answer tokens."""
    import torch

    prompt = tokenizer(ALPACA_PROMPT_NO_INPUT.format(instruction=question))["input_ids"]
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt + target])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    total = 0.0
    for k, token in enumerate(target):
        position = len(prompt) + k  # predicted from the logits one step earlier
        row = logits[position - 1]
        total += float(torch.logsumexp(row, 0) - row[token])
    return total / len(target)


@pytest.mark.slow  # loads a model and evaluates it
def test_nll_matches_a_hand_computation_from_logits(tiny_lm, eval_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    out = tmp_path / "metrics" / "tiny.json"
    metrics, details = evaluate_model(str(tiny_lm), eval_file, CPU, out)

    by_id = {q["id"]: q for q in details["questions"]}
    assert list(by_id) == ["1", "2", "q3", "4", "5"]
    for raw, qid in zip(QUESTIONS, by_id, strict=True):
        question = raw.get("text") or raw.get("Instruction") or raw.get("instruction")
        answer = raw.get("answer") or raw.get("output")
        assert by_id[qid]["nll"] == pytest.approx(
            _hand_nll(model, tokenizer, question, answer), abs=1e-4
        )
    per_question = [q["nll"] for q in details["questions"]]
    assert metrics["nll"] == pytest.approx(sum(per_question) / 5)
    assert metrics["ppl"] == pytest.approx(2.718281828459045 ** metrics["nll"])
    assert metrics["questions"] == 5 and metrics["truncated"] == 0
    # files: scalars for dvc beside per-question details
    assert json.loads(out.read_text()) == metrics
    assert (
        json.loads((out.parent / "tiny.details.json").read_text())["questions"]
        == details["questions"]
    )


@pytest.mark.slow  # loads a model and evaluates it
def test_truncation_is_counted_and_a_full_prompt_is_an_error(tiny_lm, eval_file):
    """(Batching vs unpadded single sequences is covered by the hand computation above.)"""
    cut, details = evaluate_model(
        str(tiny_lm),
        eval_file,
        ModelEvalSettings(max_length=48, batch_size=5, device="cpu", precision="fp32"),
    )
    assert cut["truncated"] == sum(q["truncated"] for q in details["questions"]) >= 1
    with pytest.raises(EvalError, match="raise --max-length"):
        evaluate_model(
            str(tiny_lm),
            eval_file,
            ModelEvalSettings(max_length=10, device="cpu", precision="fp32"),
        )


@pytest.mark.slow  # loads a model and evaluates it
def test_generation_is_batched_greedy_and_written_beside_metrics(tiny_lm, eval_file, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = ModelEvalSettings(
        batch_size=3, device="cpu", generate=True, max_new_tokens=6, precision="fp32"
    )
    out = tmp_path / "gen.json"
    evaluate_model(str(tiny_lm), eval_file, settings, out)
    rows = [json.loads(line) for line in (tmp_path / "gen.answers.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "q3", "4", "5"]
    assert rows[1]["instruction"] == "What is 12 times 8?"

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    for raw, row in zip(QUESTIONS[:2], rows, strict=False):  # one at a time, no padding
        question = raw.get("text") or raw.get("Instruction")
        ids = tokenizer(ALPACA_PROMPT_NO_INPUT.format(instruction=question), return_tensors="pt")
        with torch.no_grad():
            new = model.generate(
                **ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id
            )
        expected = tokenizer.decode(
            new[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
        ).strip()
        assert row["answer"] == expected


def test_eval_set_formats_and_errors(tmp_path, shared_data):
    for name, count in [("vicuna_gpt35_answers.jsonl", 80), ("wizardlm_gpt35_answers.jsonl", 218)]:
        items = load_eval_set(shared_data / "eval" / name, need_reference=True).items
        assert len(items) == count and all(i.question and i.reference for i in items)
    alpaca = load_eval_set(shared_data / "eval" / "alpaca_eval_gpt4_outputs.json", limit=3)
    assert len(alpaca.items) == 3 and alpaca.items[0].reference
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "answer": "ok"}\n{"query": "no known field"}\n')
    with pytest.raises(
        InvalidInputError, match=r"bad.jsonl:2: no question field \(expected one of text"
    ):
        load_eval_set(bad)
    no_answer = tmp_path / "questions_only.jsonl"
    no_answer.write_text('{"text": "a question"}\n')
    with pytest.raises(InvalidInputError, match="questions_only.jsonl:1: no reference answer"):
        load_eval_set(no_answer, need_reference=True)


def test_model_folder_checks(tmp_path):
    from curate.evaluation.model_eval import check_model_folder

    empty = tmp_path / "models" / "rd_0"
    empty.mkdir(parents=True)
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="has no weights"):
        check_model_folder(str(empty))
    with pytest.raises(ModelError, match="no such model folder"):
        check_model_folder(str(tmp_path / "models" / "rd_9"))


# ------------------------------------------------------------------ CLI


def test_cli_error_is_one_line_and_leaves_earlier_results(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"query": "x", "answer": "y"}\n')
    (tmp_path / "m.json").write_text('{"nll": 1.5}\n')
    result = cli("eval", "model", "smollm2", "--eval-set", "bad.jsonl", "--out", "m.json")
    assert result.code != 0 and "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: bad.jsonl:1: no question field (expected one of text, Instruction, instruction, "
        "prompt, conversations, messages)"
    ]
    assert (tmp_path / "m.json").read_text() == '{"nll": 1.5}\n'


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("model-without-weights", ModelError, "models/rd_0: model folder has no weights"),
        (
            "judge-unreachable",
            EvalError,
            "judge endpoint http://127.0.0.1:9/v1/chat/completions is unreachable",
        ),
        ("judge-without-references", EvalError, "have no reference answer to judge against"),
    ],
)
def test_cli_bad_input_fails_before_the_model_and_leaves_results(
    tmp_path, eval_file, tiny_lm, monkeypatch, cli, case, error, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "rd_0").mkdir(parents=True)
    (tmp_path / "models" / "rd_0" / "config.json").write_text("{}")
    (tmp_path / "m.json").write_text('{"nll": 1.5}\n')
    model, questions, extra = str(tiny_lm), str(eval_file), []
    if case == "model-without-weights":
        model = "models/rd_0"
    elif case == "judge-unreachable":
        extra = ["--judge", "http://127.0.0.1:9/v1", "--judge-model", "gpt-4"]
    else:
        (tmp_path / "questions.jsonl").write_text('{"text": "a question without an answer"}\n')
        questions, extra = (
            "questions.jsonl",
            ["--judge", "http://127.0.0.1:9", "--judge-model", "j"],
        )
    args = ["eval", "model", model, "--eval-set", questions, "--out", "m.json", *extra]
    with pytest.raises(error) as raised:  # the library's error, as --debug shows it
        cli(*args, "--debug")
    assert message in str(raised.value)
    code, out, err = cli(*args)  # and as a user sees it: one line, its exit code
    assert code == error.exit_code and out == "" and err == f"error: {raised.value}\n"
    assert (tmp_path / "m.json").read_text() == '{"nll": 1.5}\n'
    assert sorted(p.name for p in tmp_path.glob("m.*")) == ["m.json"]


@pytest.mark.slow  # loads a model and evaluates it
def test_cli_round_then_compare(
    tiny_lm,
    smollm2_tokenizer_dir,
    eval_file,
    store,
    tmp_path,
    cli,
    build_tiny_lm,
    build_pool,
    write_embeddings,
    make_subset,
):
    """A pipeline round's metrics file, then a paired comparison of two models' rounds."""
    build_pool(store, tmp_path / "pool")
    write_embeddings(store, "e")
    subset = make_subset(store, tmp_path / "subsets" / "rd_0", [0, 4, 9, 13])
    other_model = build_tiny_lm(smollm2_tokenizer_dir, tmp_path / "other-lm", seed=1)
    for name, model in (("a", tiny_lm), ("b", other_model)):
        result = cli(
            "eval", "round", "--subset", str(subset), "--model", str(model), "--db", str(store.path),
            "--embeddings", "e", "--eval-set", str(eval_file), "--device", "cpu",
            "--out", str(tmp_path / name / "rd_0.json"),
        )  # fmt: skip
        assert result.code == 0, result.err
    round_metrics = json.loads((tmp_path / "a" / "rd_0.json").read_text())
    for key in ("n", "vendi", "coverage_radius", "mean_coverage", "nll", "ppl", "questions"):
        assert isinstance(round_metrics[key], int | float), key
    assert round_metrics["n"] == 4 and round_metrics["questions"] == 5
    details = json.loads((tmp_path / "a" / "rd_0.details.json").read_text())
    assert details["subset_name"] == "rd_0" and len(details["questions"]) == 5

    args = ["eval", "compare", str(tmp_path / "a" / "rd_0.json"), str(tmp_path / "b" / "rd_0.json")]
    first = cli(*args, "--json", "--n-boot", "2000")
    again = cli(*args, "--json", "--n-boot", "2000")
    assert first.code == 0, first.err
    assert first.out == again.out  # fixed seed: the same CI every time
    nll = first.json()["nll"]
    nll_b = json.loads((tmp_path / "b" / "rd_0.json").read_text())["nll"]
    assert nll["mean_a"] == pytest.approx(round_metrics["nll"]) and nll["mean_b"] == pytest.approx(
        nll_b
    )
    assert nll["ci_low"] <= nll["diff"] <= nll["ci_high"] and nll["questions"] == 5
    table = cli(*args)
    assert table.code == 0 and "95% CI" in table.out
