"""`curate subsets list | show | diff | verify | export`: inspect and ship subset artifacts."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curate.cli._options import DEFAULT_DB_PATH, DbOption, JsonOption
from curate.cli._render import console, print_json
from curate.exports import EXPORT_FORMATS
from curate.subsets import DEFAULT_SUBSETS_DIR

app = typer.Typer(
    name="subsets",
    help="List, show, compare, verify and export subsets (data/subsets/<name>/).",
    no_args_is_help=True,
)

# members from EXPORT_FORMATS, declared once in curate.exports (mypy wants them literal)
ExportFormat = Enum("ExportFormat", [(f, f) for f in EXPORT_FORMATS], type=str)  # type: ignore[misc]
DirOption = Annotated[
    Path,
    typer.Option("--dir", help="Folder holding subset folders (for names).", show_default=True),
]
SubsetArg = Annotated[str, typer.Argument(help="Subset folder, or a name under --dir.")]


@app.command("list")
def list_command(dir: DirOption = DEFAULT_SUBSETS_DIR, json_out: JsonOption = False) -> None:
    """One line per subset: name, strategy, size, parent, embeddings, manifest sha256."""
    from curate.subsets import list_subsets

    rows = list_subsets(dir)
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print(f"no subsets under {dir}; create one with `curate select`")
        return
    table = Table(title=f"subsets in {dir}")
    for column in ("name", "strategy", "size", "parent", "embeddings", "seed", "manifest"):
        table.add_column(column, justify="right" if column in ("size", "seed") else "left")
    for row in rows:
        if "error" in row:
            table.add_row(row["name"], f"[red]{row['error']}[/]", "", "", "", "", "")
            continue
        table.add_row(
            row["name"],
            row["strategy"],
            f"{row['size']:,}",
            (row["parent"] or {}).get("name", "-"),
            (row["embeddings"] or {}).get("name", "-"),
            str(row["seed"]),
            row["manifest_sha256"][:12],
        )
    console.print(table)


@app.command("show")
def show_command(
    subset: SubsetArg, dir: DirOption = DEFAULT_SUBSETS_DIR, json_out: JsonOption = False
) -> None:
    """A subset's manifest (without the pick list), categories and coverage curve ends."""
    from curate.subsets import load_subset, resolve_subset_dir, summarize

    summary = summarize(load_subset(resolve_subset_dir(subset, dir), verify=True))
    if json_out:
        print_json(summary)
        return
    table = Table(title=f"subset {summary['name']} ({summary['path']})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    parent = summary["parent"]
    rows = {
        "strategy": f"{summary['strategy']} {summary['params']}",
        "seed": str(summary["seed"]),
        "examples": f"{summary['size']:,}"
        + (f" ({summary['inherited']:,} from parent)" if parent else ""),
        "parent": f"{parent['name']} ({parent['manifest_sha256'][:12]})" if parent else "-",
        "pool": f"version {summary['pool']['version']}, {summary['pool']['rows']:,} rows",
        "embeddings": "-"
        if not summary["embeddings"]
        else (f"{summary['embeddings']['name']} ({summary['embeddings']['fingerprint'][:12]})"),
        "manifest sha256": summary["manifest_sha256"],
        "created by": str(summary["created_by"]),
    }
    coverage = summary["coverage"]
    if coverage["picks_with_distance"]:
        rows["coverage (distance at pick)"] = (
            f"first {coverage['first']:.4g} → last {coverage['last']:.4g}"
        )
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
    if len(summary["categories"]) > 1:
        cats = Table(title="categories")
        cats.add_column("category")
        cats.add_column("examples", justify="right")
        for key, value in summary["categories"].items():
            cats.add_row(key, f"{value:,}")
        console.print(cats)


@app.command("diff")
def diff_command(
    a: Annotated[str, typer.Argument(help="First subset (folder or name).")],
    b: Annotated[str, typer.Argument(help="Second subset (folder or name).")],
    dir: DirOption = DEFAULT_SUBSETS_DIR,
    json_out: JsonOption = False,
) -> None:
    """Examples the two subsets share and those only one has; whether one extends the other."""
    from curate.subsets import diff_subsets, load_subset, resolve_subset_dir

    diff = diff_subsets(*(load_subset(resolve_subset_dir(ref, dir)) for ref in (a, b)))
    if json_out:
        print_json(diff)
        return
    name_a, name_b = diff["a"]["name"], diff["b"]["name"]
    console.print(
        f"{name_a} ({diff['a']['size']:,}) vs {name_b} ({diff['b']['size']:,}): "
        f"{diff['common']:,} in common, {len(diff['only_a']):,} only in {name_a}, "
        f"{len(diff['only_b']):,} only in {name_b} (Jaccard {diff['jaccard']:.3f})"
    )
    if diff["b_extends_a"] and diff["a"]["size"] < diff["b"]["size"]:
        console.print(f"{name_b} starts with all of {name_a}'s picks, in order")
    elif diff["a_extends_b"] and diff["b"]["size"] < diff["a"]["size"]:
        console.print(f"{name_a} starts with all of {name_b}'s picks, in order")
    for label, ids in (
        (f"only in {name_a}", diff["only_a"]),
        (f"only in {name_b}", diff["only_b"]),
    ):
        if ids:
            shown = ", ".join(ids[:10]) + (f", … ({len(ids) - 10} more)" if len(ids) > 10 else "")
            console.print(f"{label}: {shown}", highlight=False)


@app.command("verify")
def verify_command(
    subset: SubsetArg,
    db: DbOption = DEFAULT_DB_PATH,
    dir: DirOption = DEFAULT_SUBSETS_DIR,
    json_out: JsonOption = False,
) -> None:
    """Recompute hashes and check every example against the pool (exit 1 on any mismatch)."""
    from curate.store import Store
    from curate.subsets import resolve_subset_dir, verify_subset

    report = verify_subset(resolve_subset_dir(subset, dir), Store(db))
    if json_out:
        print_json(report)
        return
    console.print(
        f"[green]ok[/] {report.name}: {report.examples:,} examples match their hashes and the pool "
        f"at {db}; parent {report.parent}"
        + (
            "; new picks avoid the dedup/decontaminate results named"
            if report.hygiene == "ok"
            else ""
        )
    )
    if report.hygiene == "gone":
        console.print(
            "note: a dedup/decontaminate result it was chosen under is no longer in the "
            "database as recorded (rebuilt since), so its exclusions were not checked"
        )
    if report.pool_version is not None and report.pool_version != report.pool_version_now:
        console.print(
            f"note: built on pool version {report.pool_version}, the pool is now at "
            f"version {report.pool_version_now}"
        )


@app.command("export")
def export_command(
    subset: SubsetArg,
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="File (folder for hf) to write. Default: data/exports/<name>-<format>.<ext>.",
        ),
    ] = None,
    dir: DirOption = DEFAULT_SUBSETS_DIR,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an earlier export of this format at --out.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Write the subset where fine-tuning tools read it.

    alpaca / sharegpt: JSON for LLaMA-Factory and axolotl; messages: JSONL for TRL;
    parquet, or hf (a `datasets.load_from_disk` folder).
    """
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # no tqdm from save_to_disk
    from curate.exports import export_subset
    from curate.subsets import resolve_subset_dir

    written = export_subset(resolve_subset_dir(subset, dir), format.value, out, force)
    if json_out:
        print_json({"format": format.value, "path": str(written)})
        return
    console.print(f"wrote {format.value} export to {written}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="subsets")
