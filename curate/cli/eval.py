"""`curate eval`: diversity of subsets, quality of models, and honest comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curate.cli._options import (
    DEFAULT_DB_PATH,
    DbOption,
    DeviceOption,
    JsonOption,
    PrecisionOption,
    settings_from,
)
from curate.cli._render import console, err_console, print_json, progress_renderer
from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION

eval_app = typer.Typer(
    help="Evaluate subsets (Vendi, coverage) and models (held-out NLL, answers, LLM judge).",
    no_args_is_help=True,
)

EmbeddingsOption = Annotated[
    str | None,
    typer.Option(
        "--embeddings",
        help="Embeddings table to measure diversity in (default: the subset's own). "
        "Use one fixed embedder to compare rounds.",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Metrics JSON to write (per-question values go to F.details.json)."),
]
EvalSetOption = Annotated[
    str,
    typer.Option(
        "--eval-set",
        help="Questions + reference answers: any source `curate ingest` reads (JSON, JSONL, "
        "Parquet, CSV, hf://; Alpaca, ShareGPT, messages, prompt/completion), or "
        "text|Instruction + answer as in Vicuna/WizardLM files.",
    ),
]
LimitOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="Score only the first N questions.")
]
MaxLengthOption = Annotated[
    int,
    typer.Option(
        "--max-length",
        min=8,
        help="Tokens per question+answer (longer answers are cut and counted; a question "
        "whose prompt alone fills it is skipped and counted).",
    ),
]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Questions per forward pass.")
]


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")

    def add(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                add(f"{prefix}{key}.", value)
            elif isinstance(value, float):
                table.add_row(prefix + key, f"{value:.4f}")
            else:
                table.add_row(prefix + key, f"{value:,}" if isinstance(value, int) else str(value))

    add("", metrics)
    return table


def _show(title: str, metrics: dict[str, Any], out: Path | None, json_out: bool) -> None:
    if json_out:
        print_json(metrics)
        return
    console.print(title, highlight=False, soft_wrap=True)
    console.print(_metrics_table(metrics))
    if out is not None:
        console.print(f"wrote {out}")


@eval_app.command("subset")
def subset_command(
    subset_dir: Annotated[
        Path, typer.Argument(help="Subset folder (manifest.json + examples.jsonl).")
    ],
    db: DbOption = DEFAULT_DB_PATH,
    embeddings: EmbeddingsOption = None,
    out: OutOption = None,
    json_out: JsonOption = False,
) -> None:
    """Size, Vendi score, coverage radius, categories and lengths of a subset."""
    from curate.evaluation.diversity import evaluate_subset
    from curate.evaluation.results import check_scalars, write_json
    from curate.store import Store

    metrics = evaluate_subset(Store(db), subset_dir, embeddings)
    if out is not None:
        check_scalars(metrics)
        write_json(out, metrics)
    _show(f"subset {subset_dir}", metrics, out, json_out)


@eval_app.command("model")
def model_command(
    model_dir: Annotated[
        str,
        typer.Argument(help="Model folder from `curate train` (or a model spec such as smollm2)."),
    ],
    eval_set: EvalSetOption,
    limit: LimitOption = None,
    max_length: MaxLengthOption = 1024,
    batch_size: BatchOption = 4,
    device: DeviceOption = DEFAULT_DEVICE,
    precision: PrecisionOption = DEFAULT_PRECISION,
    generate: Annotated[
        bool, typer.Option("--generate", help="Also generate answers (F.answers.jsonl).")
    ] = False,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Answer length cap.")
    ] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", min=0, max=2**32 - 1, help="Sampling seed (with --temperature > 0)."
        ),
    ] = 0,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            help="OpenAI-compatible endpoint URL (e.g. https://api.openai.com/v1); a query "
            "string stays after /chat/completions. Keys in the URL (user:KEY@host, ?api-key=) "
            "are sent but shown and stored as ***; prefer --judge-key-env.",
        ),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="Judge model name, e.g. gpt-4.")
    ] = None,
    judge_key_env: Annotated[
        str, typer.Option("--judge-key-env", help="Environment variable holding the judge API key.")
    ] = "OPENAI_API_KEY",
    judge_against: Annotated[
        Path | None,
        typer.Option(
            "--judge-against",
            help="Another model's answers (F.answers.jsonl) instead of the references.",
        ),
    ] = None,
    judge_timeout: Annotated[
        float, typer.Option("--judge-timeout", min=1.0, help="Seconds per judge request.")
    ] = 60.0,
    judge_workers: Annotated[
        int, typer.Option("--judge-workers", min=1, help="Concurrent judge requests.")
    ] = 4,
    out: OutOption = None,
    db: Annotated[
        Path,
        typer.Option("--db", help="Pool whose overlap with the eval set is warned about."),
    ] = DEFAULT_DB_PATH,
    json_out: JsonOption = False,
) -> None:
    """Held-out NLL of reference answers; --generate answers; --judge a pairwise LLM judge."""
    arguments = locals()  # every option, before anything else is named
    from curate.evaluation.model_eval import JudgeSettings, ModelEvalSettings, evaluate_model

    judge_settings = None
    if judge is not None:
        if judge_model is None:
            raise typer.BadParameter("--judge needs --judge-model NAME", param_hint="--judge-model")
        judge_settings = JudgeSettings(
            judge, judge_model, judge_key_env, judge_against, judge_timeout, judge_workers
        )
        generate = True
    settings = settings_from(ModelEvalSettings, arguments, generate=generate, judge=judge_settings)
    with progress_renderer() as progress:
        metrics, _ = evaluate_model(model_dir, eval_set, settings, out, progress)
    _show(f"model {model_dir} on {eval_set}", metrics, out, json_out)
    from curate.store import Store

    _warn_overlap(Store(db), eval_set)


@eval_app.command("round")
def round_command(
    subset: Annotated[Path, typer.Option("--subset", help="The round's subset folder.")],
    model: Annotated[str, typer.Option("--model", help="The model trained on that subset.")],
    eval_set: EvalSetOption,
    out: Annotated[Path, typer.Option("--out", help="Round metrics JSON (details beside it).")],
    db: DbOption = DEFAULT_DB_PATH,
    embeddings: EmbeddingsOption = None,
    limit: LimitOption = None,
    max_length: MaxLengthOption = 1024,
    batch_size: BatchOption = 4,
    device: DeviceOption = DEFAULT_DEVICE,
    precision: PrecisionOption = DEFAULT_PRECISION,
    json_out: JsonOption = False,
) -> None:
    """One pipeline round: subset diversity and model NLL in one metrics file for dvc."""
    arguments = locals()  # every option, before anything else is named
    from curate.evaluation.model_eval import ModelEvalSettings
    from curate.evaluation.rounds import evaluate_round
    from curate.store import Store

    settings = settings_from(ModelEvalSettings, arguments)
    with progress_renderer() as progress:
        metrics, _ = evaluate_round(
            Store(db), subset, model, embeddings, eval_set, settings, out, progress
        )
    _show(f"round {subset.name}", metrics, out, json_out)
    _warn_overlap(Store(db), eval_set)


def _warn_overlap(store, eval_set: str) -> None:
    """A warning line, with counts, when the eval set overlaps the pool (issue 19)."""
    from curate.hygiene.decontaminate import overlap_warning

    warning = overlap_warning(store, eval_set)
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _runs(value: str) -> list[Path]:
    return [Path(part) for part in value.split(",") if part]


@eval_app.command("compare")
def compare_command(
    a: Annotated[
        str, typer.Argument(help="Metrics JSON of side A (several seeds: A1.json,A2.json).")
    ],
    b: Annotated[
        str, typer.Argument(help="Metrics JSON of side B (several seeds: B1.json,B2.json).")
    ],
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=100, help="Bootstrap replicates.")
    ] = 10_000,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", min=0, max=2**32 - 1, help="Bootstrap seed (fixed: same inputs, same CI)."
        ),
    ] = 0,
    out: OutOption = None,
    json_out: JsonOption = False,
) -> None:
    """Paired difference A − B per question with a bootstrap 95% CI (NLL, judge score)."""
    from curate.evaluation.compare import compare_runs
    from curate.evaluation.results import write_json

    result = compare_runs(_runs(a), _runs(b), n_boot, seed)
    if out is not None:
        write_json(out, result)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"A = {a}  vs  B = {b}  (paired bootstrap, {n_boot:,} draws, seed {seed})")
    for column in ("metric", "questions", "A", "B", "A − B", "95% CI", "better"):
        table.add_column(column, justify="left" if column in ("metric", "better") else "right")
    for metric, stats in result.items():
        if isinstance(stats, dict):
            table.add_row(
                metric,
                str(stats["questions"]),
                f"{stats['mean_a']:.4f}",
                f"{stats['mean_b']:.4f}",
                f"{stats['diff']:+.4f}",
                f"[{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}]",
                stats["better"],
            )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
