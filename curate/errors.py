"""Domain errors. The library raises these; the CLI turns each into one line and an exit code.

Exit codes (the README's table):

====  =====================================================================
0     success
1     a problem with the data or the state on disk (bad record, missing table,
      failed verification, ...): :class:`CurateError`
2     usage: an unknown option or a bad option value (click's own code)
3     conflict: another process holds the database's writer lock, or the
      target exists and differs (pass ``--force``): :class:`ConflictError`
130   interrupted (Ctrl-C, or training stopped); a rerun resumes
====  =====================================================================
"""

from __future__ import annotations

from os import PathLike


class CurateError(Exception):
    """A problem the user can fix. ``str(err)`` is the one line the CLI prints."""

    exit_code = 1


class UsageError(CurateError):
    """A bad argument: an unknown option, a value of the wrong type or out of range, given
    on the command line, in params.yaml or to the Python API (exit 2, as click's own)."""

    exit_code = 2


class InvalidInputError(CurateError):
    """A source record or file that cannot be read. Names the file and line."""

    def __init__(self, path: str | PathLike[str], line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}:{line}" if line is not None else self.path
        located = getattr(line, "where", None)  # a JSON-array element (records.ArrayPosition)
        if located is not None:  # its index and id say more
            where = located(self.path)
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


class ConflictError(CurateError):
    """Another writer holds the database, or a target exists and differs from what would be
    written. Nothing was changed; wait for the holder, or pass ``--force`` where offered."""

    exit_code = 3
