"""`curate select`: choose a subset of the pool and write it as a versioned artifact."""

from __future__ import annotations

from contextlib import ExitStack
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption
from curate.cli._render import console, print_json, progress_bar
from curate.strategies import STRATEGIES
from curate.strategies.kcenter import DEVICES, METRICS

# --strategy/--metric/--device choices, built from the registry and the K-center module
StrategyName = Enum("StrategyName", [(n, n) for n in STRATEGIES], type=str)
MetricName = Enum("MetricName", [(n, n) for n in METRICS], type=str)
DeviceName = Enum("DeviceName", [(n, n) for n in DEVICES], type=str)


def select_command(
    db: DbOption = DEFAULT_DB_PATH,
    budget: Annotated[
        int | None,
        typer.Option("--budget", min=1, help="Total size of the new subset (parent included)."),
    ] = None,
    add: Annotated[
        int | None, typer.Option("--add", min=1, help="Parent size + K: add K rows to --parent.")
    ] = None,
    strategy: Annotated[
        StrategyName, typer.Option("--strategy", help="How to choose.")
    ] = StrategyName["kcenter"],
    embeddings: Annotated[
        str | None,
        typer.Option(
            "--embeddings", help="Embeddings name (kcenter, uncertainty). Default: the only one."
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
    metric: Annotated[MetricName, typer.Option("--metric", help="K-center distance.")] = MetricName[
        "euclidean"
    ],
    whiten: Annotated[
        int | None,
        typer.Option(
            "--whiten",
            min=1,
            help="K-center on PCA-whitened, normalised vectors with N components.",
        ),
    ] = None,
    device: Annotated[
        DeviceName, typer.Option("--device", help="Where K-center runs (auto: CUDA when present).")
    ] = DeviceName["auto"],
    json_out: JsonOption = False,
) -> None:
    """Select examples (K-center, random or an uncertainty baseline) into a subset folder.

    Writes DIR/examples.jsonl (pool rows in pick order) and DIR/manifest.json atomically;
    with --parent the parent's examples come first.
    """
    from curate.select import SelectRequest, select
    from curate.store import Store

    request = SelectRequest(
        strategy.value,
        budget,
        add,
        embeddings,
        parent,
        seed,
        out,
        name,
        metric.value,
        whiten,
        device.value,
    )
    with ExitStack() as stack:
        bar = {}

        def on_start(total: int) -> None:
            bar["advance"] = stack.enter_context(
                progress_bar(f"select {strategy.value}", total, unit="picks")
            )

        result = select(Store(db), request, on_start, lambda n: bar["advance"](n))
    manifest = result.subset.manifest
    summary = {
        "name": result.subset.name,
        "path": str(result.subset.path),
        "strategy": strategy.value,
        "size": len(result.subset.ids),
        "added": result.added,
        "parent": manifest.parent.to_dict() if manifest.parent else None,
        "embeddings": manifest.embeddings.to_dict() if manifest.embeddings else None,
        "coverage_radius": _last_distance(manifest.picks),
        "manifest_sha256": result.subset.manifest_sha256,
        "seconds": round(result.seconds, 3),
    }
    if json_out:
        print_json(summary)
        return
    table = Table(title=f"subset {summary['name']} → {summary['path']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("strategy", strategy.value)
    table.add_row("examples", f"{summary['size']:,} ({summary['added']:,} new)")
    if summary["parent"]:
        table.add_row("parent", summary["parent"]["name"])
    if summary["embeddings"]:
        table.add_row("embeddings", summary["embeddings"]["name"])
    if summary["coverage_radius"] is not None:
        table.add_row("coverage radius at last pick", f"{summary['coverage_radius']:.4g}")
    table.add_row("manifest sha256", summary["manifest_sha256"][:16])
    table.add_row("time", f"{summary['seconds']:.1f}s")
    console.print(table)


def _last_distance(picks: list[dict]) -> float | None:
    distances = [p["distance"] for p in picks if p.get("distance") is not None]
    return distances[-1] if distances else None


def register(app: typer.Typer) -> None:
    app.command("select")(select_command)
