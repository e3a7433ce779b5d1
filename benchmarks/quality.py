"""Selection quality: does a strategy beat random at the same budget, in DiverseEvol's loop?

On a seeded sample of the shared pools (LIMA + the Alpaca sample, ``../shared/data/pools``),
with SmolLM2-135M-Instruct:

- round 0: ``--init`` random examples (per seed; every strategy of that seed shares it),
  fine-tuned from the base weights;
- each later round: the pool embedded with the previous round's model (``lm:``, mean of
  the last hidden layer over at most ``--embed-max-length`` tokens; strategies that read
  no vectors skip it), ``--add`` examples chosen by the strategy, a new model fine-tuned
  from the base weights on the grown subset;
- the last round's model scored by mean answer NLL on held-out questions with reference
  answers (Vicuna 80, WizardLM, an AlpacaEval slice: ``../shared/data/eval``), which no
  strategy or parameter here was tuned on (every strategy runs with its defaults).

References: ``random`` (the baseline every Δ is measured against) and ``full`` (the whole
sampled pool, seed 0 only: an upper line, not a competitor). The table pools the
questions of the three eval sets and gives, per strategy, Δ mean NLL vs random with a
95% bootstrap interval that resamples seeds and questions (``curate eval compare``'s), the
share of questions where the strategy's mean over seeds is lower, the subset's Vendi score
in MiniLM space, the LIMA share of the picks and their mean length.

Resumable: every subset, model, embedding table and score lives under ``--work`` and is
reused on the next run, so a table can be completed over several sittings. Results go to
``benchmarks/results/quality.{md,json}``.

    python benchmarks/quality.py                      # the defaults below: ~2 h on a quiet 2-core machine
    python benchmarks/quality.py --seeds 0 --strategies random kcenter   # a quick look
    python benchmarks/quality.py --strategies kcenter@512   # K-center on 512-token embeddings
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = (  # in run order: a finished strategy is a finished row of the table
    "random",
    "kcenter",
    "kcenter-robust",
    "cluster-sample",
    "facility-location",
    "kmeans-pp",
    "kcenter-density",
    "kcenter@256",  # K-center on embeddings over 256 tokens: does truncation matter?
)


def split_label(label: str) -> tuple[str, int | None]:
    """A table row: ``kcenter``, or ``kcenter@256`` for the same strategy on lm: embeddings
    over 256 tokens instead of ``--embed-max-length`` (the truncation remedy, measured)."""
    strategy, _, tokens = label.partition("@")
    return strategy, int(tokens) if tokens else None


def slug(label: str) -> str:
    """``kcenter@256`` -> ``kcenter-len256``: the label as a file and table name."""
    return label.replace("@", "-len")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- data
def build_pool(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` examples, half LIMA (single-turn and multi-turn) and half Alpaca, seeded."""
    lima = json.loads((SHARED / "pools" / "lima.json").read_text(encoding="utf-8"))
    alpaca = json.loads((SHARED / "pools" / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)
    chosen = [("lima", r) for r in rng.sample(lima, rows // 2)]
    chosen += [("alpaca", r) for r in rng.sample(alpaca, rows - rows // 2)]
    rng.shuffle(chosen)
    with path.open("w", encoding="utf-8") as fh:
        for source, record in chosen:
            fh.write(json.dumps({**record, "category": source}, ensure_ascii=False) + "\n")


def build_eval_set(
    path: Path, vicuna: int, wizardlm: int, alpaca_eval: int, seed: int = 0
) -> dict[str, int]:
    """Held-out questions with reference answers, ids prefixed by their set."""
    rng = random.Random(seed)
    rows = []

    from curate.files import jsonl_lines

    def jsonl(name: str) -> list[dict]:
        text = (SHARED / "eval" / name).read_text(encoding="utf-8")
        return [json.loads(line) for _, line in jsonl_lines(text)]

    vic = jsonl("vicuna_gpt35_answers.jsonl")
    for i in sorted(rng.sample(range(len(vic)), min(vicuna, len(vic)))):
        rows.append(
            {"id": f"vicuna-{i}", "instruction": vic[i]["text"], "output": vic[i]["answer"]}
        )
    wiz = jsonl("wizardlm_gpt35_answers.jsonl")
    for i in sorted(rng.sample(range(len(wiz)), min(wizardlm, len(wiz)))):
        rows.append(
            {
                "id": f"wizardlm-{i}",
                "instruction": wiz[i]["Instruction"],
                "output": wiz[i]["answer"],
            }
        )
    ae = json.loads((SHARED / "eval" / "alpaca_eval_gpt4_outputs.json").read_text(encoding="utf-8"))
    for i in sorted(rng.sample(range(len(ae)), min(alpaca_eval, len(ae)))):
        rows.append(
            {
                "id": f"alpacaeval-{i}",
                "instruction": ae[i]["instruction"],
                "output": ae[i]["output"],
            }
        )
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return {
        s: sum(r["id"].startswith(s) for r in rows) for s in ("vicuna", "wizardlm", "alpacaeval")
    }


# ----------------------------------------------------------------------------- runs
class Runner:
    def __init__(self, args: argparse.Namespace):
        import curate

        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.pool_file = self.work / "pool.jsonl"
        self.eval_file = self.work / "eval.jsonl"
        if not self.pool_file.exists():
            build_pool(self.pool_file, args.pool_rows)
        self.eval_counts = build_eval_set(
            self.eval_file, args.vicuna, args.wizardlm, args.alpaca_eval
        )
        self.pool = curate.Pool(self.work / "db")
        if len(self.pool) == 0:
            self.pool.ingest(self.pool_file)
        self.pool.embed(name="minilm")  # the fixed yardstick for Vendi; cached
        self.seconds: dict[str, float] = {}

    def timed(self, phase: str, fn, *a, **kw):
        started = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def subset(self, name: str, **select) -> Path:
        import curate

        out = self.work / "subsets" / name
        if not (out / "manifest.json").exists():
            selection = self.timed("select", self.pool.select, name=name, **select)
            curate.write_subset(selection, out)
        return out

    def model(self, subset: Path, name: str, seed: int) -> Path:
        import curate

        out = self.work / "models" / name
        if not (out / "train_metrics.json").exists():
            log(f"train {name}")
            self.timed(
                "train",
                curate.train,
                subset,
                "smollm2",
                out,
                epochs=self.args.epochs,
                lr=self.args.lr,
                max_length=self.args.max_length,
                batch_size=4,
                seed=seed,
                **self.precision,
            )
        return out

    def embeddings(self, model: Path, name: str, max_length: int) -> str:
        log(f"embed the pool with {model.name} ({max_length} tokens)")
        self.timed(
            "embed",
            self.pool.embed,
            f"lm:{model}",
            name,
            max_length=max_length,
            **self.precision,
        )
        return name

    def score(self, model: Path, name: str) -> Path:
        import curate

        out = self.work / "scores" / f"{name}.json"
        if not out.exists():
            log(f"score {name}")
            self.timed(
                "eval",
                curate.evaluate,
                model,
                self.eval_file,
                out=out,
                max_length=self.args.eval_max_length,
                **self.precision,
            )
        return out

    @property
    def precision(self) -> dict[str, str]:
        return {"precision": self.args.precision} if self.args.precision else {}

    def run(self, label: str, seed: int) -> Path:
        """Rounds 0..R-1 of one (strategy, seed); returns the last round's score file."""
        args = self.args
        strategy, embed_tokens = split_label(label)
        embed_tokens = embed_tokens or args.embed_max_length
        # embedding tables are named by the model and, when not the default, the length
        suffix = "" if embed_tokens == args.embed_max_length else f"_len{embed_tokens}"
        parent = self.subset(f"s{seed}-rd0", strategy="random", budget=args.init, seed=seed)
        model = self.model(parent, f"s{seed}-rd0", seed)
        needs_vectors = strategy != "random"
        for r in range(1, args.rounds):
            tag = f"s{seed}-{slug(label)}-rd{r}"
            embeddings = None
            if needs_vectors:
                previous = f"s{seed}-rd0" if r == 1 else f"s{seed}-{slug(label)}-rd{r - 1}"
                embeddings = self.embeddings(
                    model, f"m_{previous}".replace("-", "_") + suffix, embed_tokens
                )
            parent = self.subset(
                tag,
                strategy=strategy,
                parent=parent,
                add=args.add,
                seed=seed,
                embeddings=embeddings,
            )
            model = self.model(parent, tag, seed)
        return self.score(model, f"s{seed}-{slug(label)}")

    def run_full(self) -> Path:
        parent = self.subset("full", strategy="random", budget=len(self.pool), seed=0)
        return self.score(self.model(parent, "full", 0), "full")


# ----------------------------------------------------------------------------- table
def question_nll(score_file: Path) -> dict[str, float]:
    details = json.loads(score_file.with_name(f"{score_file.stem}.details.json").read_text())
    return {q["id"]: q["nll"] for q in details["questions"] if q.get("nll") is not None}


def subset_stats(runner: Runner, subset: Path) -> dict[str, float]:
    from curate.evaluation.diversity import evaluate_subset
    from curate.subsets import load_subset

    examples = load_subset(subset).examples
    metrics = evaluate_subset(runner.pool.store, subset, embeddings="minilm", metric="cosine")
    return {
        "vendi": metrics["vendi"],
        "lima_share": float(np.mean([e["category"] == "lima" for e in examples])),
        "mean_chars": float(np.mean([e["n_chars"] for e in examples])),
    }


def table(runner: Runner, scores: dict[str, dict[int, Path]]) -> dict:
    from curate.evaluation.compare import paired_bootstrap

    per_strategy = {
        s: {seed: question_nll(path) for seed, path in runs.items()} for s, runs in scores.items()
    }
    common = set.intersection(*(set(q) for runs in per_strategy.values() for q in runs.values()))
    questions = sorted(common)
    matrix = {
        s: np.array([[runs[seed][q] for q in questions] for seed in sorted(runs)])
        for s, runs in per_strategy.items()
    }
    rows = []
    base = matrix["random"]
    for strategy, m in matrix.items():
        seeds = sorted(per_strategy[strategy])
        last = runner.args.rounds - 1
        subsets = [
            runner.work
            / "subsets"
            / ("full" if strategy == "full" else f"s{seed}-{slug(strategy)}-rd{last}")
            for seed in seeds
        ]
        stats = [subset_stats(runner, s) for s in subsets]
        row = {
            "strategy": strategy,
            "seeds": seeds,
            "subset_size": len(json.loads((subsets[0] / "manifest.json").read_text())["picks"]),
            "nll": float(m.mean()),
            "vendi": float(np.mean([s["vendi"] for s in stats])),
            "lima_share": float(np.mean([s["lima_share"] for s in stats])),
            "mean_chars": float(np.mean([s["mean_chars"] for s in stats])),
            "round": last,
        }
        if strategy != "random":
            cmp = paired_bootstrap(m, base, n_boot=10_000, seed=0)
            row.update(
                delta=cmp["diff"],
                ci=[cmp["ci_low"], cmp["ci_high"]],
                better=float(np.mean(m.mean(axis=0) < base.mean(axis=0))),
            )
        rows.append(row)
    return {"questions": len(questions), "eval_sets": runner.eval_counts, "rows": rows}


def markdown(result: dict, args: argparse.Namespace, seconds: dict[str, float]) -> str:
    budget = args.init + args.add * (args.rounds - 1)
    lines = [
        f"Pool: {args.pool_rows} rows (half LIMA, half Alpaca sample, seeded); budget {budget} "
        f"({args.init} random + {args.add} × {args.rounds - 1} rounds); SmolLM2-135M-Instruct, "
        f"{args.epochs} epochs, lr {args.lr}, max length {args.max_length}, embeddings over "
        f"{args.embed_max_length} tokens, precision {args.precision or 'default'}.",
        f"Scored: mean answer NLL on {result['questions']} held-out questions "
        f"({', '.join(f'{k} {v}' for k, v in result['eval_sets'].items())}), "
        f"max length {args.eval_max_length}. Δ < 0 is better than random; interval: 95% "
        "bootstrap over seeds and questions.",
        "",
        "| strategy | seeds | n | mean NLL | Δ vs random | 95% interval | questions better | Vendi | LIMA share | mean chars |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        delta = f"{r['delta']:+.4f}" if "delta" in r else "—"
        ci = f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]" if "ci" in r else "—"
        better = f"{r['better']:.0%}" if "better" in r else "—"
        lines.append(
            f"| {r['strategy']} | {','.join(map(str, r['seeds']))} | {r['subset_size']} | "
            f"{r['nll']:.4f} | {delta} | {ci} | {better} | {r['vendi']:.2f} | "
            f"{r['lima_share']:.0%} | {r['mean_chars']:,.0f} |"
        )
    spent = ", ".join(f"{k} {v / 60:.1f} min" for k, v in sorted(seconds.items()))
    lines += ["", f"Time this sitting: {spent}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(ROOT.parent / "quality-work"))
    parser.add_argument("--pool-rows", type=int, default=400)
    parser.add_argument("--init", type=int, default=16)
    parser.add_argument("--add", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        help="strategy names; NAME@N runs NAME on embeddings over N tokens",
    )
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--embed-max-length", type=int, default=128)
    parser.add_argument("--eval-max-length", type=int, default=256)
    parser.add_argument("--vicuna", type=int, default=80)
    parser.add_argument("--wizardlm", type=int, default=40)
    parser.add_argument("--alpaca-eval", type=int, default=40)
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16")
    args = parser.parse_args()
    if not (SHARED / "pools" / "lima.json").exists():
        sys.exit(f"needs the shared data at {SHARED}")
    if "random" not in args.strategies:
        args.strategies.insert(0, "random")
    runner = Runner(args)
    started = time.perf_counter()
    scores: dict[str, dict[int, Path]] = {}
    for strategy in args.strategies:
        for seed in args.seeds:
            log(f"{strategy} seed {seed}")
            scores.setdefault(strategy, {})[seed] = runner.run(strategy, seed)
            write_results(runner, scores, args, started)
    if args.full:  # the upper line: one seed, the whole pool (the costliest run, so last)
        log("full pool")
        scores["full"] = {0: runner.run_full()}
        write_results(runner, scores, args, started)


def write_results(runner: Runner, scores, args, started: float) -> None:
    complete = {s: runs for s, runs in scores.items() if runs}
    if "random" not in complete:
        return
    result = table(runner, complete)
    result["wall_seconds"] = time.perf_counter() - started
    result["phase_seconds"] = runner.seconds
    result["settings"] = vars(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result, args, runner.seconds)
    (RESULTS / "quality.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
