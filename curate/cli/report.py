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
    import yaml

    from curate.report import build_report, collect_runs, write_report
    from curate.report import check as check_report

    params_file = repo / "params.yaml"
    params = yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}
    params = params if isinstance(params, dict) else {}
    strategy = strategy or params.get("strategy") or "kcenter"
    with progress_renderer() as progress:
        runs, experiments = collect_runs(repo, progress)
        report = build_report(runs, experiments, baseline, n_boot, progress=progress)
    report.warnings.extend(_overlap(repo, params))
    written = write_report(report, out, repo, runs, strategy, params.get("db", "data/lancedb"))
    passed, reason = check_report(report, strategy)
    if json_out:
        print_json({**report.to_dict(), "files": [str(p) for p in written], "check": reason})
    else:
        _render(report, written)
    if check:
        (console if passed else err_console).print(
            f"check {'passed' if passed else 'failed'}: {reason}", highlight=False
        )
        if not passed:
            raise typer.Exit(1)


def _overlap(repo: Path, params: dict) -> list[str]:
    """The eval set's overlap with the pool, as a warning line (none when either is absent)."""
    from curate.hygiene.decontaminate import overlap_warning
    from curate.store import Store

    eval_set = (
        (params.get("eval") or {}).get("set") if isinstance(params.get("eval"), dict) else None
    )
    if not isinstance(eval_set, str) or not (repo / eval_set).is_file():
        return []
    warning = overlap_warning(Store(repo / params.get("db", "data/lancedb")), repo / eval_set)
    return [warning] if warning else []


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
