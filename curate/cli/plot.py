"""`curate plot`: metrics per round and a 2-D map of the pool, as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption
from curate.cli._render import console, print_json


def plot_command(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Folders of round metrics (rd_0.json, rd_1.json, … from `curate eval round`)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs and rounds.tsv.")] = Path(
        "plots"
    ),
    db: DbOption = DEFAULT_DB_PATH,
    embeddings: Annotated[
        str | None,
        typer.Option("--embeddings", help="Embeddings for the pool map (with --subset)."),
    ] = None,
    subsets: Annotated[
        list[Path] | None,
        typer.Option(
            "--subset", help="Subset folders in round order, for the pool map (repeat the option)."
        ),
    ] = None,
    projection: Annotated[
        str, typer.Option("--projection", help="pca, or umap if umap-learn is installed.")
    ] = "pca",
    json_out: JsonOption = False,
) -> None:
    """Metric-per-round PNGs (Vendi, coverage radius, NLL) and a pool map coloured by round."""
    from curate.evaluation.plots import plot_pool_map, plot_rounds
    from curate.store import Store

    if not runs and not subsets:
        raise typer.BadParameter("give metrics folders and/or --subset folders for the pool map")
    if subsets and embeddings is None:
        raise typer.BadParameter("the pool map needs --embeddings NAME", param_hint="--embeddings")
    written = plot_rounds(runs, out) if runs else []
    if subsets and embeddings is not None:  # (checked above: subsets need embeddings)
        written.append(
            plot_pool_map(Store(db), embeddings, subsets, out / "pool_map.png", projection)
        )
    if json_out:
        print_json({"written": [str(p) for p in written]})
        return
    for path in written:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("plot")(plot_command)
