"""Shared rendering: consoles, progress bars, JSON output."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (progress bars go to stderr): a result object's
    ``to_dict()``, or plain data."""
    if hasattr(data, "to_dict"):
        data = data.to_dict()
    console.file.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    console.file.flush()


class _RateColumn(TextColumn):
    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s"


class RichProgress:
    """The library's progress protocol (:mod:`curate.progress`) as rich bars on stderr: each
    ``start`` opens a new bar. Shown only when stderr is a terminal, so a CI log or a
    redirected run holds just the result and errors. Use as a context manager."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, total: int | None, unit: str = "rows", label: str = "") -> None:
        if not err_console.is_terminal:
            return
        if self._progress is not None:
            self._progress.stop()
        self._progress = Progress(*_columns(total, unit), console=err_console)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


def _columns(total: int | None, unit: str) -> list[Any]:
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total is not None else TaskProgressColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
    ]
    if total is not None:
        columns.append(TimeRemainingColumn())
    return columns
