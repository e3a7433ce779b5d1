"""`curate pool`: what the pool holds."""

from __future__ import annotations

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption
from curate.cli._render import console, print_json


def pool_command(db: DbOption = DEFAULT_DB_PATH, json_out: JsonOption = False) -> None:
    """Show rows, sources, categories, duplicates dropped, lengths and table version."""
    from curate.pool import summarize
    from curate.store import Store

    summary = summarize(Store(db))
    if json_out:
        print_json(summary)
        return
    overview = Table(title=f"pool at {summary['db']}", show_header=False)
    overview.add_column(style="bold")
    overview.add_column(justify="right")
    overview.add_row("rows", f"{summary['rows']:,}")
    overview.add_row("multi-turn rows", f"{summary['multi_turn']:,}")
    overview.add_row("duplicates dropped at ingest", f"{summary['duplicates_dropped']:,}")
    overview.add_row("table version", str(summary["version"]))
    overview.add_row(
        "length (chars) " + "/".join(summary["n_chars_percentiles"]),
        " / ".join(f"{v:,}" for v in summary["n_chars_percentiles"].values()),
    )
    console.print(overview)
    for title, counts in (("sources", summary["sources"]), ("categories", summary["categories"])):
        if counts:
            table = Table(title=title)
            table.add_column(title[:-1] if title == "sources" else "category")
            table.add_column("rows", justify="right")
            for key, value in counts.items():
                table.add_row(str(key), f"{value:,}")
            console.print(table)


def register(app: typer.Typer) -> None:
    app.command("pool")(pool_command)
    app.command("info", help="Alias of `curate pool`.", hidden=True)(pool_command)
