"""`curate train`: fine-tune the base model on a subset, writing an HF model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curate.cli._options import DeviceOption, JsonOption, PrecisionOption, settings_from
from curate.cli._render import console, print_json, progress_renderer
from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION


def train_command(
    subset_dir: Annotated[
        Path, typer.Argument(help="Subset folder (manifest.json + examples.jsonl).")
    ],
    base_model: Annotated[
        str,
        typer.Option(
            "--base-model",
            help="Base weights: a local HF folder, a Hub id, a .gguf file, or `smollm2` (offline).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Model folder to write (replaced atomically).")
    ],
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the subset.")] = 3.0,
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (cosine, 3% warmup).")
    ] = 2e-5,
    max_length: Annotated[
        int, typer.Option("--max-length", min=2, help="Tokens per example (longer ones are cut).")
    ] = 512,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Examples per device step.")
    ] = 4,
    grad_accum: Annotated[
        int, typer.Option("--grad-accum", min=1, help="Micro-batches per optimizer step.")
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed for batch order and LoRA init.")] = 0,
    lora: Annotated[
        int, typer.Option("--lora", min=0, help="Train a LoRA of this rank and merge it (0: full).")
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")
    ] = False,
    device: DeviceOption = DEFAULT_DEVICE,
    precision: PrecisionOption = DEFAULT_PRECISION,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after N optimizer steps.")
    ] = None,
    save_steps: Annotated[
        int | None,
        typer.Option("--save-steps", min=1, help="Checkpoint every N steps (default: each epoch)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Fine-tune --base-model, from its original weights, on SUBSET_DIR (loss on responses).

    Checkpoints go to a work folder beside --out and are removed once the model is in place; an interrupted run keeps them for --resume.
    """  # noqa: E501 - one line per paragraph: rich re-wraps --help text
    arguments = locals()  # every option, before anything else is named
    from transformers.utils import logging as hf_logging

    from curate.training import TrainConfig, train

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    config = settings_from(TrainConfig, arguments)
    with progress_renderer() as progress:
        result = train(subset_dir, out, config, resume=resume, progress=progress)
    metrics = result.metrics
    if not result.is_main_process:
        return
    if json_out:
        print_json(result)
        return
    console.print(_summary(metrics, out))


def _summary(metrics: dict[str, Any], out: Path) -> Table:
    timing, data = metrics["timing"], metrics["data"]
    first = metrics["loss_history"][0]["loss"] if metrics["loss_history"] else None
    table = Table(title=f"train → {out}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("subset", f"{metrics['subset']['name']} ({data['examples']:,} examples)"),
        ("steps / epochs", f"{metrics['steps']:,} / {metrics['epochs']:.2f}"),
        (
            "loss first → last",
            f"{first:.4f} → {metrics['final_loss']:.4f}" if first is not None else "-",
        ),
        ("tokens seen", f"{metrics['tokens_seen']:,}"),
        ("cut at --max-length", f"{data['at_max_length']:,}"),
        ("seconds / step", f"{timing['seconds_per_step']}"),
        ("precision", metrics["precision"]),
        ("tokens / s", f"{timing['tokens_per_second']}"),
        ("padding", f"{timing['padding_fraction']:.1%}"),
    ]
    if timing["resumed_from_step"]:
        rows.append(("resumed from step", str(timing["resumed_from_step"])))
    if data["dropped_no_response"]:
        rows.append(("dropped (no response left)", f"{data['dropped_no_response']:,}"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
