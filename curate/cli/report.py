"""`curate report`: every experiment's rounds side by side, with intervals over seeds and
questions, and whether the chosen strategy beats the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._options import JsonOption
from curate.cli._render import console, err_console, print_json, progress_renderer


def report_command(
    baseline: Annotated[
        str, typer.Option("--baseline", help="The strategy every other group is compared with.")
    ] = "random",
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for report.md, report.html (self-contained), report.json, PNGs."
        ),
    ] = Path("report"),
    repo: Annotated[
        Path, typer.Option("--repo", help="The git + DVC repository holding the pipeline.")
    ] = Path("."),
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="The strategy --check tests and the pool map draws. Default: params.yaml's.",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 0 only when --strategy beats the baseline at the last round with the "
            "95% interval of the NLL difference excluding 0 (else exit 1 with the reason).",
        ),
    ] = False,
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=100, help="Bootstrap draws per interval.")
    ] = 10_000,
    json_out: JsonOption = False,
) -> None:
    """Compare strategies across every DVC experiment and seed, round by round.

    Reads params, dvc.lock and the per-question eval details of the workspace and of each experiment's commit (no checkout), groups runs by the params that differ other than the seed, and reports per round: seeds, subset size, mean held-out NLL (and judge win rate) with a 95% bootstrap interval over seeds and questions, the difference from the baseline with its interval and the share of draws below 0, and Vendi / coverage radius. A group with a single seed is reported with a warning.
    """  # noqa: E501 - one paragraph per line, so --help wraps it to the terminal
    from curate.report import report_repository

    with progress_renderer() as progress:
        result = report_repository(
            repo, out, baseline=baseline, strategy=strategy, n_boot=n_boot, progress=progress
        )
    if json_out:
        print_json(result.to_dict())
    else:
        _render(result.report, result.written)
    if check:
        (console if result.passed else err_console).print(
            f"check {'passed' if result.passed else 'failed'}: {result.reason}", highlight=False
        )
        if not result.passed:
            raise typer.Exit(1)


def _render(report, written: list[Path]) -> None:
    from curate.report import table_rows

    for round_name in report.rounds:
        header, rows = table_rows(report, round_name)
        table = Table(title=f"{round_name} (vs {report.baseline})")
        for number, name in enumerate(header):
            table.add_column(name, justify="left" if number == 0 else "right")
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
