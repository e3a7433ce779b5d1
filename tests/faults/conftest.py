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

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FaultTally:
    faults: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    tracebacks: int = 0

    def line(self) -> str:
        return (
            f"faults injected {self.faults}, rows lost {self.rows_lost}, "
            f"rows duplicated {self.rows_duplicated}, tracebacks shown {self.tracebacks}"
        )


TALLY = FaultTally()


def pytest_terminal_summary(terminalreporter):
    if TALLY.faults:
        terminalreporter.write_line(TALLY.line())


def curate_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop("CURATE_DEBUG", None)
    return env


def start(*args: str, cwd: Path, env: dict | None = None, user: list[str] | None = None):
    """``curate ARGS`` in its own process group (``user``: a prefix such as setpriv's)."""
    return subprocess.Popen(
        [*(user or []), sys.executable, "-m", "curate", *args],
        cwd=cwd,
        env=env or curate_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run(*args: str, cwd: Path, env: dict | None = None, user=None, timeout=600) -> Done:
    started = time.monotonic()
    proc = start(*args, cwd=cwd, env=env, user=user)
    out, err = proc.communicate(timeout=timeout)
    TALLY.tracebacks += err.count("Traceback")
    return Done(proc.returncode, out, err, time.monotonic() - started)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """kill -9 the process group after ``delay`` seconds; False if it had already ended."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
        TALLY.faults += 1
    _, err = proc.communicate(timeout=60)
    TALLY.tracebacks += err.count("Traceback")
    return killed


def pool_state(db: Path) -> list[tuple]:
    """The pool's rows in pool order as plain tuples (empty when there is none)."""
    from curate.store import Store

    store = Store(db)
    if not store.has_pool():
        return []
    table = store.read_pool()
    return list(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))


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


def one_error_line(done: Done, *needles: str, code: int = 1) -> str:
    """The run failed with ``code`` and exactly one line on stderr containing ``needles``
    (one injected fault, as the tally counts it)."""
    TALLY.faults += 1
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.error_lines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


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


def fill(disk: Path, leave_kb: int) -> None:
    """Fill ``disk`` until about ``leave_kb`` KiB are free."""
    free = shutil.disk_usage(disk).free - leave_kb * 1024
    if free > 0:
        with (disk / "ballast").open("ab") as fh:
            fh.write(b"\0" * free)


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


def records(start: int, stop: int, width: int = 40) -> list[dict]:
    return [
        {
            "instruction": f"Question {i}: what is {i} squared? " + "x" * (i % width),
            "input": "",
            "output": f"{i * i}",
        }
        for i in range(start, stop)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
