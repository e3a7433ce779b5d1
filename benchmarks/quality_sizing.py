"""How long a ``quality.py`` table will take, from a timing at a tiny size on this machine.

Times each phase twice at two small sizes (train 1 and 2 epochs of ``--rows`` rows; embed
``--rows`` and 3 × ``--rows`` rows, vectors only and with scores; eval ``--questions`` and
3 × as many), so each has a per-call cost (load, save) and a per-token rate; then counts
the calls and tokens of the table ``quality.py`` would run with the same flags (same pool,
lengths, budgets, rounds, strategies, seeds) and prints the projection. ``--train-speedup``
divides the per-token training time (not the per-call cost): the issue's 3× faster rounds.

    python benchmarks/quality_sizing.py                       # the cpu profile
    python benchmarks/quality_sizing.py --profile gpu         # the same arithmetic on this machine
    python benchmarks/quality_sizing.py --train-speedup 3 -- --pool-rows 300
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402

CLOCK = "wall"  # or "cpu": this process's CPU seconds (all threads) over THREADS


def timed(fn, *a, **kw) -> float:
    """Seconds of one call: wall-clock, or (``--clock cpu``) the process's CPU time over the
    threads torch uses, which is what the call would take alone on the machine when
    other jobs share its cores (their time slices are not counted)."""
    import torch

    started, cpu = time.perf_counter(), time.process_time()
    fn(*a, **kw)
    if CLOCK == "cpu":
        return (time.process_time() - cpu) / torch.get_num_threads()
    return time.perf_counter() - started


def line(slope_intercept: tuple[float, float], unit: str) -> str:
    per, fixed = slope_intercept
    return f"{fixed:6.1f} s per call + {per * 1000:7.2f} ms per {unit}"


def fit(t_small: float, t_big: float, n_small: float, n_big: float) -> tuple[float, float]:
    """(seconds per unit, seconds per call) through two timings; the call cost kept ≥ 0."""
    per = max((t_big - t_small) / (n_big - n_small), 1e-9)
    return per, max(t_small - per * n_small, 0.0)


def _counter(tokenizer=None):
    """``tokens(records, length)``: tokens of raw pool/eval records as training sees them."""
    from dataclasses import asdict

    from curate.models import load_causal_lm
    from curate.prompts import tokenize
    from curate.records import to_example

    tok = tokenizer or load_causal_lm("smollm2", "cpu")[1]

    def tokens(rs, length):
        rows = [asdict(to_example(r, "pool")) for r in rs]
        return sum(len(tokenize(r, tok, length).input_ids) for r in rows)

    return tokens


def measure(args: argparse.Namespace, rows: int, questions: int, work: Path) -> dict:
    import curate
    from curate.models import load_causal_lm

    _, tokenizer = load_causal_lm("smollm2", "cpu")
    pool_file = work / "pool.jsonl"
    quality.build_pool(pool_file, args.pool_rows)
    records = [json.loads(x) for x in pool_file.read_text().splitlines()]
    sample = random.Random(1).sample(records, 3 * rows)
    eval_file = work / "eval.jsonl"
    quality.build_eval_set(eval_file, args.vicuna, args.wizardlm, args.alpaca_eval)
    eval_rows = eval_file.read_text().splitlines()

    tokens = _counter(tokenizer)

    pools = {}
    for n in (rows, 3 * rows):
        (work / f"p{n}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample[:n]))
        pools[n] = curate.Pool(work / f"db{n}")
        pools[n].ingest(work / f"p{n}.jsonl")
    base = pools[rows]
    subset = work / "subset"
    curate.write_subset(base.select(budget=rows, strategy="random", name="t"), subset)
    train = {
        e: timed(curate.train, subset, "smollm2", work / f"m{e}", epochs=float(e), lr=args.lr,
                 max_length=args.max_length, batch_size=args.batch_size, precision=args.precision)
        for e in (1, 2)
    }  # fmt: skip
    model = work / "m1"
    embed = {}
    for scores in (False, True):
        for n in (rows, 3 * rows):
            embed[scores, n] = timed(
                pools[n].embed, f"lm:{model}", f"e{int(scores)}", max_length=args.embed_max_length,
                precision=args.precision, scores=scores,
            )  # fmt: skip
    ev = {}
    for n in (questions, 3 * questions):
        (work / f"q{n}.jsonl").write_text("\n".join(eval_rows[:n]) + "\n")
        ev[n] = timed(curate.evaluate, model, work / f"q{n}.jsonl", out=work / f"s{n}.json",
                      max_length=args.eval_max_length, precision=args.precision)  # fmt: skip
    train_tokens = tokens(sample[:rows], args.max_length)
    counts = pool_tokens(args, tokenizer, tokens)
    e_small, e_big = tokens(sample[:rows], args.embed_max_length), tokens(sample, args.embed_max_length)  # fmt: skip
    q = [json.loads(x) for x in eval_rows]
    q_small, q_big = tokens(q[:questions], args.eval_max_length), tokens(q[: 3 * questions], args.eval_max_length)  # fmt: skip
    return {
        "train": fit(train[1], train[2], train_tokens, 2 * train_tokens),
        "embed": fit(embed[False, rows], embed[False, 3 * rows], e_small, e_big),
        "embed+scores": fit(embed[True, rows], embed[True, 3 * rows], e_small, e_big),
        "eval": fit(ev[questions], ev[3 * questions], q_small, q_big),
        **counts,
        "raw": {"train": train, "embed": {str(k): v for k, v in embed.items()}, "eval": ev},
    }


def pool_tokens(args: argparse.Namespace, tokenizer, tokens) -> dict:
    """Token counts of the table's pool and eval set at its lengths (no model run)."""
    with tempfile.TemporaryDirectory(prefix="quality-tokens-") as tmp:
        pool_file, eval_file = Path(tmp) / "pool.jsonl", Path(tmp) / "eval.jsonl"
        quality.build_pool(pool_file, args.pool_rows)
        quality.build_eval_set(eval_file, args.vicuna, args.wizardlm, args.alpaca_eval)
        records = [json.loads(x) for x in pool_file.read_text().splitlines()]
        q = [json.loads(x) for x in eval_file.read_text().splitlines()]
    return {
        "pool_train_tokens_per_row": tokens(records, args.max_length) / len(records),
        "pool_embed_tokens": tokens(records, args.embed_max_length),
        "eval_tokens": tokens(q, args.eval_max_length),
        "pool": len(records),
    }


def project(args: argparse.Namespace, m: dict, speedup: float) -> dict[str, float]:
    """Seconds per phase of the whole table, counted as ``quality.Runner`` runs it."""
    from curate.strategies import STRATEGIES

    (tr, tr0), (em, em0), (es, es0), (ev, ev0) = m["train"], m["embed"], m["embed+scores"], m["eval"]  # fmt: skip
    per_row = m["pool_train_tokens_per_row"] * args.epochs * tr / speedup

    def train(n_rows: int) -> float:
        return tr0 + n_rows * per_row

    def embed(scores: bool) -> float:
        return (
            (es0 + es * m["pool_embed_tokens"]) if scores else (em0 + em * m["pool_embed_tokens"])
        )

    kinds = {s: STRATEGIES.get(quality.split_label(s)[0]) for s in args.strategies}
    shared = any(k.reads_scores for k in kinds.values())
    evaluate = ev0 + ev * m["eval_tokens"]
    out = {"train": 0.0, "embed": 0.0, "eval": 0.0}
    for fraction in args.budgets:
        budget = round(fraction * m["pool"])
        init, add = quality.plan(budget, args.rounds, args.init_share)
        for _ in args.seeds:
            out["train"] += train(init)
            if any(k.needs_vectors or k.reads_scores for k in kinds.values()):
                out["embed"] += embed(shared)  # the round-0 model's table, shared
            for kind in kinds.values():
                reads = kind.needs_vectors or kind.reads_scores
                for r in range(1, args.rounds):
                    out["train"] += train(init + r * add)
                    if reads and r > 1:
                        out["embed"] += embed(bool(kind.reads_scores))
                out["eval"] += evaluate
        out["eval"] += evaluate * args.checkpoints if args.checkpoints > 1 else 0
    if args.full:
        out["train"] += train(m["pool"])
        out["eval"] += evaluate
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12, help="rows of the small timing")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--train-speedup", type=float, default=1.0)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: CPU seconds / threads (a shared machine)")  # fmt: skip
    parser.add_argument("--save-rates", help="write the measured rates to this JSON file")
    parser.add_argument("--rates", help="project from rates saved earlier instead of measuring")
    parser.add_argument("rest", nargs="*", help="quality.py flags (after --)")
    own = parser.parse_args()
    args = quality.parse_args(["--profile", own.profile, *own.rest])
    global CLOCK
    CLOCK = own.clock
    if own.rates:  # rates measured earlier (--save-rates); token counts for these flags
        m = json.loads(Path(own.rates).read_text())
        m.update(pool_tokens(args, None, _counter()))
    else:
        with tempfile.TemporaryDirectory(prefix="quality-sizing-") as tmp:
            m = measure(args, own.rows, own.questions, Path(tmp))
    if own.save_rates:
        Path(own.save_rates).write_text(json.dumps(m, indent=1))
    if own.rates:
        print(f"rates from {own.rates}: {m.get('note', '')}")
    else:
        print(
            f"clock {own.clock}; load average {open('/proc/loadavg').read().split()[0]} at the end"
        )
    print(f"profile {own.profile}: pool {m['pool']} rows, {m['pool_train_tokens_per_row']:.0f} train tokens per row, "
          f"{m['pool_embed_tokens']:,} embed tokens, {m['eval_tokens']:,} eval tokens")  # fmt: skip
    for phase in ("train", "embed", "embed+scores", "eval"):
        print(f"  {phase:13s} {line(m[phase], 'token')}")
    if "raw" in m:
        print(f"  raw seconds: {json.dumps(m['raw'])}")
    for speedup in sorted({1.0, own.train_speedup}):
        total = project(args, m, speedup)
        parts = ", ".join(f"{k} {v / 60:.0f} min" for k, v in total.items())
        print(f"table at train speed ×{speedup:g}: {sum(total.values()) / 3600:.1f} h ({parts})")


if __name__ == "__main__":
    main()
