"""The precision contract: bf16 where the device has it, close enough to fp32 to select,
score and train with, and never mixed with fp32 vectors in one table.

Thresholds here are for the tiny random 2-layer model; the SmolLM2 figures (the ones
that decide `auto`) come from `python benchmarks/round.py` (benchmarks/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from curate.embed import embed
from curate.embedders import load_embedder
from curate.embedders.base import estimated_tokens, length_sorted_batches
from curate.embedders.fingerprints import embedder_fingerprint
from curate.evaluation.nll import answer_nll
from curate.ingest import ingest
from curate.manifest import Manifest, PoolRef
from curate.models import CPU_BF16_CAPABILITIES, load_causal_lm, resolve_precision, torch_dtype
from curate.prompts import IGNORE_INDEX, pad_batch
from curate.records import to_example
from curate.scaffold import ScaffoldError, validate_params
from curate.strategies.kcenter import kcenter_greedy
from curate.subsets import write_subset
from curate.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_POOL = ROOT / "data" / "sample" / "pool.jsonl"
SAMPLE_EVAL = ROOT / "data" / "sample" / "eval.jsonl"


def sample_rows(n: int) -> list[dict]:
    lines = SAMPLE_POOL.read_text(encoding="utf-8").splitlines()[:n]
    return [to_example(json.loads(line), "sample").to_dict() for line in lines]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


@pytest.fixture(scope="module")
def vectors(tiny_lm) -> dict[str, np.ndarray]:
    rows = sample_rows(64)
    out = {}
    for precision in ("fp32", "bf16"):
        embedder = load_embedder(f"lm:{tiny_lm}", 256, "cpu", precision)
        stacked = np.zeros((len(rows), embedder.dim), dtype=np.float32)
        for indices, result in embedder.embed(rows):
            stacked[indices] = result.vectors
        out[precision] = stacked
    return out


# ------------------------------------------------------------------ resolving a precision


def test_auto_is_bf16_exactly_where_the_cpu_reports_native_bf16():
    capabilities = torch.cpu.get_capabilities()
    native = any(capabilities.get(name, False) for name in CPU_BF16_CAPABILITIES)
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert torch_dtype("bf16") is torch.bfloat16
    with pytest.raises(Exception, match="choose from auto, fp32, bf16"):
        resolve_precision("fp16", "cpu")


def test_fingerprint_differs_by_precision_and_fp32_keeps_the_old_one(tiny_lm):
    fp32 = load_embedder(f"lm:{tiny_lm}", precision="fp32")
    bf16 = load_embedder(f"lm:{tiny_lm}", precision="bf16")
    assert fp32.fingerprint != bf16.fingerprint
    # Vectors cached before precision existed were fp32: they stay valid.
    legacy = embedder_fingerprint("lm", fp32.model_path, fp32.pooling, fp32.text_format, 512)
    assert fp32.fingerprint == legacy
    auto = load_embedder(f"lm:{tiny_lm}", device="cpu", precision="auto")
    assert auto.fingerprint == {"fp32": fp32, "bf16": bf16}[auto.precision].fingerprint


def test_fp32_and_bf16_vectors_never_share_a_table(tiny_lm, store, tmp_path):
    path = tmp_path / "pool.jsonl"
    lines = SAMPLE_POOL.read_text(encoding="utf-8").splitlines(keepends=True)[:6]
    path.write_text("".join(lines), encoding="utf-8")
    ingest(store, [str(path)])
    first = embed(store, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "tiny")
    assert (first.embedded, first.precision) == (6, "fp32")
    again = embed(store, load_embedder(f"lm:{tiny_lm}", precision="bf16"), "tiny")
    assert (again.embedded, again.reused, again.precision) == (6, 0, "bf16")
    stored = store.scan("emb_tiny", ["fingerprint"])["fingerprint"].to_pylist()
    assert set(stored) == {load_embedder(f"lm:{tiny_lm}", precision="bf16").fingerprint}
    assert 0 <= again.padding < 1


# ------------------------------------------------------------------ accuracy contract


@pytest.mark.slow  # real forward passes in both precisions
def test_bf16_vectors_match_fp32_per_row(vectors):
    assert min_cosine(vectors["fp32"], vectors["bf16"]) >= 0.999
    assert not np.array_equal(vectors["fp32"], vectors["bf16"])  # bf16 really ran


@pytest.mark.slow  # real forward passes in both precisions
def test_kcenter_picks_from_bf16_vectors_mostly_agree(vectors):
    picks = {
        p: kcenter_greedy(v, None, 20, seed=0, device="cpu").indices for p, v in vectors.items()
    }
    overlap = len(set(picks["fp32"].tolist()) & set(picks["bf16"].tolist())) / 20
    assert overlap >= 0.8


@pytest.mark.slow  # real forward passes in both precisions
def test_bf16_nll_is_within_a_hundredth_of_a_nat(tiny_lm):
    rows = [json.loads(line) for line in SAMPLE_EVAL.read_text(encoding="utf-8").splitlines()]
    rows = [{"instruction": r["instruction"], "output": r["output"]} for r in rows[:12]]
    scores = {}
    for precision in ("fp32", "bf16"):
        model, tokenizer = load_causal_lm(str(tiny_lm), "cpu", torch_dtype(precision))
        scores[precision] = np.array([s.nll for s in answer_nll(model, tokenizer, rows, 256)])
    assert abs(scores["fp32"].mean() - scores["bf16"].mean()) <= 0.01
    assert np.abs(scores["fp32"] - scores["bf16"]).max() <= 0.05


@pytest.mark.slow
def test_mixed_precision_training_follows_the_fp32_loss_curve(tiny_lm, tmp_path):
    examples = sorted(sample_rows(40), key=lambda r: r["n_chars"])[:8]
    manifest = Manifest(
        name="rd_p",
        strategy="random",
        params={},
        seed=0,
        budget=8,
        parent=None,
        pool=PoolRef(1, 8),
        embeddings=None,
        picks=[{"id": e["id"], "hash": e["hash"]} for e in examples],
        created_by="tests",
    )
    write_subset(tmp_path / "rd_p", manifest, examples)
    curves, weights = {}, {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(
            str(tiny_lm), epochs=2, lr=5e-3, max_length=64, batch_size=2, precision=precision
        )
        result = train(tmp_path / "rd_p", tmp_path / f"model-{precision}", config)
        assert result.metrics["precision"] == precision
        assert 0 <= result.metrics["timing"]["padding_fraction"] < 1
        curves[precision] = np.array([h["loss"] for h in result.metrics["loss_history"]])
        weights[precision] = load_causal_lm(str(tmp_path / f"model-{precision}"))[0]
    assert len(curves["fp32"]) == len(curves["bf16"]) == 8
    assert np.abs(curves["bf16"] - curves["fp32"]).max() <= 0.05 * curves["fp32"].max()
    assert curves["bf16"][-1] < curves["bf16"][0]  # it learns
    # Master weights stay fp32: the saved model is fp32 and differs from the fp32 run.
    param = next(weights["bf16"].parameters())
    assert param.dtype == torch.float32
    assert not torch.equal(param, next(weights["fp32"].parameters()))


# ------------------------------------------------------------------ less padding


def test_token_budget_batches_cover_every_row_once_within_budget():
    rows = [{"n_chars": n} for n in [10, 3000, 40, 700, 5, 90, 1200, 60, 2500, 33] * 5]
    batches = length_sorted_batches(rows, 16, max_tokens=2048, max_length=512)
    assert sorted(i for b in batches for i in b) == list(range(len(rows)))
    for batch in batches:
        width = max(estimated_tokens(rows[i], 512) for i in batch)
        assert len(batch) <= 16 and (len(batch) == 1 or len(batch) * width <= 2048)
    sizes = {len(b) for b in batches}
    assert max(sizes) == 16 and min(sizes) < 16  # short rows batch wide, long rows narrow
    assert length_sorted_batches(rows, 16) == length_sorted_batches(rows, 16, None)


def test_pad_batch_right_and_left():
    right = pad_batch([{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, [8]], 0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]
    left = pad_batch([[5, 6, 7], [8]], 0, left=True)
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


# ------------------------------------------------------------------ commands and params


@pytest.mark.parametrize(
    "args",
    [
        ["embed", "--precision", "fp16"],
        ["train", "s", "--base-model", "m", "--out", "o", "--precision", "fp16"],
        ["eval", "model", "m", "--eval-set", "e.jsonl", "--precision", "fp16"],
    ],
)
def test_cli_rejects_an_unknown_precision(args, tmp_path, cli):
    result = cli(*args)
    assert result.code == 2
    assert "--precision" in result.err


def test_params_precision_is_validated():
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert params["precision"] == "auto"
    validate_params(params)
    with pytest.raises(ScaffoldError, match="`precision` is 'half'"):
        validate_params(params | {"precision": "half"})
