"""Training-step recipes of SmolLM2-135M in one process: time per trained token and loss curves.

The same examples, batches (the Trainer's length-grouped order, ``EpochSeededLengthSampler``)
and base weights under each recipe, alternating recipes within every repeat (the order
rotates), so the machine's load falls on all of them alike; each repeat starts every
recipe from a fresh copy of the base weights and runs every batch with an optimizer step:

- ``padded+autocast``: the recipe before the training work of issue 21 (Trainer's
  ``bf16=True``: autocast over fp32 weights, fp32 fused AdamW, right-padded batches with
  an attention mask);
- ``packed+mask``: bf16 weights with fp32 master weights (:mod:`curate.training.master`),
  rows packed into one row, transformers' block-diagonal causal mask;
- ``packed+rows``: the same with curate's per-row attention
  (:data:`curate.training.packing.ROW_ATTENTION`), what ``curate train`` uses now.

Printed: per-repeat wall and process-CPU seconds, tokens/s, each recipe's ratio to the
first recipe per repeat (min/median), and the loss curves' largest difference from the
first recipe's and from each other. No model load or save is timed (``round.py``'s
``--baseline-rev`` times whole ``curate train`` processes).

    nice .venv/bin/python benchmarks/train_step.py                 # 20 examples, 3 repeats
    nice .venv/bin/python benchmarks/train_step.py --examples 40 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # round.py beside this file
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

RECIPES = ("padded+autocast", "packed+mask", "packed+rows")


def load_examples(pool: Path, count: int) -> list[dict]:
    from round import spread

    from curate.files import jsonl_lines
    from curate.records import to_example

    lines = [line for _, line in jsonl_lines(pool.read_text(encoding="utf-8"))]
    return spread([to_example(json.loads(line), "bench").to_dict() for line in lines], count)


def batches_of(features: list[dict], batch_size: int, tokenizer) -> dict[str, list[dict]]:
    """The Trainer's first-epoch micro-batches (seed 0), padded and packed."""
    from curate.training.data import EpochSeededLengthSampler, PaddingCollator
    from curate.training.packing import PackingCollator

    lengths = [len(f["input_ids"]) for f in features]
    order = list(EpochSeededLengthSampler(lengths, batch_size, seed=0))
    groups = [[features[i] for i in order[k : k + batch_size]] for k in range(0, len(order), batch_size)]  # fmt: skip
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    padded = [PaddingCollator(pad_id)(g) for g in groups]
    packed = [PackingCollator()(g) for g in groups]
    return {"padded": padded, "packed": packed}


def run_recipe(recipe: str, base, batches: dict[str, list[dict]], lr: float) -> dict:
    """One pass over the batches from a fresh copy of ``base``: seconds and losses."""
    from curate.training.master import MasterWeightAdamW
    from curate.training.packing import ROW_ATTENTION, use_attention

    model = copy.deepcopy(base).train()
    if recipe == "padded+autocast":
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
        context = torch.autocast("cpu", dtype=torch.bfloat16)
        data = batches["padded"]
    else:
        optimizer = MasterWeightAdamW(model.parameters(), lr=lr)
        context = nullcontext()
        data = batches["packed"]
        if recipe == "packed+rows":
            assert use_attention(model, ROW_ATTENTION)
    losses = []
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in data:
        with context:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "losses": losses}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=ROOT / "data" / "sample" / "pool.jsonl")
    parser.add_argument("--examples", type=int, default=20, help="pool rows trained on")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    from curate.models import load_causal_lm, resolve_model
    from curate.training.data import build_dataset

    base, tokenizer = load_causal_lm(resolve_model("smollm2"), device="cpu", dtype=torch.float32)
    base.config.use_cache = False
    dataset, stats = build_dataset(load_examples(args.pool, args.examples), tokenizer, args.max_length)  # fmt: skip
    batches = batches_of([dataset[i] for i in range(len(dataset))], args.batch_size, tokenizer)
    tokens = sum(b["input_ids"].shape[1] for b in batches["packed"])
    slots = sum(b["input_ids"].numel() for b in batches["padded"])
    print(
        f"{torch.get_num_threads()} threads; {stats.examples} examples in {len(batches['packed'])} "
        f"micro-batches of {args.batch_size}: {tokens:,} tokens, padded batches "
        f"{1 - tokens / slots:.1%} padding; max length {args.max_length}",
        flush=True,
    )
    run_recipe("packed+rows", base, batches, args.lr)  # warm-up: allocator, oneDNN kernels
    runs: dict[str, list[dict]] = {r: [] for r in RECIPES}
    print(f"{'repeat':6s}  {'recipe':16s} {'wall s':>7s} {'CPU s':>7s} {'tokens/s':>9s}")
    for repeat in range(args.repeats):
        order = RECIPES[repeat % len(RECIPES) :] + RECIPES[: repeat % len(RECIPES)]
        for recipe in order:
            run = run_recipe(recipe, base, batches, args.lr)
            runs[recipe].append(run)
            print(f"{repeat + 1:<6d}  {recipe:16s} {run['seconds']:7.2f} {run['cpu']:7.2f} "
                  f"{tokens / run['seconds']:9.1f}", flush=True)  # fmt: skip

    first = RECIPES[0]
    summary = {}
    for recipe in RECIPES:
        wall = [a["seconds"] / b["seconds"] for a, b in zip(runs[first], runs[recipe], strict=True)]
        cpu = [a["cpu"] / b["cpu"] for a, b in zip(runs[first], runs[recipe], strict=True)]
        curve = runs[recipe][0]["losses"]
        summary[recipe] = {
            "speedup_wall": wall, "speedup_cpu": cpu,
            "loss_diff_vs_first": max(abs(a - b) for a, b in zip(curve, runs[first][0]["losses"], strict=True)),  # fmt: skip
            "same_curve_every_repeat": all(r["losses"] == curve for r in runs[recipe]),
        }  # fmt: skip
        print(
            f"{recipe:16s} x{first}: wall min {min(wall):.2f} median {statistics.median(wall):.2f}; "
            f"CPU min {min(cpu):.2f} median {statistics.median(cpu):.2f}; loss curve max |diff| "
            f"{summary[recipe]['loss_diff_vs_first']:.4f}"
        )
    rows, mask = runs["packed+rows"][0]["losses"], runs["packed+mask"][0]["losses"]
    print(f"packed+rows vs packed+mask: loss curve max |diff| {max(abs(a - b) for a, b in zip(rows, mask, strict=True)):.4f}")  # fmt: skip
    print("losses (first repeat):")
    for recipe in RECIPES:
        print(f"  {recipe:16s} {[round(x, 4) for x in runs[recipe][0]['losses']]}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "tokens": tokens, "runs": runs, "summary": summary}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
