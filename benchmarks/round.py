"""One DiverseEvol round's phases with SmolLM2 in fp32 and in `auto`, against the machine's peak.

Phases, each timed without model loading: embed the pool (``lm:smollm2``, vectors +
uncertainty scores), select (K-center, the first ``--picks`` picks), train (a subset of
the picks, ``--train-examples`` examples, one epoch) and eval (held-out NLL of the base
model on ``--eval-rows`` questions). Every phase runs at ``fp32`` and at ``auto`` (bf16
where the CPU computes it natively) in the same process, next to a GEMM micro-benchmark
that measures this machine's fp32 and bf16 FLOP/s right now (other processes share
these cores, so the peak and the phases are measured under the same load).

Model FLOPs are estimated as 2·params per real (non-padding) token for a forward pass and
6·params for a training step (attention's own FLOPs are left out: short sequences).

Accuracy of ``auto`` against fp32 (the contract that decides ``auto``): per-row min cosine
of the vectors, overlap of the first ``--picks`` K-center picks, mean held-out NLL
difference, and the training loss curves.

    nice -n 10 .venv/bin/python benchmarks/round.py          # ≈12 min on 2 busy shared cores

Targets: embed ≥ 2.5× and train ≥ 1.5× the fp32 tokens/s; no phase below 40% of the
GEMM peak of its precision (or the README says where the rest goes).

``--baseline-rev REV`` adds a training comparison in the same run: the training code of
``REV`` (a ``git archive`` of it in a temporary folder) against this checkout's, each in
a fresh process on the same subset and settings, alternating (baseline, this) ``--repeats``
times, with the tokens/s ratio and the loss curves side by side. ``--train-compare-only``
runs only that comparison:

    nice -n 10 .venv/bin/python benchmarks/round.py --baseline-rev 0c72361 \
        --train-compare-only --train-examples 16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A --train-worker process imports curate from --code (a baseline revision's tree).
CODE = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else ROOT
sys.path.insert(0, str(CODE.resolve()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def spread(rows: list[dict], limit: int) -> list[dict]:
    """``limit`` rows evenly spaced over the file, so lengths are representative."""
    if not limit or limit >= len(rows):
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def gemm_peak(dtype: torch.dtype, n: int = 1024, seconds: float = 3.0) -> float:
    """FLOP/s of an n×n×n matmul in ``dtype`` (best of repeated runs)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(4):
            torch.matmul(a, b)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def embed_phase(rows, precision, max_length, scores=False):
    from curate.embedders import load_embedder

    embedder = load_embedder("lm:smollm2", max_length, "cpu", precision, scores)
    embedder.load()
    embedder.embed_batch(rows[:2])  # warm-up
    embedder.padding.tokens = embedder.padding.slots = 0
    vectors = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    started = time.perf_counter()
    for indices, result in embedder.embed(rows):
        vectors[indices] = result.vectors
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in embedder._model.parameters())
    return {
        "precision": embedder.precision,
        "seconds": seconds,
        "tokens": embedder.padding.tokens,
        "flops": 2 * params * embedder.padding.tokens,
        "padding": embedder.padding.fraction,
        "params": params,
    }, vectors


def select_phase(vectors, picks):
    from curate.strategies.kcenter import kcenter_greedy

    started = time.perf_counter()
    selection = kcenter_greedy(vectors, None, picks, seed=0, device="cpu")
    return {"seconds": time.perf_counter() - started}, selection.indices.tolist()


def write_bench_subset(examples, subset: Path) -> Path:
    from curate.manifest import Manifest, PoolRef
    from curate.subsets import write_subset

    manifest = Manifest(
        name="bench",
        strategy="kcenter",
        params={},
        seed=0,
        budget=len(examples),
        parent=None,
        pool=PoolRef(version=1, rows=0),
        embeddings=None,
        picks=[{"id": e["id"], "hash": e["hash"]} for e in examples],
        created_by="benchmarks/round.py",
    )
    if not subset.exists():
        write_subset(subset, manifest, examples)
    return subset


def train_metrics(subset: Path, precision: str, max_length: int, out: Path) -> dict:
    from curate.training import TrainConfig, train

    config = TrainConfig(
        "smollm2", epochs=1, lr=1e-4, max_length=max_length, batch_size=4, precision=precision
    )
    return train(subset, out, config).metrics


def train_phase(examples, precision, max_length, out: Path, params: int):
    subset = write_bench_subset(examples, out / "subset")
    metrics = train_metrics(subset, precision, max_length, out / f"model-{precision}")
    timing = metrics["timing"]
    tokens = metrics["tokens_seen"]
    return {
        "precision": metrics["precision"],
        "seconds": timing["seconds"],
        "tokens": tokens,
        "flops": 6 * params * tokens,
        "padding": timing["padding_fraction"],
        "losses": [h["loss"] for h in metrics["loss_history"]],
    }


def eval_phase(rows, precision, max_length, params: int):
    from curate.evaluation.nll import answer_nll
    from curate.models import load_causal_lm, resolve_precision, torch_dtype
    from curate.prompts import PaddingCount

    resolved = resolve_precision(precision, "cpu")
    model, tokenizer = load_causal_lm("smollm2", "cpu", torch_dtype(resolved))
    answer_nll(model, tokenizer, rows[:2], max_length)  # warm-up
    padding = PaddingCount()
    started = time.perf_counter()
    scored = answer_nll(model, tokenizer, rows, max_length, batch_size=4, padding=padding)
    seconds = time.perf_counter() - started
    return {
        "precision": resolved,
        "seconds": seconds,
        "tokens": padding.tokens,
        "flops": 2 * params * padding.tokens,
        "padding": padding.fraction,
        "nll": [s.nll for s in scored],
    }


def train_worker(spec_file: Path) -> None:
    """One training run in this process (a fresh one per run, with curate from ``--code``)."""
    import curate

    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    cpu = time.process_time()  # all threads; load and save included (the same in both codes)
    metrics = train_metrics(
        Path(spec["subset"]), spec["precision"], spec["max_length"], Path(spec["out"])
    )
    metrics["cpu_seconds"] = time.process_time() - cpu
    metrics["curate_file"] = curate.__file__
    Path(spec["result"]).write_text(json.dumps(metrics), encoding="utf-8")


def compare_training(examples: list[dict], args) -> dict:
    """The baseline revision's training code against this checkout's, alternating."""
    import shutil
    import subprocess

    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline_rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "baseline").mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp / "baseline")], input=archive, check=True)
        subset = write_bench_subset(examples, tmp / "subset")
        for repeat in range(1, args.repeats + 1):
            for code_label, code in (("baseline", tmp / "baseline"), ("this", ROOT)):
                for precision in args.train_precisions:
                    spec = {
                        "subset": str(subset),
                        "precision": precision,
                        "max_length": args.max_length,
                        "out": str(tmp / "model"),
                        "result": str(tmp / "result.json"),
                    }
                    (tmp / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
                    command = [sys.executable, str(Path(__file__).resolve())]
                    command += ["--train-worker", str(tmp / "spec.json"), "--code", str(code)]
                    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
                    metrics = json.loads((tmp / "result.json").read_text(encoding="utf-8"))
                    shutil.rmtree(tmp / "model")
                    assert Path(metrics["curate_file"]).is_relative_to(code), metrics["curate_file"]
                    recipe = metrics.get("recipe") or {}
                    run = {
                        "repeat": repeat,
                        "code": code_label,
                        "precision": precision,
                        "resolved": metrics["precision"],
                        "recipe": "/".join(recipe.values()) or "(padded/autocast)",
                        "seconds": metrics["timing"]["seconds"],
                        "cpu_seconds": metrics["cpu_seconds"],
                        "tokens": metrics["tokens_seen"],
                        "padding": metrics["timing"]["padding_fraction"],
                        "steps": metrics["steps"],
                        "losses": [h["loss"] for h in metrics["loss_history"]],
                    }
                    runs.append(run)
                    print(
                        f"  run {repeat} {code_label} {precision}={run['resolved']} "
                        f"{run['seconds']:.1f}s {run['tokens'] / run['seconds']:.1f} tokens/s",
                        flush=True,
                    )

    print()
    print(
        f"training, baseline {rev} vs this checkout: {len(examples)} examples, "
        f"{runs[0]['steps']} steps (batch 4, 1 epoch, lr 1e-4, max length {args.max_length}); "
        f"each run a fresh process, alternating"
    )
    header = f"{'run':<5}{'code':<10}{'precision':<12}{'recipe':<18}{'seconds':>9}"
    header += f"{'tokens':>8}{'tokens/s':>10}{'padding':>9}{'CPU s':>9}"
    print(header)
    print("-" * len(header))
    for r in runs:
        line = f"{r['repeat']:<5}{r['code']:<10}{r['precision'] + '=' + r['resolved']:<12}"
        line += f"{r['recipe']:<18}{r['seconds']:>9.2f}{r['tokens']:>8,}"
        line += f"{r['tokens'] / r['seconds']:>10.1f}{r['padding'] or 0:>9.1%}"
        line += f"{r['cpu_seconds']:>9.1f}"
        print(line)
    summary = {"baseline_rev": rev, "runs": runs, "ratios": {}, "loss_diff": {}}
    for precision in args.train_precisions:

        def pick(code, precision=precision):
            return [r for r in runs if r["code"] == code and r["precision"] == precision]

        old, new = pick("baseline"), pick("this")
        ratios = [
            (n["tokens"] / n["seconds"]) / (o["tokens"] / o["seconds"])
            for o, n in zip(old, new, strict=True)
        ]
        pooled = (sum(n["tokens"] for n in new) / sum(n["seconds"] for n in new)) / (
            sum(o["tokens"] for o in old) / sum(o["seconds"] for o in old)
        )
        cpu_ratio = sum(o["cpu_seconds"] for o in old) / sum(n["cpu_seconds"] for n in new)
        a, b = np.array(old[0]["losses"]), np.array(new[0]["losses"])
        diff = float(np.abs(a - b).max()) if len(a) == len(b) else float("nan")
        same = {
            code: all(r["losses"] == pick(code)[0]["losses"] for r in pick(code))
            for code in ("baseline", "this")
        }
        summary["ratios"][precision] = {"per_repeat": ratios, "pooled": pooled, "cpu": cpu_ratio}
        summary["loss_diff"][precision] = diff
        print()
        print(
            f"{precision}: this/baseline tokens/s per repeat "
            f"{', '.join(f'{x:.2f}x' for x in ratios)}; over all repeats {pooled:.2f}x; "
            f"baseline/this CPU seconds per process (load, train, save) {cpu_ratio:.2f}x"
        )
        print(f"  loss per step: baseline {np.round(a, 4).tolist()}")
        print(f"                 this     {np.round(b, 4).tolist()}")
        print(
            f"                 max |diff| {diff:.4f}; same curve on every repeat: "
            f"baseline {same['baseline']}, this {same['this']}"
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, default=ROOT / "data" / "sample" / "pool.jsonl")
    parser.add_argument("--eval-set", type=Path, default=ROOT / "data" / "sample" / "eval.jsonl")
    parser.add_argument("--rows", type=int, default=48, help="pool rows embedded (0: all)")
    parser.add_argument("--eval-rows", type=int, default=8, help="questions scored (0: all)")
    parser.add_argument("--picks", type=int, default=24, help="K-center picks compared")
    parser.add_argument("--train-examples", type=int, default=8, help="picks trained on")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--embed-only", action="store_true", help="only the embed phases, with and without scores"
    )
    parser.add_argument("--baseline-rev", help="also compare training with this revision's code")
    parser.add_argument(
        "--train-compare-only", action="store_true", help="only the --baseline-rev comparison"
    )
    parser.add_argument("--repeats", type=int, default=2, help="comparison runs per code")
    parser.add_argument(
        "--train-precisions", nargs="+", default=["auto"], help="precisions compared"
    )
    parser.add_argument("--train-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # read before imports
    args = parser.parse_args()
    if args.train_worker:
        train_worker(args.train_worker)
        return

    from curate.files import jsonl_lines
    from curate.models import resolve_precision
    from curate.records import to_example

    lines = [line for _, line in jsonl_lines(args.pool.read_text(encoding="utf-8"))]
    pool = spread([to_example(json.loads(line), "sample").to_dict() for line in lines], args.rows)
    eval_text = args.eval_set.read_text(encoding="utf-8")
    eval_rows = [json.loads(line) for _, line in jsonl_lines(eval_text)]
    eval_rows = [
        {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
        for r in spread(eval_rows, args.eval_rows)
    ]
    auto = resolve_precision("auto", "cpu")
    print(
        f"{torch.get_num_threads()} threads, {torch.cpu.get_capabilities().get('cpu_name')}; "
        f"auto = {auto}; {len(pool)} pool rows, {len(eval_rows)} eval questions, "
        f"max length {args.max_length}",
        flush=True,
    )
    if args.train_compare_only:
        if not args.baseline_rev:
            parser.error("--train-compare-only needs --baseline-rev")
        compared = compare_training(spread(pool, args.train_examples), args)
        if args.json:
            args.json.write_text(json.dumps({"train_compare": compared}, indent=2))
        return
    peak = {"fp32": gemm_peak(torch.float32), "bf16": gemm_peak(torch.bfloat16)}
    print(f"GEMM peak: fp32 {peak['fp32'] / 1e9:.1f}, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s")

    results: dict[str, dict] = {}
    vectors, picks = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp:
        for label in ("fp32", "auto"):
            phases: dict[str, dict] = {}
            phases["embed"], vectors[label] = embed_phase(pool, label, args.max_length)
            params = phases["embed"]["params"]
            print(f"  {label} embed {phases['embed']['seconds']:.1f}s", flush=True)
            # Before vectors-only embedding: the LM head and uncertainty scores every round.
            phases["embed+scores"], scored = embed_phase(pool, label, args.max_length, True)
            drift = float(np.abs(scored - vectors[label]).max())
            print(f"  {label} embed+scores {phases['embed+scores']['seconds']:.1f}s", flush=True)
            phases["embed+scores"]["drift"] = drift
            if args.embed_only:
                results[label] = phases
                continue
            phases["select"], picks[label] = select_phase(vectors[label], args.picks)
            chosen = [pool[i] for i in picks[label][: args.train_examples]]
            phases["train"] = train_phase(chosen, label, args.max_length, Path(tmp), params)
            print(f"  {label} train {phases['train']['seconds']:.1f}s", flush=True)
            phases["eval"] = eval_phase(eval_rows, label, 512, params)
            print(f"  {label} eval {phases['eval']['seconds']:.1f}s", flush=True)
            results[label] = phases

    print()
    header = f"{'phase':<13}{'precision':<11}{'seconds':>9}{'tokens':>9}{'tokens/s':>10}"
    header += f"{'× fp32':>8}{'GFLOP/s':>9}{'of peak':>9}{'padding':>9}"
    print(header)
    print("-" * len(header))
    shown = ("embed+scores", "embed") + (() if args.embed_only else ("select", "train", "eval"))
    for phase in shown:
        for label in ("fp32", "auto"):
            r = results[label][phase]
            precision = r.get("precision", "-" if phase == "select" else label)
            line = f"{phase:<13}{label + ('=' + precision if label == 'auto' else ''):<11}"
            line += f"{r['seconds']:>9.2f}"
            if "tokens" in r:
                rate = r["tokens"] / r["seconds"]
                base = results["fp32"][phase]
                speedup = rate / (base["tokens"] / base["seconds"])
                flops = r["flops"] / r["seconds"]
                line += f"{r['tokens']:>9,}{rate:>10,.0f}{speedup:>7.2f}×{flops / 1e9:>9.1f}"
                line += f"{flops / peak[precision]:>9.0%}{r['padding']:>9.1%}"
            else:
                speedup = results["fp32"][phase]["seconds"] / r["seconds"]
                line += f"{'':>9}{'':>10}{speedup:>7.2f}×"
            print(line)

    print()
    print("embed without the LM head and uncertainty scores (a strategy that reads only vectors):")
    for label in ("fp32", "auto"):
        before, after = results[label]["embed+scores"], results[label]["embed"]
        print(
            f"  {label:<5} {before['seconds']:.2f} s with scores -> {after['seconds']:.2f} s "
            f"without ({before['seconds'] / after['seconds']:.2f}x), "
            f"max |vector difference| {before['drift']:.1e}"
        )
    if args.embed_only:
        return

    a, b = vectors["fp32"], vectors["auto"]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    overlap = len(set(picks["fp32"]) & set(picks["auto"]))
    same_prefix = next(
        (i for i, (x, y) in enumerate(zip(picks["fp32"], picks["auto"], strict=True)) if x != y),
        len(picks["fp32"]),
    )
    nll = {k: np.array(results[k]["eval"]["nll"]) for k in results}
    losses = {k: np.array(results[k]["train"]["losses"]) for k in results}
    n = min(len(losses["fp32"]), len(losses["auto"]))
    print()
    print(f"accuracy of auto ({auto}) against fp32:")
    print(f"  vectors: min cosine {cosine.min():.6f}, mean {cosine.mean():.6f} ({len(a)} rows)")
    print(
        f"  K-center: {overlap}/{args.picks} of the first picks shared; "
        f"identical for the first {same_prefix}"
    )
    print(
        f"  held-out NLL: fp32 {nll['fp32'].mean():.4f}, auto {nll['auto'].mean():.4f}, "
        f"difference {nll['auto'].mean() - nll['fp32'].mean():+.4f} nats "
        f"(max per question {np.abs(nll['auto'] - nll['fp32']).max():.4f})"
    )
    print(
        f"  train loss per step: fp32 {np.round(losses['fp32'], 3).tolist()}\n"
        f"                       auto {np.round(losses['auto'], 3).tolist()}\n"
        f"                       max |diff| {np.abs(losses['fp32'][:n] - losses['auto'][:n]).max():.4f}"
    )
    compared = (
        compare_training(spread(pool, args.train_examples), args) if args.baseline_rev else None
    )
    if args.json:
        figures = {
            "train_compare": compared,
            "peak_flops": peak,
            "phases": {
                k: {p: {f: v for f, v in r.items() if f not in ("nll",)} for p, r in ph.items()}
                for k, ph in results.items()
            },
            "min_cosine": float(cosine.min()),
            "kcenter_overlap": overlap,
            "nll_difference": float(nll["auto"].mean() - nll["fp32"].mean()),
        }
        args.json.write_text(json.dumps(figures, indent=2, default=float))


if __name__ == "__main__":
    main()
