"""`curate init`: scaffold the DiverseEvol DVC pipeline into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli._options import JsonOption
from curate.cli._render import console, print_json


def init_command(
    directory: Annotated[
        Path,
        typer.Argument(help="Folder to set up (created if missing; becomes a git + DVC repo)."),
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a dvc.yaml/params.yaml that differs.")
    ] = False,
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="Settings to write: default (CPU, SmolLM2, 3 rounds) or paper (GPU, 100 + 100×10).",
        ),
    ] = "default",
    no_samples: Annotated[
        bool, typer.Option("--no-samples", help="Do not copy the sample pool and eval set.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Only validate the folder's params.yaml; write nothing.")
    ] = False,
    stamp: Annotated[
        Path | None,
        typer.Option(
            "--stamp",
            help="With --check: on success also write this file (one fixed line), for the "
            "pipeline stages to run after.",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Write dvc.yaml + params.yaml for `dvc repro` (git init / dvc init when missing)."""
    from curate.scaffold import PROFILES, check_folder, scaffold

    if check:
        rounds = check_folder(directory, stamp)
        if json_out:
            print_json({"params": str(directory / "params.yaml"), "rounds": rounds})
        else:
            console.print(f"{directory / 'params.yaml'}: ok, rounds {' → '.join(rounds)}")
        return
    if profile not in PROFILES:
        raise typer.BadParameter(
            f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}",
            param_hint="--profile",
        )
    result = scaffold(directory, profile, force, samples=not no_samples)
    if json_out:
        print_json(result)
        return
    if result.git_initialised:
        console.print(f"initialised a git repository in {directory}")
    if result.dvc_initialised:
        console.print(f"initialised DVC in {directory}")
    for rel in result.written:
        console.print(f"wrote {directory / rel}")
    for rel in result.unchanged:
        console.print(f"{directory / rel} is already up to date")
    for rel in result.copied_samples:
        console.print(f"copied the sample {rel}")
    console.print(
        f"pipeline: {profile} profile, rounds {' → '.join(result.rounds)}. Next: "
        f"`git add -A && git commit -m 'DiverseEvol pipeline'` then `dvc repro` in {directory}"
    )


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
