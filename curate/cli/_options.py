"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from curate.devices import DEVICES, PRECISIONS
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
PrecisionOption = Annotated[
    Literal[PRECISIONS],  # type: ignore[valid-type]
    typer.Option(
        "--precision",
        help="auto (bf16 where the device computes it natively: CUDA with bf16, a CPU with "
        "AVX512-BF16/AMX; else fp32), fp32 or bf16.",
    ),
]


def unit_interval(value: float | None) -> float | None:
    """Option callback: a fraction in (0, 1] (a similarity or overlap threshold)."""
    if value is not None and not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{value:g} is not in (0, 1]")
    return value
