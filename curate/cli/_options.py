"""Options shared by several commands, declared once."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from curate.devices import Device, Precision
from curate.paths import DEFAULT_DB

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DbOption = Annotated[
    Path,
    typer.Option("--db", help="LanceDB folder holding the pool and embeddings.", show_default=True),
]
DEFAULT_DB_PATH = DEFAULT_DB
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary for scripts.")]
DeviceOption = Annotated[
    Device,
    typer.Option(
        "--device",
        help="Where to compute (auto: CUDA when present, else the CPU).",
    ),
]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="auto (bf16 where the device computes it natively: CUDA with bf16, a CPU with "
        "AVX512-BF16/AMX; else fp32), fp32 or bf16.",
    ),
]


S = TypeVar("S", bound="DataclassInstance")


def settings_from(cls: type[S], arguments: Mapping[str, Any], **overrides: Any) -> S:
    """A settings dataclass (``TrainConfig``, ``ModelEvalSettings``) from a command's
    arguments: each field takes the argument of its own name, so an option and its field
    are one name, not a hand-written copy (``tests/test_settings.py`` checks that the
    options' defaults are the fields')."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {name: arguments[name] for name in fields if name in arguments}
    return cls(**(values | overrides))


def unit_interval(value: float | None) -> float | None:
    """Option callback: a fraction in (0, 1] (a similarity or overlap threshold)."""
    if value is not None and not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{value:g} is not in (0, 1]")
    return value
