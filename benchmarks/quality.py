"""Selection quality, second edition: does a strategy beat random, above the noise?

DiverseEvol's loop on a seeded sample of the shared pools (LIMA + the Alpaca sample,
``../shared/data/pools``), with SmolLM2-135M-Instruct, at each of ``--budgets`` (fractions
of the pool: 5% and 10%) over ``--rounds`` rounds:

- round 0: ``--init-share`` of the budget drawn at random (per seed and budget; every
  strategy of that seed shares it), fine-tuned from the base weights;
- each later round: the pool embedded with the previous round's model (``lm:``, mean of
  the last hidden layer; with the IFD and uncertainty scores when a strategy reads them;
  strategies that read neither skip it), an equal share of the rest of the budget chosen
  by the strategy, a new model fine-tuned from the base weights on the grown subset;
- the last round's model scored by mean answer NLL on held-out questions with reference
  answers (Vicuna, WizardLM, an AlpacaEval slice: ``../shared/data/eval``), which no
  strategy or parameter here was tuned on (every strategy runs with its defaults).

References: ``random`` (every Δ is against it), ``longest`` (the baseline most selectors
fail to beat) and ``full`` (the whole sampled pool, one seed: an upper line). Beside each
Δ, the noise floor: the spread (sd, range) of random's per-seed mean NLL, and of one model
(random, the first seed, last round) over its last ``--checkpoints`` checkpoints, each
saved ``--checkpoint-gap`` of the run's steps apart and scored like a final model. The
intervals are ``curate report``'s own code (``quality_table.py``).

Resumable: every subset, model, embedding table and score lives under ``--work`` and is
reused on the next run. Results go to ``benchmarks/results/<--results>.{md,json}``; each
finished run's scores (per-question NLLs, no question text) and its subset's statistics
are also kept in ``benchmarks/results/<--results>-runs/``, committed with the table, so a
run that loses ``--work`` (a new machine) resumes from what was committed: a run found
there is not trained again.

    python benchmarks/quality.py                       # the CPU table (sizing: benchmarks/README.md)
    python benchmarks/quality.py --profile gpu         # the paper's shape on one GPU
    python benchmarks/quality.py --seeds 0 --pool-rows 40 --strategies random ifd  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # quality_table beside this file
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = (  # in run order: a finished strategy is a finished row of the table
    "random",
    "longest",
    "kcenter",
    "kcenter-robust",  # the best two of the first edition, by Δ
    "cluster-sample",
    "typical",
    "ifd",
    "ifd-diverse",
)
PROFILES = {
    # Sized in benchmarks/README.md ("quality.py, second edition"): about 4 h on 2 cores.
    "cpu": {
        "pool_rows": 200, "vicuna": 50, "wizardlm": 25, "alpaca_eval": 25, "budgets": [0.05, 0.1], "rounds": 3, "epochs": 2.0, "lr": 1e-4,
        "batch_size": 4, "max_length": 256, "embed_max_length": 128, "eval_max_length": 256,
        "seeds": [0, 1, 2, 3, 4], "strategies": list(STRATEGIES), "results": "quality2",
        "work": str(ROOT.parent / "quality2-work"),
    },
    # All of ../shared/data/pools, 10%, 4 rounds, 3 epochs, 512 tokens: sized for 10 min on
    # one H200 (benchmarks/README.md); benchmarks/quality_gpu.sh runs it.
    "gpu": {
        "pool_rows": 0, "vicuna": 80, "wizardlm": 40, "alpaca_eval": 40, "budgets": [0.1], "rounds": 4, "epochs": 3.0, "lr": 1e-4,
        "batch_size": 16, "max_length": 512, "embed_max_length": 512, "eval_max_length": 512,
        "seeds": [0, 1, 2, 3, 4], "strategies": ["random", "kcenter", "ifd"],
        "results": "quality_gpu", "work": str(ROOT.parent / "quality-gpu-work"),
    },
}  # fmt: skip


def split_label(label: str) -> tuple[str, int | None]:
    """``kcenter``, or ``kcenter@256``: the strategy on lm: embeddings over 256 tokens."""
    strategy, _, tokens = label.partition("@")
    return strategy, int(tokens) if tokens else None


def slug(label: str) -> str:
    return label.replace("@", "-len")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- data
from quality_data import build_eval_set, build_pool  # noqa: E402  (beside this file)
from quality_table import details  # noqa: E402


def plan(budget: int, rounds: int, init_share: float) -> tuple[int, int]:
    """(round-0 rows, rows added per later round) that sum to ``budget``."""
    add = max(1, round(budget * (1 - init_share) / (rounds - 1))) if rounds > 1 else 0
    return budget - add * (rounds - 1), add


# ----------------------------------------------------------------------------- checkpoints
@contextmanager
def snapshots(folder: Path, count: int, gap: float):
    """While open, every ``Trainer.train`` also saves the model (and tokenizer) at its last
    ``count`` optimizer steps ``gap`` of the run apart (the last step included) into
    ``folder/step-N``: the checkpoints the noise floor scores. A benchmark-side callback,
    so training itself is untouched."""
    from transformers import Trainer, TrainerCallback

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
            every = max(1, round(gap * state.max_steps))
            steps = {state.max_steps - j * every for j in range(count)}
            if state.global_step in steps and state.is_world_process_zero:
                out = folder / f"step-{state.global_step:05d}"
                partial = folder / f".step-{state.global_step:05d}"
                shutil.rmtree(partial, ignore_errors=True)
                model.save_pretrained(partial)
                processing_class.save_pretrained(partial)
                shutil.rmtree(out, ignore_errors=True)
                partial.rename(out)

    original = Trainer.train

    def train(self, *args, **kwargs):
        self.add_callback(Snapshot())
        return original(self, *args, **kwargs)

    Trainer.train = train
    try:
        yield
    finally:
        Trainer.train = original


# ----------------------------------------------------------------------------- runs
class Runner:
    def __init__(self, args: argparse.Namespace):
        import curate
        from curate.strategies import STRATEGIES as REGISTRY

        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.pool_file = self.work / "pool.jsonl"
        self.eval_file = self.work / "eval.jsonl"
        if not self.pool_file.exists():
            build_pool(self.pool_file, args.pool_rows)
        self.eval_counts = build_eval_set(self.eval_file, args.vicuna, args.wizardlm, args.alpaca_eval)  # fmt: skip
        self.pool = curate.Pool(self.work / "db")
        if len(self.pool) == 0:
            self.pool.ingest(self.pool_file)
        # The fixed yardstick for Vendi (cached): torch MiniLM up to its 256-token limit, the
        # embedding the table started with, whatever curate's default embedder becomes.
        self.pool.embed("st:minilm", name="minilm", max_length=512)
        self.seconds: dict[str, float] = {}
        self.archive = RESULTS / f"{args.results}-runs"
        self.archive.mkdir(parents=True, exist_ok=True)
        self.stats_file = self.archive / "subsets.json"
        self.stats = json.loads(self.stats_file.read_text()) if self.stats_file.exists() else {}
        kinds = [REGISTRY.get(split_label(s)[0]) for s in args.strategies]
        self.reads = {
            s: (k.needs_vectors, bool(k.reads_scores))
            for s, k in zip(args.strategies, kinds, strict=True)
        }
        # the round-0 table is shared by every strategy of a seed: scored once if any needs it
        self.shared_scores = any(k.reads_scores for k in kinds)

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

    def model(self, subset: Path, name: str, seed: int, keep: Path | None = None) -> Path:
        import curate

        out = self.work / "models" / name
        if not (out / "train_metrics.json").exists():
            log(f"train {name}")
            args = self.args
            with snapshots(keep, args.checkpoints, args.checkpoint_gap) if keep else nullcontext():
                self.timed(
                    "train", curate.train, subset, "smollm2", out, epochs=args.epochs, lr=args.lr,
                    max_length=args.max_length, batch_size=args.batch_size, seed=seed,
                    precision=args.precision,
                )  # fmt: skip
        return out

    def embeddings(self, model: Path, name: str, max_length: int, scores: bool) -> str:
        log(f"embed the pool with {model.name} ({max_length} tokens{', scores' if scores else ''})")
        self.timed(
            "embed", self.pool.embed, f"lm:{model}", name, max_length=max_length,
            precision=self.args.precision, scores=scores,
        )  # fmt: skip
        return name

    def score(self, model: Path, name: str) -> Path:
        """The scores of ``model`` (its copy in the archive): evaluated unless kept."""
        import curate

        kept = self.archive / f"{name}.json"
        if kept.exists():
            return kept
        out = self.work / "scores" / f"{name}.json"
        if not out.exists():
            log(f"score {name}")
            self.timed(
                "eval", curate.evaluate, model, self.eval_file, out=out,
                max_length=self.args.eval_max_length, precision=self.args.precision,
            )  # fmt: skip
        shutil.copyfile(details(out), details(kept))  # details first: a kept score has them
        shutil.copyfile(out, kept)
        return kept

    def subset_stats(self, name: str) -> dict[str, float]:
        """Size, Vendi score (MiniLM, cosine), LIMA share and mean characters of a subset,
        computed once from ``--work`` and kept in the archive."""
        if name not in self.stats:
            self.stats[name] = subset_stats(self.pool, self.work / "subsets" / name)
            partial = self.stats_file.with_suffix(".json.partial")
            partial.write_text(json.dumps(self.stats, indent=1, sort_keys=True) + "\n")
            partial.replace(self.stats_file)
        return self.stats[name]

    def finished(self, name: str, subset: str) -> Path | None:
        """The kept scores of a finished run, if both they and its subset's stats are kept."""
        kept = self.archive / f"{name}.json"
        return kept if kept.exists() and subset in self.stats else None

    def checkpoints_of(self, budget: int) -> Path:
        return self.work / "checkpoints" / f"b{budget}-s{self.args.seeds[0]}-random"

    def run(self, label: str, seed: int, budget: int) -> Path:
        """Rounds 0..R-1 of one (strategy, seed, budget); returns the last model's scores."""
        args = self.args
        strategy, embed_tokens = split_label(label)
        embed_tokens = embed_tokens or args.embed_max_length
        suffix = "" if embed_tokens == args.embed_max_length else f"_len{embed_tokens}"
        init, add = plan(budget, args.rounds, args.init_share)
        head = f"b{budget}-s{seed}"
        last = args.rounds - 1
        name = f"{head}-{slug(label)}"
        done = self.finished(name, f"{name}-rd{last}")
        if done:
            self.prune(self.rounds_of(name))
            return done
        parent = self.subset(f"{head}-rd0", strategy="random", budget=init, seed=seed)
        model = self.model(parent, f"{head}-rd0", seed)
        vectors, scores = self.reads[label]
        for r in range(1, args.rounds):
            tag = f"{name}-rd{r}"
            embeddings = None
            if vectors or scores:
                previous = f"{head}-rd0" if r == 1 else f"{name}-rd{r - 1}"
                table = f"m_{previous}".replace("-", "_") + suffix
                with_scores = scores or (r == 1 and self.shared_scores)
                embeddings = self.embeddings(model, table, embed_tokens, with_scores)
            parent = self.subset(
                tag, strategy=strategy, parent=parent, add=add, seed=seed, embeddings=embeddings
            )
            noise = label == "random" and seed == args.seeds[0] and r == last and args.checkpoints > 1  # fmt: skip
            model = self.model(parent, tag, seed, self.checkpoints_of(budget) if noise else None)
        scores_file = self.score(model, name)
        self.subset_stats(parent.name)
        self.prune(self.rounds_of(name))
        return scores_file

    def rounds_of(self, run: str) -> list[str]:
        """The models of a run after round 0 (which the seed's other strategies share)."""
        return [f"{run}-rd{r}" for r in range(1, self.args.rounds)]

    def prune(self, models: list[str]) -> None:
        """Delete models of a finished run, whose scores and subset statistics are archived
        (≈540 MB each in fp32: a table's models would fill the disk), unless --keep-models."""
        if not self.args.keep_models:
            for name in models:
                shutil.rmtree(self.work / "models" / name, ignore_errors=True)

    def checkpoint_scores(self, budget: int) -> dict[int, Path]:
        """Scores of the saved last checkpoints of random's first-seed, last-round model."""
        folder = self.checkpoints_of(budget)
        saved = {p.name for p in folder.glob("step-*")} if folder.is_dir() else set()
        kept = {
            p.stem.removeprefix(f"{folder.name}-")
            for p in self.archive.glob(f"{folder.name}-step-*.json")
            if not p.name.endswith(".details.json")
        }
        return {
            int(step[5:]): self.score(folder / step, f"{folder.name}-{step}")
            for step in sorted(saved | kept)
        }

    def run_full(self) -> Path:
        done = self.finished("full", "full")
        if done:
            return done
        parent = self.subset("full", strategy="random", budget=len(self.pool), seed=0)
        scores_file = self.score(self.model(parent, "full", 0), "full")
        self.subset_stats("full")
        self.prune(["full"])
        return scores_file


# ----------------------------------------------------------------------------- table
def subset_stats(pool, subset: Path) -> dict[str, float]:
    from curate.evaluation.diversity import evaluate_subset
    from curate.subsets import load_subset

    examples = load_subset(subset).examples
    metrics = evaluate_subset(pool.store, subset, embeddings="minilm", metric="cosine")
    return {
        "picks": len(examples),
        "vendi": float(metrics["vendi"]),
        "lima_share": float(np.mean([e["category"] == "lima" for e in examples])),
        "mean_chars": float(np.mean([e["n_chars"] for e in examples])),
    }


def mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([s[key] for s in stats])) for key in ("vendi", "lima_share", "mean_chars")}  # fmt: skip


def write_results(runner: Runner, scores: dict, full: dict[int, Path], started: float) -> None:
    from quality_table import budget_table, markdown

    args = runner.args
    tables = []
    last = args.rounds - 1
    for fraction in args.budgets:
        budget = round(fraction * len(runner.pool))
        done = {label: runs for (b, label), runs in scores.items() if b == budget and runs}
        if "random" not in done:
            continue
        if full:
            done["full"] = full
        sizes, stats = {}, {}
        for label, runs in done.items():
            names = ["full"] if label == "full" else [f"b{budget}-s{s}-{slug(label)}-rd{last}" for s in runs]  # fmt: skip
            per_subset = [runner.subset_stats(name) for name in names]
            sizes[label] = int(per_subset[0]["picks"])
            stats[label] = mean_stats(per_subset)
        table = budget_table(budget, last, done, sizes, runner.checkpoint_scores(budget), stats)
        init, add = plan(budget, args.rounds, args.init_share)
        table["plan"] = (
            f"{fraction:.0%} of the pool: {init} random + {add} × {args.rounds - 1} rounds"
        )
        tables.append(table)
    if not tables:
        return
    settings = {**vars(args), "pool_desc": "every row of LIMA and the Alpaca sample" if not args.pool_rows else "half LIMA, half the Alpaca sample, seeded"}  # fmt: skip
    result = {
        "pool_rows": len(runner.pool),
        "eval_sets": runner.eval_counts,
        "budgets": tables,
        "wall_seconds": time.perf_counter() - started,
        "phase_seconds": runner.seconds,
        "settings": settings,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result, settings, runner.seconds)
    (RESULTS / f"{args.results}.md").write_text(text)
    print(text, flush=True)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    profile = pre.parse_known_args(argv)[0].profile
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[pre])
    parser.add_argument("--work", help="where every subset, model, table and score is kept")
    parser.add_argument("--results", help="benchmarks/results/<name>.{md,json}")
    parser.add_argument("--pool-rows", type=int, help="0: every row of both pools")
    parser.add_argument("--budgets", type=float, nargs="+", help="fractions of the pool")
    parser.add_argument("--init-share", type=float, default=0.4, help="of the budget, in round 0")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--strategies", nargs="+", help="names; NAME@N: lm: embeddings over N tokens")  # fmt: skip
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--checkpoints", type=int, default=3, help="last checkpoints scored for the noise floor (0: none)")  # fmt: skip
    parser.add_argument("--checkpoint-gap", type=float, default=0.1, help="between them, as a share of the run's steps")  # fmt: skip
    parser.add_argument("--keep-models", action="store_true", help="keep every round's model (default: a finished run's are deleted)")  # fmt: skip
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--embed-max-length", type=int)
    parser.add_argument("--eval-max-length", type=int)
    parser.add_argument("--vicuna", type=int)
    parser.add_argument("--wizardlm", type=int)
    parser.add_argument("--alpaca-eval", type=int)
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16")
    parser.set_defaults(**PROFILES[profile])
    args = parser.parse_args(argv)
    if "random" not in args.strategies:
        args.strategies.insert(0, "random")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (round 0 is random)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not (SHARED / "pools" / "lima.json").exists():
        sys.exit(f"needs the shared data at {SHARED}")
    runner = Runner(args)
    started = time.perf_counter()
    scores: dict = {}
    budgets = [round(f * len(runner.pool)) for f in args.budgets]
    for budget in budgets:  # the smaller budget first: a finished budget is a finished table
        for label in args.strategies:
            for seed in args.seeds:
                log(f"budget {budget}: {label} seed {seed}")
                scores.setdefault((budget, label), {})[seed] = runner.run(label, seed, budget)
                write_results(runner, scores, {}, started)
    if args.full:  # the upper line: one seed, the whole pool (the costliest run, so last)
        log("full pool")
        write_results(runner, scores, {0: runner.run_full()}, started)


if __name__ == "__main__":
    main()
