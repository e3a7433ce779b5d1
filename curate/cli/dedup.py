"""`curate dedup`: near-duplicate groups in the pool, stored for selection to leave out."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption, unit_interval
from curate.cli._render import console, print_json, progress_renderer


def dedup_command(
    db: DbOption = DEFAULT_DB_PATH,
    method: Annotated[
        Literal["minhash", "embedding"],
        typer.Option(
            "--method",
            help="minhash: MinHash LSH over word shingles; embedding: cosine similarity over "
            "an embeddings table (exact, every pair).",
        ),
    ] = "minhash",
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            callback=unit_interval,
            help="Similarity at which two rows are duplicates: estimated Jaccard of the "
            "shingle sets (default 0.7) or cosine (default 0.95).",
        ),
    ] = None,
    keep: Annotated[
        Literal["first", "longest", "central"],
        typer.Option(
            "--keep", help="Row each group keeps: first in the pool, longest, most central."
        ),
    ] = "first",
    fields: Annotated[
        Literal["all", "prompt"],
        typer.Option("--fields", help="Compare every turn (all) or the user turns only (prompt)."),
    ] = "all",
    shingle: Annotated[
        int, typer.Option("--shingle", min=1, max=64, help="Words per shingle (minhash).")
    ] = 3,
    num_perm: Annotated[
        int, typer.Option("--num-perm", min=16, max=1024, help="MinHash permutations.")
    ] = 128,
    embeddings: Annotated[
        str | None,
        typer.Option(
            "--embeddings", help="Embeddings name (embedding method; default: the only one)."
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Find near-duplicate groups; selection then leaves all but one row of each out.

    The groups are stored in the pool's database (table hyg_dedup), tied to the pool
    version and these settings: `curate select` skips the flagged rows while the pool is
    at that version (--include-duplicates to keep them). A rerun on an unchanged pool
    with the same settings does no work.
    """
    from curate.hygiene.dedup import DedupSettings, dedup
    from curate.store import Store

    settings = DedupSettings(method, threshold, keep, fields, shingle, num_perm, 1, embeddings)
    with progress_renderer() as progress:
        report = dedup(Store(db), settings, progress)
    if json_out:
        print_json(report)
        return
    table = Table(title=f"near duplicates in {report.db}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    s = report.settings
    how = f"{s['method']} ≥ {s['threshold']:g}, keep {s['keep']}, fields {s['fields']}"
    table.add_row("settings", how)
    table.add_row("pool rows (version)", f"{report.rows:,} (v{report.pool_version})")
    table.add_row("groups", f"{report.groups:,} (largest {report.largest_group:,})")
    table.add_row("rows flagged", f"{report.flagged:,}")
    table.add_row(
        "result", f"hyg_dedup v{report.version}" + (" (unchanged)" if report.reused else "")
    )
    console.print(table)
    for example in report.examples:
        console.print(
            f"[bold]kept[/] {example['kept']['id']}: {example['kept']['text'][:80]!r}\n"
            f"  [yellow]dup[/] {example['duplicate']['id']} (sim {example['similarity']}): "
            f"{example['duplicate']['text'][:80]!r}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("dedup")(dedup_command)
