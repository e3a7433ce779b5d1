"""`curate train` on the tiny LM: response-only labels, loss, saved folder, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from curate.errors import SubsetError
from curate.manifest import Manifest, PoolRef
from curate.progress import NoProgress
from curate.prompts import IGNORE_INDEX
from curate.records import to_example
from curate.subsets import MANIFEST_FILE, load_subset, write_subset
from curate.training import (
    METRICS_FILE,
    EpochSeededLengthSampler,
    PaddingCollator,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
    build_dataset,
    train,
    work_dir_for,
)

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)


SAMPLE_POOL = Path(__file__).resolve().parents[1] / "data" / "sample" / "pool.jsonl"


def pool_examples(n: int) -> list[dict]:
    """The ``n`` shortest sample-pool rows (canonical rows, in pool order): short = fast."""
    rows = [
        to_example(json.loads(line), "sample").to_dict()
        for line in SAMPLE_POOL.read_text(encoding="utf-8").splitlines()
    ]
    shortest = sorted(rows, key=lambda r: (r["n_chars"], r["id"]))[:n]
    return [r for r in rows if r in shortest]


def make_subset(path: Path, examples: list[dict], name: str = "rd_test") -> Path:
    manifest = Manifest(
        name=name,
        strategy="random",
        params={},
        seed=0,
        budget=len(examples),
        parent=None,
        pool=PoolRef(version=1, rows=327),
        embeddings=None,
        picks=[{"id": e["id"], "hash": e["hash"]} for e in examples],
        created_by="tests/test_train.py",
    )
    write_subset(path, manifest, examples)
    return path


def mean_response_loss(model_dir: Path, examples: list[dict]) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    dataset, _ = build_dataset(examples, tokenizer, 64)
    batch = PaddingCollator(tokenizer.pad_token_id)(dataset.features)
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.fixture(scope="module")
def subset_dir(tmp_path_factory) -> Path:
    return make_subset(tmp_path_factory.mktemp("subset") / "rd_0", pool_examples(8))


@pytest.fixture(scope="module")
def config(tiny_lm) -> TrainConfig:
    # 8 examples, batch 2, 2 epochs = 8 optimizer steps; checkpoints at steps 3 and 6.
    return TrainConfig(
        base_model=str(tiny_lm),
        epochs=2,
        lr=5e-3,
        max_length=64,
        batch_size=2,
        save_steps=3,
        precision="fp32",
    )


@pytest.fixture(scope="module")
def reference(subset_dir, config, tmp_path_factory):
    """One uninterrupted run; the other tests compare against it."""
    return train(subset_dir, tmp_path_factory.mktemp("models") / "rd_0", config)


# ------------------------------------------------------------------ labels and batches


@pytest.fixture(scope="module")
def tokenizer(tiny_lm):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm)


def test_alpaca_labels_are_ignored_exactly_on_prompt_tokens(tokenizer):
    row = to_example(
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}, "t"
    ).to_dict()
    dataset, stats = build_dataset([row], tokenizer, 512)
    ids, labels = dataset[0]["input_ids"], dataset[0]["labels"]
    prompt = ALPACA_WITH_INPUT.format(instruction="Translate to French.", input="Good morning")
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = tokenizer("Bonjour", add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    assert ids == prompt_ids + response_ids
    for i, (token, label) in enumerate(zip(ids, labels, strict=True)):
        expected = IGNORE_INDEX if i < len(prompt_ids) else token
        assert label == expected, f"token {i} {tokenizer.decode([token])!r}"
    assert tokenizer.decode(ids[: len(prompt_ids)]) == prompt
    assert (stats.prompt_tokens, stats.response_tokens) == (len(prompt_ids), len(response_ids))


def test_messages_labels_cover_each_assistant_turn_and_nothing_else(tokenizer):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "Seven."},
        {"role": "user", "content": "And an even one?"},
        {"role": "assistant", "content": "Two."},
    ]
    row = to_example({"messages": messages}, "t").to_dict()
    dataset, _ = build_dataset([row], tokenizer, 512)
    ids, labels = dataset[0]["input_ids"], dataset[0]["labels"]

    def render(upto, prompt=False):
        return tokenizer.apply_chat_template(
            messages[:upto], tokenize=False, add_generation_prompt=prompt
        )

    expected = [  # (text, is_response): the template's text split at assistant turns
        (render(2, True), False),
        (render(3)[len(render(2, True)) :], True),
        (render(4, True)[len(render(3)) :], False),
        (render(5)[len(render(4, True)) :], True),
    ]
    assert "Seven." in expected[1][0] and "Two." in expected[3][0]
    runs: list[tuple[list[int], bool]] = []
    for token, label in zip(ids, labels, strict=True):
        is_response = label != IGNORE_INDEX
        if is_response:
            assert label == token
        if runs and runs[-1][1] == is_response:
            runs[-1][0].append(token)
        else:
            runs.append(([token], is_response))
    assert [(tokenizer.decode(r), flag) for r, flag in runs] == expected


def test_collator_pads_right_and_ignores_padding():
    collate = PaddingCollator(pad_token_id=0)
    batch = collate(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert PaddingCollator(0, pad_to_multiple_of=8)([{"input_ids": [1], "labels": [1]}])[
        "input_ids"
    ].shape == (1, 8)


def test_sampler_order_depends_only_on_seed_and_epoch():
    lengths = [3, 50, 7, 49, 2, 48, 9, 51, 4, 47, 8, 46, 5, 45, 6, 44]
    sampler = EpochSeededLengthSampler(lengths, batch_size=2, seed=0)
    epoch0 = list(sampler)
    assert sorted(epoch0) == list(range(16)) and list(sampler) == epoch0
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    assert list(EpochSeededLengthSampler(lengths, 2, seed=1)) != epoch0
    # length-grouped: the longest example leads, and pairs hold similar lengths
    assert lengths[epoch0[0]] == max(lengths)


# ------------------------------------------------------------------ training runs


@pytest.mark.slow  # loads a model and trains it
def test_loss_goes_down_and_folder_reloads(reference, subset_dir, tiny_lm, tokenizer):
    from transformers import AutoModelForCausalLM

    out, metrics = reference.out, reference.metrics
    assert sorted(p.name for p in out.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        METRICS_FILE,
    ]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.use_cache and model.num_parameters() > 0
    examples = load_subset(subset_dir).examples
    assert mean_response_loss(out, examples) < mean_response_loss(tiny_lm, examples) - 0.3
    losses = [h["loss"] for h in metrics["loss_history"]]
    assert len(losses) == metrics["steps"] == 8
    assert sum(losses[-2:]) < sum(losses[:2])
    on_disk = json.loads((out / METRICS_FILE).read_text())
    assert on_disk["subset"]["manifest_sha256"] == load_subset(subset_dir).manifest_sha256
    assert on_disk["final_loss"] == losses[-1]
    dataset, _ = build_dataset(examples, tokenizer, 64)
    assert on_disk["tokens_seen"] == 2 * sum(dataset.lengths)  # two epochs, no padding counted
    # no checkpoints inside --out, and the work folder beside it is gone
    assert not work_dir_for(out).exists()
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.slow  # loads a model and trains it
def test_resume_after_interruption_gives_the_same_weights(reference, subset_dir, config, tmp_path):
    out = tmp_path / "rd_0"
    out.mkdir()
    (out / "older-model.txt").write_text("an earlier model lives here")
    (out / METRICS_FILE).write_text("{}")  # curate wrote it: a model folder to replace

    class CrashAtStep7(NoProgress):  # epoch 2, one step after the checkpoint at step 6
        steps = 0

        def advance(self, n: int = 1) -> None:
            self.steps += n
            if self.steps == 7:
                raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="checkpoint-6"):
        train(subset_dir, out, config, progress=CrashAtStep7())
    assert sorted(p.name for p in out.iterdir()) == ["older-model.txt", METRICS_FILE]  # kept
    checkpoints = work_dir_for(out) / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint-6"]

    changed = TrainConfig(**{**config.__dict__, "lr": 1e-3})
    with pytest.raises(TrainingError, match="different lr;"):
        train(subset_dir, out, changed, resume=True)
    assert (checkpoints / "checkpoint-6").is_dir()

    resumed = train(subset_dir, out, config, resume=True)
    assert resumed.metrics["timing"]["resumed_from_step"] == 6
    assert not (out / "older-model.txt").exists() and not work_dir_for(out).exists()
    weights = (out / "model.safetensors").read_bytes()
    assert weights == (reference.out / "model.safetensors").read_bytes()
    assert resumed.metrics["loss_history"] == reference.metrics["loss_history"]


@pytest.mark.slow  # loads a model and trains it
def test_lora_is_merged_into_a_plain_folder(subset_dir, config, tiny_lm, tmp_path):
    from safetensors.torch import load_file

    lora = TrainConfig(**{**config.__dict__, "lora": 4, "lr": 5e-2, "max_steps": 2})
    out = train(subset_dir, tmp_path / "rd_lora", lora).out
    assert not (out / "adapter_config.json").exists()
    trained, base = load_file(out / "model.safetensors"), load_file(tiny_lm / "model.safetensors")
    assert trained.keys() == base.keys()  # no lora_A / lora_B left
    q, v, k = (f"model.layers.0.self_attn.{m}_proj.weight" for m in "qvk")
    assert not torch.equal(trained[q], base[q]) and not torch.equal(trained[v], base[v])
    assert torch.equal(trained[k], base[k])  # not a LoRA target: unchanged
    assert torch.equal(trained["model.embed_tokens.weight"], base["model.embed_tokens.weight"])


# ------------------------------------------------------------------ command line


@pytest.mark.slow  # loads a model and trains it
def test_cli_trains_and_prints_json(cli, subset_dir, tiny_lm, tmp_path):
    out = tmp_path / "rd_0"
    code, stdout, _ = cli(
        "train", str(subset_dir), "--base-model", str(tiny_lm),
        "--out", str(out), "--max-steps", "1", "--batch-size", "2", "--max-length", "64",
        "--json",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)  # stdout holds the JSON and nothing else
    assert summary["steps"] == 1 and summary["out"] == str(out)
    assert summary["config"]["max_steps"] == 1 and summary["timing"]["tokens_per_second"] > 0
    assert json.loads((out / METRICS_FILE).read_text())["steps"] == 1


def _tamper(subset: Path) -> None:
    examples = subset / "examples.jsonl"
    examples.write_text(examples.read_text().replace("a", "A", 1))


def _empty(subset: Path) -> None:
    manifest = Manifest.read(subset / MANIFEST_FILE)
    write_subset(subset, manifest.replace(picks=[], budget=0), [])


@pytest.mark.parametrize(
    "break_input, model, message",
    [
        (_tamper, None, "sha256 does not match the manifest"),
        (_empty, None, "subset is empty"),
        (None, "no-such-org/no-such-model", "no-such-org/no-such-model: cannot load"),
    ],
    ids=["manifest-hash-mismatch", "empty-subset", "unknown-model"],
)
def test_bad_input_is_one_line_and_writes_nothing(
    cli, subset_dir, tiny_lm, tmp_path, break_input, model, message
):
    subset = tmp_path / "subset"
    shutil.copytree(subset_dir, subset)
    if break_input:
        break_input(subset)
    models = tmp_path / "models"
    models.mkdir()
    out = models / "rd_0"
    code, stdout, stderr = cli(
        "train", str(subset), "--base-model", model or str(tiny_lm),
        "--out", str(out),
    )  # fmt: skip
    assert code != 0
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1
    assert list(models.iterdir()) == []  # no --out, no work folder


def test_library_rejects_an_empty_subset_before_loading_a_model(tmp_path):
    subset = make_subset(tmp_path / "empty", [])
    with pytest.raises(SubsetError, match="empty"):
        train(subset, tmp_path / "out", TrainConfig(base_model="never-loaded"))
    assert not (tmp_path / "out").exists()
