"""`curate embed`: a vector for every pool row, cached by embedder fingerprint and row hash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, DeviceOption, JsonOption, PrecisionOption
from curate.cli._render import console, err_console, print_json, progress_renderer
from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION


def embed_command(
    db: DbOption = DEFAULT_DB_PATH,
    embedder: Annotated[
        str | None,
        typer.Option(
            "--embedder",
            help="st:<path|hub-id> (sentence-transformers), lm:<path|hub-id|smollm2> (causal LM, "
            "mean of the last hidden layer) or gguf:<file>. "
            "Default: st:minilm, the offline all-MiniLM-L6-v2.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Embeddings name (table emb_<name>). Default: from the spec, e.g. minilm.",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Most rows per forward pass. Default: 32 for st:; for lm: up to 64 rows and "
            "4,096 padded tokens (short rows share big batches).",
        ),
    ] = None,
    max_length: Annotated[
        int,
        typer.Option(
            "--max-length",
            min=8,
            help="Truncate each example to this many tokens (a model's own limit caps it: "
            "MiniLM 256).",
        ),
    ] = 512,
    device: DeviceOption = DEFAULT_DEVICE,
    precision: PrecisionOption = DEFAULT_PRECISION,
    import_file: Annotated[
        Path | None,
        typer.Option(
            "--import",
            help="Import vectors computed elsewhere (.parquet, .npz or structured .npy with "
            "`id` and `vector`) instead of embedding.",
        ),
    ] = None,
    for_strategy: Annotated[
        str | None,
        typer.Option(
            "--for-strategy",
            help="Embed only if this selection strategy reads vectors or scores; otherwise "
            "load no model and leave the table as it is (created empty if missing). The "
            "pipeline's per-round stages pass ${strategy}, so `random` skips them.",
        ),
    ] = None,
    scores: Annotated[
        bool,
        typer.Option(
            "--scores",
            help="Store lm:'s uncertainty scores too (least confidence, margin, entropy: the LM "
            "head over the vocabulary for every response token) and IFD (one more pass over "
            "the answer alone). Implied by --for-strategy with a strategy that reads them.",
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Embed every pool row; reuse vectors whose embedder and content are unchanged.

    Resumable: rerun after a crash and it continues from the last checkpoint. Data-parallel under `torchrun` or `accelerate launch`: each rank embeds a shard.
    """  # noqa: E501 - one paragraph per line, so --help wraps it to the terminal
    from curate.embed import EmbedSkipped, embed
    from curate.launch import launched_rank
    from curate.store import Store

    if import_file is not None and embedder is not None:
        raise typer.BadParameter(
            "give either --embedder or --import, not both", param_hint="--import"
        )
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our bar, not transformers'
    with progress_renderer() as progress:
        report = embed(
            Store(db),
            embedder,
            name,
            import_file=import_file,
            for_strategy=for_strategy,
            max_length=max_length,
            device=device,
            precision=precision,
            batch_size=batch_size,
            scores=scores,
            progress=progress,
            loading=lambda spec: err_console.status(f"loading {spec}"),
        )
    if launched_rank() != 0:  # only rank 0 renders
        return
    if isinstance(report, EmbedSkipped):
        if json_out:
            print_json(report.to_dict())
        else:
            console.print(
                f"embeddings {report.name!r}: skipped (strategy {report.strategy} reads none)"
            )
        return
    _render(report, json_out)


def _render(report, json_out: bool) -> None:
    if json_out:
        print_json(report)
        return
    table = Table(title=f"embeddings {report.name!r} (table {report.table})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("embedder", report.embedder)
    table.add_row("fingerprint", report.fingerprint)
    table.add_row("dimension", str(report.dim))
    if report.embedded and not report.embedder.startswith("import:"):
        table.add_row("precision", report.precision)
    table.add_row("pool rows", f"{report.pool_rows:,}")
    table.add_row("embedded", f"{report.embedded:,}")
    table.add_row("reused", f"{report.reused:,}")
    if report.removed:
        table.add_row("stale rows replaced", f"{report.removed:,}")
    if report.ranks > 1:
        table.add_row("ranks", str(report.ranks))
    table.add_row("seconds", f"{report.seconds:.1f}")
    if report.embedded and not report.embedder.startswith("import:"):
        table.add_row("examples/s", f"{report.examples_per_s:,.1f}")
    if report.padding is not None:
        table.add_row("padding", f"{report.padding:.1%}")
    console.print(table)


def register(app: typer.Typer) -> None:
    from curate.cli.plugin_options import PluginHelpCommand

    def embedders():
        from curate.embedders.registry import EMBEDDERS

        return EMBEDDERS

    help_command = PluginHelpCommand.for_registry(embedders, "Embedders (the spec's prefix)")
    app.command("embed", cls=help_command)(embed_command)
