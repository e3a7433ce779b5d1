"""Domain errors. The library raises these; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class CurateError(Exception):
    """A problem the user can fix. ``str(err)`` is the one line the CLI prints."""

    exit_code = 1


class InvalidInputError(CurateError):
    """A source record or file that cannot be read. Names the file and line."""

    exit_code = 2

    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class PoolError(CurateError):
    """The pool table is missing, empty or inconsistent with what a command needs."""


class EmbeddingError(CurateError):
    """Embeddings are missing, stale or malformed."""


class SelectionError(CurateError):
    """A selection request that cannot be satisfied (budget, parent, strategy inputs)."""


class SubsetError(CurateError):
    """A subset artifact that is missing, malformed or fails verification."""


class ModelError(CurateError):
    """A model that cannot be found or loaded."""


class EvalError(CurateError):
    """An evaluation input or endpoint that cannot be used."""
