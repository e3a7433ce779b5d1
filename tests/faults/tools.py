"""Helpers the fault tests share, and the tally the suite's summary line reports.

A plain module (imported as ``tests.faults.tools`` by the tests and by conftest.py alike),
so there is one tally however pytest names conftest modules.
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

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FaultTally:
    faults: int = 0
    rows_lost: int = 0
    rows_duplicated: int = 0
    tracebacks: int = 0
    hostile: int = 0  # hostile inputs refused (a name, a manifest, a target, a setting)
    outside_writes: int = 0  # paths outside what the user named that a command changed

    def line(self) -> str:
        return (
            f"faults injected {self.faults} ({self.hostile} hostile inputs), rows lost "
            f"{self.rows_lost}, rows duplicated {self.rows_duplicated}, writes outside the "
            f"named target {self.outside_writes}, tracebacks shown {self.tracebacks}"
        )


TALLY = FaultTally()


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


def fill(disk: Path, leave_kb: int) -> None:
    """Fill ``disk`` until about ``leave_kb`` KiB are free."""
    free = shutil.disk_usage(disk).free - leave_kb * 1024
    if free > 0:
        with (disk / "ballast").open("ab") as fh:
            fh.write(b"\0" * free)


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


def refused(result, *needles: str, code: int) -> str:
    """A hostile input (``result``: the `cli` fixture's CliResult) was refused with ``code``
    and exactly one line on stderr holding ``needles``; counted in the summary line."""
    TALLY.faults += 1
    TALLY.hostile += 1
    TALLY.tracebacks += result.err.count("Traceback")
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == code, (result.code, result.err)
    assert len(lines) == 1, result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def untouched(before: dict, folder: Path) -> None:
    """``folder`` holds exactly ``before`` (counted as outside writes when not)."""
    after = snapshot(folder)
    changed = {k for k in set(before) | set(after) if before.get(k, 0) != after.get(k, 0)}
    TALLY.outside_writes += len(changed)
    assert not changed, sorted(changed)[:5]
