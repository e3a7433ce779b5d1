"""`curate select`: choose a subset of the pool and write it as a versioned artifact."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, DeviceOption, JsonOption
from curate.cli._render import console, err_console, print_json, progress_renderer
from curate.cli.plugin_options import PluginHelpCommand, command_options, parse_plugin_options
from curate.devices import DEFAULT_DEVICE


def select_command(
    ctx: typer.Context,
    db: DbOption = DEFAULT_DB_PATH,
    budget: Annotated[
        int | None,
        typer.Option("--budget", min=1, help="Total size of the new subset (parent included)."),
    ] = None,
    add: Annotated[
        int | None, typer.Option("--add", min=1, help="Parent size + K: add K rows to --parent.")
    ] = None,
    strategy: Annotated[
        str,
        typer.Option("--strategy", help="How to choose (the strategies are listed below)."),
    ] = "kcenter",
    embeddings: Annotated[
        str | None,
        typer.Option(
            "--embeddings",
            help="Embeddings name. Default: the only one; with none yet, the pool is embedded "
            "with all-MiniLM-L6-v2 first (as `curate embed`).",
        ),
    ] = None,
    parent: Annotated[
        Path | None, typer.Option("--parent", help="Subset folder whose examples come first.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for random picks and K-center's first center.")
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Subset folder to write. Default: data/subsets/<name>."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Subset name. Default: the --out folder's name, else <strategy>-<budget>-s<seed>.",
        ),
    ] = None,
    whole_pool: Annotated[
        bool,
        typer.Option("--whole-pool", help="Every pool row (the full-data reference run)."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a different subset at --out (never a folder that is not one)."
        ),
    ] = False,
    include_duplicates: Annotated[
        bool, typer.Option("--include-duplicates", help="Also choose rows `curate dedup` flagged.")
    ] = False,
    include_contaminated: Annotated[
        bool,
        typer.Option(
            "--include-contaminated", help="Also choose rows `curate decontaminate` flagged."
        ),
    ] = False,
    device: DeviceOption = DEFAULT_DEVICE,
    json_out: JsonOption = False,
) -> None:
    """Select examples into a subset folder (DiverseEvol's K-center by default).

    Writes DIR/examples.jsonl (pool rows in pick order) and DIR/manifest.json atomically;
    with --parent the parent's examples come first. A strategy's own parameters are
    options too, e.g. `--metric cosine` (listed below).
    """
    from curate.select import SelectRequest, select
    from curate.store import Store

    request = SelectRequest(
        strategy=strategy,
        params=parse_plugin_options(ctx.args, _strategies().get(strategy), command_options(ctx)),
        budget=budget,
        add=add,
        embeddings=embeddings,
        parent=parent,
        seed=seed,
        name=name or (Path(os.path.abspath(out)).name if out else None),
        device=device,
        whole_pool=whole_pool,
        include_duplicates=include_duplicates,
        include_contaminated=include_contaminated,
    )
    with progress_renderer() as progress:
        # a pool with no embeddings gets the default embedder's first, as it always has
        selection = _select_on_ranks(
            partial(select, embed_missing=True), Store(db), request, progress
        )
    if selection is None:  # a torchrun rank other than 0: rank 0 writes and renders
        return
    for warning in selection.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    subset = selection.write(out, force=force)
    summary = {
        **selection.to_dict(),
        "path": str(subset.path),
        "manifest_sha256": subset.manifest_sha256,
    }
    if json_out:
        print_json(summary)
        return
    console.print(_table(summary))


def _select_on_ranks(select, store, request, progress):
    """``select``; under torchrun only rank 0 shows progress and the error line (every rank
    exits with the same code)."""
    from curate.errors import CurateError
    from curate.launch import launched, launched_rank
    from curate.progress import NO_PROGRESS

    if not launched():
        return select(store, request, progress)
    quiet = launched_rank() != 0
    try:
        return select(store, request, NO_PROGRESS if quiet else progress)
    except CurateError as err:
        if quiet:
            raise typer.Exit(err.exit_code) from None
        raise


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"subset {summary['name']} → {summary['path']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("strategy", summary["strategy"])
    for key, value in summary["params"].items():
        if key != "added":
            table.add_row(f"  {key}", str(value))
    table.add_row("examples", f"{summary['size']:,} ({summary['added']:,} new)")
    if summary["parent"]:
        table.add_row("parent", summary["parent"]["name"])
    if summary["embeddings"]:
        table.add_row("embeddings", summary["embeddings"]["name"])
    if summary["embedded"]:
        table.add_row("embedded first", f"{summary['embedded']:,} rows")
    for kind, ref in (summary["hygiene"] or {}).items():
        table.add_row(
            f"left out ({kind})", f"{ref['flagged']:,} rows (hyg_{kind} v{ref['version']})"
        )
    if summary["coverage_radius"] is not None:
        table.add_row("coverage radius at last pick", f"{summary['coverage_radius']:.4g}")
    table.add_row("manifest sha256", summary["manifest_sha256"][:16])
    if summary.get("ranks", 1) > 1:
        table.add_row("ranks", str(summary["ranks"]))
    table.add_row("time", f"{summary['seconds']:.1f}s")
    return table


def _strategies():
    from curate.strategies import STRATEGIES

    return STRATEGIES


def register(app: typer.Typer) -> None:
    title = "Strategies and their parameters (options of the chosen one)"
    app.command(
        "select",
        cls=PluginHelpCommand.for_registry(_strategies, title),
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(select_command)
