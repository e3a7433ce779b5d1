"""`curate ingest`: read instruction data into the pool table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption
from curate.cli._render import console, print_json, progress_renderer
from curate.readers import FORMATS


def ingest_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Files (json, jsonl, parquet, csv) or hf://<dataset>[:split]. "
            "A source with no records (an empty file, [], a header-only CSV) is an error."
        ),
    ],
    db: DbOption = DEFAULT_DB_PATH,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help=f"Source format: {', '.join(FORMATS)}. auto: by extension, record shape by "
            "fields (TRL prompt/completion included). alpaca, sharegpt or messages force the "
            "shape and read any other extension (x.txt, r.alpaca) as a JSON array or JSON "
            "Lines, whichever the content is.",
        ),
    ] = "auto",
    source_name: Annotated[
        str | None,
        typer.Option("--source-name", help="Value of the `source` column (default: file stem)."),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Skip bad records, writing them with reasons to --rejects."
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Where --skip-invalid writes rejects (default: beside the first source, "
            "SOURCE.rejects.jsonl).",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Ingest instruction/response examples into the pool (deduplicated, all-or-nothing)."""
    from curate.ingest import ingest
    from curate.store import Store

    if format not in FORMATS:
        raise typer.BadParameter(
            f"unknown format {format!r}; choose from {', '.join(FORMATS)}", param_hint="--format"
        )
    store = Store(db)
    with progress_renderer() as progress:
        report = ingest(
            store, sources, format, source_name, skip_invalid, rejects, progress=progress
        )
    if json_out:
        print_json(report)
        return
    table = Table(
        title=f"ingest → {db} (pool version {report.version_before} → {report.version_after})"
    )
    for column in ("source", "read", "duplicates", "rejected"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, counts in report.per_source.items():
        table.add_row(source, *(f"{counts[k]:,}" for k in ("read", "duplicates", "rejected")))
    console.print(table)
    console.print(
        f"added [bold]{report.added:,}[/] rows, dropped {report.duplicates:,} duplicates in {report.seconds:.1f}s"
    )
    if report.reshaped:
        done = ", ".join(f"{n:,} {_RESHAPED[k]}" for k, n in report.reshaped.items())
        console.print(f"chat turns reshaped (README: chat shapes): {done}")
    if report.rejects_path:
        console.print(f"rejected {report.rejected:,} records; reasons in {report.rejects_path}")


_RESHAPED = {
    "empty_turn": "empty turns dropped",
    "leading_assistant": "leading assistant turns dropped",
    "joined_turn": "turns joined to the one before (same role)",
    "trailing_user": "unanswered last user turns dropped",
}


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
