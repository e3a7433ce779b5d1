"""One progress protocol from the library to whoever shows it.

Long library calls take a ``progress`` argument and report through two methods:
``start(total, unit, label)`` when a phase begins (``total`` may be ``None`` when it is not
known) and ``advance(n)`` as work is done. The default, :data:`NO_PROGRESS`, does nothing;
the command line passes a rich progress bar (``curate.cli._render.RichProgress``); a
notebook can pass anything with the two methods.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int | None, unit: str = "rows", label: str = "") -> None:
        """A phase begins: ``total`` units of work (``None``: unknown)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units are done."""


class NoProgress:
    """Reports nothing (the library's default)."""

    def start(self, total: int | None, unit: str = "rows", label: str = "") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


NO_PROGRESS: Progress = NoProgress()
