"""The writer lock of one database folder: an exclusive ``fcntl.flock`` on
``.curate-writer.lock`` inside it, whose content names the holder (pid, host, command, what,
since), so a writer that waited in vain can say who holds it. The kernel drops a flock when
its process dies, so kill -9 never leaves a stale lock. Why the store needs it at all: see
:mod:`curate.store`."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

from curate.errors import ConflictError

LOCK_FILE = ".curate-writer.lock"
LOCK_TIMEOUT_ENV = "CURATE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 10.0


class WriterLock:
    """The flock on ``folder/.curate-writer.lock`` (not re-entrant: :class:`Store` counts)."""

    def __init__(self, folder: Path, timeout: float | None = None):
        self.folder = folder
        if timeout is None:
            timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self, what: str) -> None:
        """Take the lock, waiting up to ``timeout`` seconds, then raise
        :class:`ConflictError` naming the holder. ``what`` goes into the file for that message."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(self.timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    writer = describe_holder(self.path)
                    os.close(fd)
                    raise ConflictError(
                        f"{self.folder} is being written by {writer}; waited "
                        f"{self.timeout:g}s for its writer lock (set {LOCK_TIMEOUT_ENV} to "
                        "wait longer), nothing was changed: rerun when it has finished"
                    ) from None
                time.sleep(0.05)
            except BaseException:
                os.close(fd)
                raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "command": _command_line(),
            "since": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a reader of the file never sees a holder that left
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def holder(self) -> str | None:
        """Who holds the lock, as the conflict message names it; None when free."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return describe_holder(self.path)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def describe_holder(path: Path) -> str:
    """The lock file's holder in words: pid, host when not this one, command, what, since."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        return "another process"
    host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
    return (
        f"pid {info.get('pid')}{host} running `{info.get('command')}` "
        f"({info.get('what')}, since {info.get('since')})"
    )


def _command_line() -> str:
    """This process's command as a user typed it (``python -m curate`` shows as curate)."""
    program = Path(sys.argv[0])
    name = program.parent.name if program.name == "__main__.py" else program.name
    return " ".join([name, *sys.argv[1:]])[:300]
