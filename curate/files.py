"""Atomic writes and content hashes: the one place artifacts reach the disk.

Every file or folder curate writes (subsets, exports, trained models, metrics, plots,
pipeline templates, reject reports) is first written to a temporary path beside its target
and renamed into place, so a crash leaves either the old artifact or the new one, never a
half-written mix. Temporaries get the mode ``open``/``mkdir`` would give (the process umask
applied), not ``mkstemp``'s private 0600/0700.
"""

from __future__ import annotations

import hashlib
import json
import os
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


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on a clean exit it replaces ``path``
    (one ``os.replace``), on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(default_mode(0o777))  # mkdtemp makes it private; the artifact is not
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing what is there with at most a brief gap in
    which neither the old nor a half-written new folder is visible at ``dst``."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
