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

import ast
import re
from collections.abc import Callable
from os import PathLike
from typing import Any

_PARAM = re.compile("\x1f([^\x1e\x1f]*)\x1e([vm]?)([^\x1f]*)\x1f")


def param(name: str, value: Any = None, *, metavar: str | None = None) -> str:
    """A parameter named inside an error message, as the caller spelled it: the Python
    API's keyword in ``str(err)`` (`` `add` ``, `` `budget=6` ``), the command line's flag in
    :meth:`CurateError.render` (``--add K``, ``--budget 6``). ``value`` is what was given;
    ``metavar`` stands for a value in the CLI's spelling only."""
    if value is not None:
        return f"\x1f{name}\x1ev{value!r}\x1f"
    return f"\x1f{name}\x1em{metavar}\x1f" if metavar else f"\x1f{name}\x1e\x1f"


def render_params(message: str, flag: Callable[[str], str] | None = None) -> str:
    """``message`` with each :func:`param` spelled for the API (``flag`` None) or as the
    flag ``flag(name)`` names."""

    def one(match: re.Match[str]) -> str:
        name, kind, text = match.groups()
        if flag is None:
            return f"`{name}={text}`" if kind == "v" else f"`{name}`"
        if kind == "v":
            value = _literal(text)
            return flag(name) if value is True else f"{flag(name)} {value}"
        return f"{flag(name)} {text}" if kind == "m" else flag(name)

    return _PARAM.sub(one, message)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class CurateError(Exception):
    """A problem the user can fix. ``str(err)`` is the one line the CLI prints, with the
    parameters it names (:func:`param`) spelled as Python keywords; :meth:`render` spells
    them as the caller's flags instead."""

    exit_code = 1

    @property
    def template(self) -> str:
        """The message with its parameters not yet spelled (to raise it again elsewhere)."""
        return super().__str__()

    def __str__(self) -> str:
        return render_params(self.template)

    def render(self, flag: Callable[[str], str]) -> str:
        """The message with each parameter it names spelled as ``flag(name)``."""
        return render_params(self.template, flag)


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
