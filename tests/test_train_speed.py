"""The faster training step: packed (padding-free) batches and bf16 weights with fp32 master
weights, on the tiny Llama; the loss and the resume guarantees of the padded fp32 path."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from curate.progress import NoProgress
from curate.training import PaddingCollator, TrainConfig, TrainingInterrupted, train, work_dir_for
from curate.training.master import MasterWeightAdamW
from curate.training.packing import ROW_ATTENTION, PackingCollator, honours_packing, use_attention
from tests.test_train import make_subset, pool_examples

ROWS = [  # three rows of different lengths; labels on the last tokens only, as in SFT
    {"input_ids": [5, 17, 23, 9, 41, 8, 30], "labels": [-100, -100, -100, 9, 41, 8, 30]},
    {"input_ids": [12, 7, 3], "labels": [-100, 7, 3]},
    {"input_ids": [60, 61, 62, 63, 64], "labels": [-100, -100, 62, 63, 64]},
]


@pytest.fixture(scope="module")
def tiny_model(tiny_lm):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32).eval()
    model.config.use_cache = False
    return model


def test_packed_row_layout():
    batch = PackingCollator()(ROWS)
    assert batch["input_ids"].tolist() == [sum((r["input_ids"] for r in ROWS), [])]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 0, 1, 2, 3, 4]]
    # each row's first label is ignored: it would be predicted from the previous row
    assert batch["labels"].tolist() == [[-100, -100, -100, 9, 41, 8, 30] + [-100, 7, 3]
                                        + [-100, -100, 62, 63, 64]]  # fmt: skip
    assert "attention_mask" not in batch  # its absence is how transformers detects packing


@pytest.mark.slow  # loads the tiny model
def test_packed_rows_do_not_see_each_other(tiny_model):
    """Each row's logits and the batch loss equal those of the padded batch."""
    assert honours_packing(tiny_model)
    padded = PaddingCollator(pad_token_id=0)(ROWS)
    packed = PackingCollator()(ROWS)
    with torch.no_grad():
        out_padded = tiny_model(**padded)
        out_packed = tiny_model(**packed)
    starts = [0, 7, 10, 15]
    for i, row in enumerate(ROWS):
        n = len(row["input_ids"])
        alone = out_padded.logits[i, :n]
        together = out_packed.logits[0, starts[i] : starts[i + 1]]
        assert torch.allclose(together, alone, atol=1e-5), f"row {i}"
    assert out_packed.loss.item() == pytest.approx(out_padded.loss.item(), abs=1e-6)


@pytest.mark.slow  # loads the tiny model
def test_row_attention_equals_each_row_alone(tiny_model):
    """Under ROW_ATTENTION a packed batch's logits, loss and gradients equal the padded
    batch's under the model's own attention (the tiny model has 2 key heads for 4 query
    heads, so the grouped-query mapping is checked too)."""
    assert honours_packing(tiny_model, ROW_ATTENTION)
    assert tiny_model.config._attn_implementation == "sdpa"  # the probe put it back

    def run(batch):
        tiny_model.zero_grad(set_to_none=True)
        out = tiny_model(**batch)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in tiny_model.named_parameters()}
        return out, grads

    padded, padded_grads = run(PaddingCollator(pad_token_id=0)(ROWS))
    assert use_attention(tiny_model, ROW_ATTENTION)
    try:
        packed, packed_grads = run(PackingCollator()(ROWS))
        with pytest.raises(ValueError, match="one packed row"):  # never a silent cross-row mix
            tiny_model(**PaddingCollator(pad_token_id=0)(ROWS))
    finally:
        tiny_model.set_attn_implementation("sdpa")
        tiny_model.zero_grad(set_to_none=True)
    starts = [0, 7, 10, 15]
    for i, row in enumerate(ROWS):
        n = len(row["input_ids"])
        together = packed.logits[0, starts[i] : starts[i + 1]]
        assert torch.allclose(together, padded.logits[i, :n], atol=1e-5), f"row {i}"
    assert packed.loss.item() == pytest.approx(padded.loss.item(), abs=1e-6)
    for name, grad in padded_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-5), name


@pytest.mark.slow  # loads the tiny model
def test_probe_catches_a_model_that_ignores_packed_positions(tiny_model):
    """A model that builds its own causal mask (here: drops position_ids, as remote code
    that never heard of packing would) lets rows attend across: the probe says no."""

    class OwnMask(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def forward(self, input_ids, position_ids=None, **kwargs):
            return self.inner(input_ids=input_ids, **kwargs)

    wrapped = OwnMask(tiny_model).eval()
    assert not honours_packing(wrapped)
    assert not honours_packing(wrapped, ROW_ATTENTION)  # it takes no attention implementation
    assert not wrapped.training and not tiny_model.training  # the mode is left as it was


def test_master_weights_keep_updates_that_bf16_rounds_away():
    torch.manual_seed(0)
    ones = torch.ones(64)
    kept = torch.nn.Parameter(ones.clone())
    plain = torch.nn.Parameter(ones.clone().to(torch.bfloat16))
    master = MasterWeightAdamW([kept], lr=1e-3)
    pure = torch.optim.AdamW([plain], lr=1e-3)
    assert kept.dtype == torch.bfloat16  # the model's copy is bf16
    for _ in range(10):  # each step moves the weight by ~1e-3, under bf16's 2**-7 near 1.0
        for p in (kept, plain):
            p.grad = torch.ones_like(p)
        master.step()
        pure.step()
    assert torch.equal(plain, torch.ones_like(plain))  # pure bf16 lost every update
    fp32 = master.master.param_groups[0]["params"][0]
    assert fp32.dtype == torch.float32 and fp32.sub(1).abs().max() > 9e-3
    assert torch.equal(kept, fp32.to(torch.bfloat16))  # the model holds the rounding
    master.fp32_weights_to_model()
    assert kept.dtype == torch.float32 and torch.equal(kept, fp32)


def test_master_steps_reuse_their_fp32_gradients_and_skip_parameters_without_one():
    a, b = torch.nn.Parameter(torch.ones(8)), torch.nn.Parameter(torch.ones(8))
    opt = MasterWeightAdamW([a, b], lr=1e-2)
    a.grad = torch.ones_like(a)
    opt.step()
    assert torch.equal(b, torch.ones_like(b))  # no gradient this step: no update
    assert a.float().sub(1).abs().max() > 5e-3
    buffer = opt._fp32_grads[0][0]
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    opt.step()
    assert opt._fp32_grads[0][0] is buffer  # one allocation for the run, not one per step
    assert b.float().sub(1).abs().max() > 5e-3


def test_master_state_dict_resumes_bit_exactly():
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(32, generator=gen).to(torch.bfloat16) for _ in range(6)]

    def run(steps, state=None):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(32))  # a fresh model: the state must restore it
        opt = MasterWeightAdamW([p], lr=1e-2, weight_decay=0.1)
        if state is not None:
            opt.load_state_dict(state)
        for g in steps:
            p.grad = g.clone()
            opt.step()
        return p, opt

    full, full_opt = run(grads)
    _, half_opt = run(grads[:3])
    state = half_opt.state_dict()
    resumed, resumed_opt = run(grads[3:], state)
    assert torch.equal(resumed, full)
    full_opt.fp32_weights_to_model()
    resumed_opt.fp32_weights_to_model()
    assert torch.equal(resumed, full)  # the fp32 masters too, not only their rounding


@pytest.mark.slow  # trains the tiny model three times
def test_bf16_run_resumed_after_a_crash_ends_with_the_same_weights(tiny_lm, tmp_path):
    subset = make_subset(tmp_path / "rd_0", pool_examples(8))
    config = TrainConfig(
        base_model=str(tiny_lm), epochs=2, lr=5e-3, max_length=64, batch_size=2,
        save_steps=3, precision="bf16",
    )  # fmt: skip
    reference = train(subset, tmp_path / "ref", config)
    assert reference.metrics["recipe"] == {
        "batches": "packed",
        "attention": "rows",
        "bf16": "weights",
    }
    assert ROW_ATTENTION not in (reference.out / "config.json").read_text()  # loads anywhere
    assert reference.metrics["timing"]["padding_fraction"] == 0

    class CrashAtStep5(NoProgress):
        steps = 0

        def advance(self, n: int = 1) -> None:
            self.steps += n
            if self.steps == 5:
                raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(TrainingInterrupted, match="checkpoint-3"):
        train(subset, out, config, progress=CrashAtStep5())
    run_file = work_dir_for(out) / "run.json"
    assert json.loads(run_file.read_text())["recipe"] == reference.metrics["recipe"]
    resumed = train(subset, out, config, resume=True)
    assert resumed.metrics["timing"]["resumed_from_step"] == 3
    assert resumed.metrics["loss_history"] == reference.metrics["loss_history"]
    weights = (out / "model.safetensors").read_bytes()
    assert weights == (reference.out / "model.safetensors").read_bytes()
    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.float32}
