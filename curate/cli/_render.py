"""Shared rendering: consoles, progress bars, JSON output."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

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

    def render(self, task):
        speed = task.finished_speed or task.speed
        return f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s"


def progress_renderer() -> RichProgress | LineProgress:
    """The renderer for this run's stderr: rich bars on a terminal, else plain lines (a CI
    log, ``nohup``, a DVC stage, a subprocess), every ``CURATE_PROGRESS_INTERVAL`` seconds
    (default 30)."""
    if err_console.is_terminal:
        return RichProgress()
    interval = os.environ.get("CURATE_PROGRESS_INTERVAL", "")
    try:
        seconds = float(interval) if interval else LineProgress.INTERVAL
    except ValueError:
        seconds = LineProgress.INTERVAL
    return LineProgress(sys.stderr, seconds)


class RichProgress:
    """The library's progress protocol (:mod:`curate.progress`) as rich bars on stderr: each
    ``start`` opens a new bar. Shown only when stderr is a terminal (elsewhere
    :class:`LineProgress` reports). Use as a context manager."""

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


class LineProgress:
    """The progress protocol as plain lines for logs: a phase writes one line at most every
    ``interval`` seconds (done/total, rate, time left) and, if it wrote any, a last line when
    it ends. A phase shorter than ``interval`` writes nothing. Use as a context manager."""

    INTERVAL = 30.0

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.clock = interval, clock
        self._label = self._unit = ""
        self._total: int | None = None
        self._done = 0
        self._began = self._last = 0.0
        self._lines = 0
        self._open = False

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self._finish()
        self._open = False

    def start(self, total: int | None, unit: str = "rows", label: str = "") -> None:
        self._finish()
        self._label, self._unit, self._total = label or "working", unit, total
        self._done, self._lines, self._open = 0, 0, True
        self._began = self._last = self.clock()

    def advance(self, n: int = 1) -> None:
        if not self._open:
            return
        self._done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line(now))

    def line(self, now: float) -> str:
        """``embed emb_minilm: 3,200/14,759 rows (21.7%), 45.2 rows/s, 4m 15s left``."""
        elapsed = max(now - self._began, 1e-9)
        rate = self._done / elapsed
        head = f"{self._label}: {self._done:,}"
        if self._total:
            head += f"/{self._total:,} {self._unit} ({100 * self._done / self._total:.1f}%)"
        else:
            head += f" {self._unit}"
        parts = [head, f"{rate:,.1f} {self._unit}/s"]
        if self._total and rate > 0:
            parts.append(f"{_duration((self._total - self._done) / rate)} left")
        else:
            parts.append(f"{_duration(elapsed)} elapsed")
        return ", ".join(parts)

    def _finish(self) -> None:
        if self._open and self._lines:
            now = self.clock()
            rate = self._done / max(now - self._began, 1e-9)
            self._write(
                f"{self._label}: {self._done:,} {self._unit} done in "
                f"{_duration(now - self._began)} ({rate:,.1f} {self._unit}/s)"
            )
        self._open = False

    def _write(self, line: str) -> None:
        self._lines += 1
        self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


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
