"""Atomic writes and content hashes: the one place artifacts reach the disk.

Every file or folder curate writes (subsets, exports, trained models, metrics, plots,
pipeline templates, reject reports) is first written to a temporary path beside its target
and renamed into place, so a crash leaves either the old artifact or the new one, never a
half-written mix. Temporaries get the mode ``open``/``mkdir`` would give (the process umask
applied), not ``mkstemp``'s private 0600/0700.

Temporaries are named ``.NAME.tmp-<pid>-<random>`` and a replaced folder briefly
``.NAME.old-<pid>``, so a writer killed with -9 leaves names that say whose they were: the
next write of ``NAME`` removes those whose process is gone (:func:`clean_leftovers`), never
a live writer's, and puts a ``.old-`` folder back when the kill came between the two renames.

An OS error met while writing names the path it hit (:func:`naming_path`), including the
ones Lance (Rust) and safetensors raise as text, "... (os error 28) ...".
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BLOCK = 1 << 22


def canonical_json(data: Any) -> str:
    """Sorted keys, one-space indent, UTF-8 kept, trailing newline: the same data always
    gives the same text (manifests, metrics, run records)."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each non-blank line of JSON Lines text, split on ``\n``
    only: the one reader of every JSON Lines file curate writes.

    JSON escapes every control character below U+0020, so ``\n`` is the only line break a
    serialised value never holds raw. ``str.splitlines()`` would also break inside strings
    that ``json.dumps(..., ensure_ascii=False)`` writes raw: U+2028, U+2029, U+0085 (NEL)
    and U+001C-U+001E.
    """
    for line_no, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield line_no, line


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's content, read in blocks (weights files do not fit in memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def default_mode(mode: int) -> int:
    """``mode`` filtered by the process umask, as ``open``/``mkdir`` would create it."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


# "(os error 28)" (Rust std::io), "Os { code: 28, ..." (Rust Debug), "[Errno 28]" / "errno 28"
_ERRNO_IN_TEXT = re.compile(r"os error (\d+)|Os \{ code: (\d+)|\[?errno:? (\d+)", re.IGNORECASE)
_ERRNO_BY_WORDS = {"no space left on device": errno.ENOSPC, "disk quota exceeded": errno.EDQUOT}


def errno_of(err: BaseException) -> int | None:
    """The OS error number behind ``err``: its ``errno``, else one named in its text (Lance,
    safetensors and Arrow raise I/O errors as RuntimeError or with the number in the text)."""
    code = getattr(err, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    text = str(err)
    match = _ERRNO_IN_TEXT.search(text)
    if match:
        return int(next(g for g in match.groups() if g))
    lowered = text.lower()
    return next((c for words, c in _ERRNO_BY_WORDS.items() if words in lowered), None)


@contextmanager
def naming_path(path: str | Path) -> Iterator[None]:
    """Re-raise an OS error from the block as an :class:`OSError` with its errno that names
    ``path`` (unless it already names one), so the CLI prints one line saying where."""
    from curate.errors import CurateError

    try:
        yield
    except CurateError:
        raise  # already one line, whatever its text quotes
    except OSError as err:
        code = errno_of(err)
        if err.filename is not None or code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from err
    except Exception as err:  # Lance / safetensors: RuntimeError & co. carrying an errno
        code = errno_of(err)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from err


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def owner_pid(name: str, marker: str) -> int | None:
    """The pid in a leftover's name after ``marker`` (``.x.tmp-123-ab`` → 123), if any."""
    digits = name.split(marker, 1)[1].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def clean_leftovers(path: str | Path) -> list[Path]:
    """Remove the ``.NAME.tmp-*`` / ``.NAME.old-*`` leftovers of writers of ``path`` that were
    killed; returns what was removed or restored. One whose pid is alive is kept, and so is
    one with no pid in its name (it cannot be told apart from a live writer's). A ``.old-``
    folder is moved back to ``path`` when ``path`` is missing (its writer died between the
    two renames of :func:`replace_dir`), so the earlier artifact is never lost."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    done = []
    for marker in (".old-", ".tmp-"):  # a restored .old- first, then the half-written tmps
        prefix = f".{path.name}{marker}"
        for leftover in sorted(path.parent.iterdir()):
            if not leftover.name.startswith(prefix):
                continue
            pid = owner_pid(leftover.name, f".{path.name}{marker}")
            if pid is None or pid == os.getpid() or pid_alive(pid):
                continue
            if marker == ".old-" and leftover.is_dir() and not path.exists():
                os.replace(leftover, path)
            elif leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            done.append(leftover)
    return done


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on a clean exit it replaces ``path``
    (one ``os.replace``), on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    with naming_path(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        with naming_path(path):
            tmp.chmod(default_mode(0o666))
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, blob: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(blob)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on a clean exit it takes the place
    of ``path`` (see :func:`replace_dir`), on an error it is removed and ``path`` is
    untouched. Being on the same filesystem, the final move is a rename, not a copy."""
    path = Path(path)
    with naming_path(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        with naming_path(path):
            tmp.chmod(default_mode(0o777))  # mkdtemp makes it private; the artifact is not
            yield tmp
            replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing what is there with at most a brief gap in
    which neither the old nor a half-written new folder is visible at ``dst``."""
    clean_leftovers(dst)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)  # this process's own, from an earlier failure
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
