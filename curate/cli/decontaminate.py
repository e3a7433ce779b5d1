"""`curate decontaminate`: pool rows that overlap eval questions, stored for selection to
leave out."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption, unit_interval
from curate.cli._render import console, print_json, progress_renderer


def decontaminate_command(
    against: Annotated[
        list[str],
        typer.Option(
            "--against",
            help="Eval set (any format `curate eval` reads; repeat for several).",
        ),
    ],
    db: DbOption = DEFAULT_DB_PATH,
    ngram: Annotated[
        int,
        typer.Option(
            "--ngram", min=1, max=64, help="Words per n-gram (8: Tülu 3/OLMo 2; 13: GPT-3)."
        ),
    ] = 8,
    min_overlap: Annotated[
        float,
        typer.Option(
            "--min-overlap",
            callback=unit_interval,
            help="Fraction of a question's n-grams a row must hold to match it.",
        ),
    ] = 0.5,
    fields: Annotated[
        Literal["prompt", "all"],
        typer.Option("--fields", help="Compare the user turns (prompt) or every turn (all)."),
    ] = "prompt",
    json_out: JsonOption = False,
) -> None:
    """Find pool rows whose prompt overlaps an eval question; selection leaves them out.

    Each match (row, eval set, question, overlap) is stored in the pool's database
    (table hyg_decontaminate), tied to the pool version, the eval sets' sha256 and
    these settings: `curate select` skips the flagged rows while the pool is at that
    version (--include-contaminated to keep them).
    """
    from curate.hygiene.decontaminate import DecontaminateSettings, decontaminate
    from curate.store import Store

    settings = DecontaminateSettings(tuple(against), ngram, min_overlap, fields)
    with progress_renderer() as progress:
        report = decontaminate(Store(db), settings, progress)
    if json_out:
        print_json(report)
        return
    table = Table(title=f"eval-set overlap in {report.db}")
    for column in ("eval set", "questions", "questions matched", "pool rows"):
        table.add_column(column, justify="left" if column == "eval set" else "right")
    for path, counts in report.per_set.items():
        table.add_row(
            path,
            f"{counts['questions']:,}",
            f"{counts['matched_questions']:,}",
            f"{counts['rows']:,}",
        )
    console.print(table)
    version = f"hyg_decontaminate v{report.version}" + (" (unchanged)" if report.reused else "")
    console.print(
        f"{report.flagged:,} of {report.rows:,} pool rows flagged "
        f"({report.settings['ngram']}-grams, overlap ≥ {report.settings['min_overlap']:g}); "
        f"{version}",
        highlight=False,
    )
    for e in report.examples:
        console.print(
            f"  {e['id']} ↔ {e['eval_set']}#{e['eval_id']} ({e['overlap']:.0%}): {e['question']!r}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("decontaminate")(decontaminate_command)
