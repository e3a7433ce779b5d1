"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from curate.devices import DEVICES
from curate.paths import DEFAULT_DB

DbOption = Annotated[
    Path,
    typer.Option("--db", help="LanceDB folder holding the pool and embeddings.", show_default=True),
]
DEFAULT_DB_PATH = DEFAULT_DB
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")]
DeviceOption = Annotated[
    Literal[DEVICES],  # type: ignore[valid-type]
    typer.Option(
        "--device",
        help="Where to compute (auto: CUDA when present, else the CPU).",
    ),
]
