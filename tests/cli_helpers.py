"""Two ways tests run the real `curate` entry point: in-process (fast, wiring) and as a
subprocess (exit codes and stderr exactly as a user sees them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from curate.cli import main


def run_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """Run `curate ARGS` in this process → (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["curate", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m curate ARGS` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "curate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
