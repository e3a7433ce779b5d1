"""Names and targets: the one rule for every path curate writes.

A *name* (a subset's ``--name``, the name in a manifest, a parent's name) becomes a path
component under a folder curate owns, so it must be exactly one component: no separator,
not ``.`` or ``..``, not hidden (``.NAME`` is how curate names its temporaries), no NUL.
It is checked where it enters: the command line, the Python API, and a manifest on load.

A *target* (``--out`` of select, export, train) is replaced only when it is what curate
wrote there before, a subset, an export or a model folder, each recognised by the files
it holds, or when it is an empty folder. ``--force`` lets curate replace a recognised
artifact that differs; it never deletes a folder curate did not write, whose refusal
says what is there instead of inviting ``--force``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from curate.errors import ConflictError, SelectionError, UsageError

MAX_NAME_BYTES = 255  # one path component on every common file system


class BadNameError(UsageError):
    """A name that is not a single path component (a usage error)."""

    exit_code = 2


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a single path component, or None when it can."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name.strip():
        return "is empty"
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        return "holds a path separator; a name is one folder name, not a path"
    if name in (".", ".."):
        return "is not a folder name"
    if name.startswith("."):
        return "starts with '.', which curate keeps for its temporary folders"
    if "\0" in name or any(ord(c) < 32 for c in name):
        return "holds a control character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_name(name: object, what: str = "--name") -> str:
    """``name`` unchanged when it is a single path component; else :class:`BadNameError`."""
    problem = name_problem(name)
    if problem is not None:
        raise BadNameError(f"{what} {name!r} {problem}")
    return name  # type: ignore[return-value]


def _a(what: str) -> str:
    return f"{'an' if what[0] in 'aeiouh' else 'a'} {what}"


def _shown(entries: list[str]) -> str:
    head = ", ".join(entries[:3])
    return head + (f", … ({len(entries)} entries)" if len(entries) > 3 else "")


def check_replaceable(
    target: str | Path,
    what: str,
    recognise: Callable[[Path], bool],
    force: bool,
    same: Callable[[Path], bool] | None = None,
) -> Path:
    """Whether curate may write ``target`` (``what``: "a subset folder", ...).

    Absent, an empty folder, or a recognised artifact for which ``same`` holds (these bytes
    again: a rerun) → fine. A recognised artifact that differs → only with ``force``. Anything else → refused with
    or without ``force``, saying what is there. Returns the absolute path to write.
    """
    path = Path(target)
    absolute = Path(os.path.abspath(path))
    if absolute.parent == absolute:
        raise ConflictError(f"{target}: is the file system root; choose a folder to write")
    if not os.path.lexists(path):
        return absolute
    if path.is_symlink():
        raise ConflictError(
            f"{target} is a symbolic link, which curate does not replace; "
            "choose another --out or remove the link yourself"
        )
    if path.is_dir():
        try:
            entries = sorted(p.name for p in path.iterdir())
        except OSError as err:
            raise ConflictError(f"{target}: cannot be listed ({err.strerror})") from None
        if not entries:
            return absolute
        if absolute == Path.cwd() or Path.cwd().is_relative_to(absolute):
            raise ConflictError(
                f"{target} is the current folder (or holds it); curate writes {_a(what)} into a "
                "folder of its own, choose another --out"
            )
    else:
        entries = []
    if recognise(path):  # only then: a folder with anything else in it is never replaced
        if force or (same is not None and same(path)):
            return absolute
        which = "a different" if same is not None else "another"
        raise ConflictError(f"{target} already holds {which} {what}; pass --force to replace it")
    kind = f"a folder holding {_shown(entries)}" if path.is_dir() else "a file"
    raise ConflictError(
        f"{target} is {kind}, not {_a(what)} curate wrote; curate does not replace it "
        "(choose another --out, or move it away yourself)"
    )


def holds_only(path: Path, allowed: Iterable[str], required: Iterable[str] = ()) -> bool:
    """A folder whose entries are all files (a DVC cache link included) among ``allowed``
    (fnmatch patterns), including every ``required`` one."""
    from fnmatch import fnmatch

    if not path.is_dir() or path.is_symlink():
        return False
    patterns = tuple(allowed)
    entries = list(path.iterdir())
    names = {p.name for p in entries}
    if not all(name in names for name in required):
        return False
    return all(p.is_file() and any(fnmatch(p.name, pat) for pat in patterns) for p in entries)


# ----------------------------------------------------------------------------- requests


def check_select_request(request: Any) -> None:
    """Types and ranges of the request's own fields, before anything is read (a usage
    error, exit 2, as the command line's own checks): a bool is not a budget."""
    for field_name in ("budget", "add"):
        value = getattr(request, field_name)
        if value is not None and (type(value) is not int or value < 1):
            raise RequestError(f"{field_name} {value!r} must be a positive integer")
    if type(request.seed) is not int or not 0 <= request.seed < 2**32:
        raise RequestError(f"seed {request.seed!r} must be an integer from 0 to {2**32 - 1}")
    if not isinstance(request.strategy, str):
        raise RequestError(f"strategy {request.strategy!r} must be a strategy name")
    if not isinstance(request.params, Mapping):
        raise RequestError(f"params {request.params!r} must be a mapping of parameters")
    for field_name in ("embeddings", "device"):
        value = getattr(request, field_name)
        if value is not None and not isinstance(value, str):
            raise RequestError(f"{field_name} {value!r} must be a string")
    if not isinstance(request.whole_pool, bool):
        raise RequestError(f"whole_pool {request.whole_pool!r} must be true or false")
    if request.parent is not None and not isinstance(request.parent, str | Path):
        raise RequestError(f"parent {request.parent!r} must be a subset folder path")
    if request.name is not None:
        check_name(request.name)


class RequestError(SelectionError, UsageError):
    """A select request whose fields have the wrong type or range (a usage error)."""

    exit_code = 2
