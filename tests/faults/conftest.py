"""The fault suite's shared parts: real `curate` processes, kill -9, a small disk, another
user, and the checker every fault ends with.

``fault_check`` is the checker. After a fault it asserts what issue 13 asks: the pool and
embedding tables open; the pool holds exactly the rows of the state before or of the state
after the command (no row lost, none twice, positions 0..n-1); embeddings hold at most one
row per pool row; every subset folder given verifies (`curate subsets verify`); no process
printed a traceback. Every fault is counted (a kill that landed, an error case), and the
session ends with one line:
``faults injected N, rows lost L, rows duplicated D, tracebacks shown T``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.faults.tools import TALLY, pool_state


def pytest_terminal_summary(terminalreporter):
    if TALLY.faults:
        terminalreporter.write_line(TALLY.line())


class Checker:
    """See the module doc; run after every fault."""

    def __call__(
        self,
        db: Path,
        before: list[tuple],
        after: list[tuple],
        subsets: list[Path] = (),
        embeddings: tuple[str, ...] = (),
    ) -> str:
        """Returns "old" or "new": which full state the pool is in."""
        from curate.store import Store

        store = Store(db)
        rows = pool_state(db)  # opens the pool table
        hashes = [r[_HASH] for r in rows]
        positions = [r[0] for r in rows]
        duplicated = len(hashes) - len(set(hashes))
        TALLY.rows_duplicated += duplicated
        nearest = before if len(rows) <= len(before) else after
        TALLY.rows_lost += len({r[_HASH] for r in nearest} - set(hashes))
        assert duplicated == 0, f"{duplicated} duplicate hashes in {db}"
        assert positions == list(range(len(rows))), "pool positions repeat or have gaps"
        assert rows in (before, after), (
            f"the pool holds {len(rows)} rows: neither the {len(before)} before "
            f"nor the {len(after)} after"
        )
        pool_keys = {(r[1], r[_HASH]) for r in rows}
        for name in embeddings:
            if not store.has_embeddings(name):
                continue
            stored = store.read_embeddings(name, ["id", "hash", "fingerprint"])
            keys = list(zip(stored["id"].to_pylist(), stored["hash"].to_pylist(), strict=True))
            fingerprints = stored["fingerprint"].to_pylist()
            current = [k for k, f in zip(keys, fingerprints, strict=True) if k in pool_keys]
            twice = len(current) - len(set(current))
            TALLY.rows_duplicated += twice
            assert twice == 0, f"embeddings {name!r}: {twice} pool rows have two vectors"
        from curate.subsets import verify_subset

        for subset in subsets:
            if subset.exists():  # what `curate subsets verify` runs; raises on any mismatch
                verify_subset(subset, store)
        return "old" if rows == before else "new"


_HASH = 8  # index of `hash` in a pool row (POOL_SCHEMA order)


@pytest.fixture(scope="session")
def fault_check() -> Checker:
    from curate.store import POOL_SCHEMA

    assert POOL_SCHEMA.names.index("hash") == _HASH
    return Checker()


# ----------------------------------------------------------------------------- small disk


@pytest.fixture
def small_disk(tmp_path):
    """A factory: ``small_disk(megabytes)`` mounts a tmpfs of that size and returns it.
    Skips where mounting is not allowed (the injected-error tests cover those machines)."""
    mounted: list[Path] = []

    def mount(megabytes: int, name: str = "disk") -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


# ----------------------------------------------------------------------------- another user

FAULT_USER = "curate-faults"


@pytest.fixture(scope="session")
def other_user() -> list[str]:
    """A command prefix that runs as an unprivileged user: as root, a system user made for
    the suite (``setpriv``); as anyone else, nothing (permissions already apply)."""
    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", FAULT_USER], capture_output=True).returncode != 0:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FAULT_USER],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            pytest.skip(f"cannot make an unprivileged user: {made.stderr.strip()}")
    uid = int(subprocess.run(["id", "-u", FAULT_USER], capture_output=True, text=True).stdout)
    gid = int(subprocess.run(["id", "-g", FAULT_USER], capture_output=True, text=True).stdout)
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


@pytest.fixture
def open_tmp() -> Path:
    """A temp folder every user may enter (pytest's own is private to its owner)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="curate-faults-"))
    path.chmod(0o755)
    yield path
    for inner in [path, *path.rglob("*")]:
        if inner.is_dir() and not inner.is_symlink():
            inner.chmod(0o755)  # a test may have made some read-only
    shutil.rmtree(path, ignore_errors=True)
