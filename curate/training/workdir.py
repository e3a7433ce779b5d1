"""The work folder beside ``--out``: checkpoints, the settings a resume must match, and the
final swap (written into ``staging/``, renamed over ``--out`` in one step)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from curate.files import canonical_json
from curate.targets import check_replaceable, holds_only
from curate.training.config import (
    CHECKPOINT_PREFIX,
    METRICS_FILE,
    RUN_FILE,
    WORK_SUFFIX,
    TrainingError,
)


def work_dir_for(out: Path) -> Path:
    """Checkpoints and staging live beside ``out`` (same filesystem, so the final move is a
    rename) and never inside it."""
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest ``checkpoint-N`` that finished saving (Trainer writes trainer_state.json last)."""
    done = [
        p
        for p in checkpoints.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _prepare_work_dir(work: Path, run: dict[str, Any], resume: bool) -> Path | None:
    """Start a fresh work folder, or with ``resume`` reuse one whose run matches; returns the
    checkpoint to resume from (None: start at step 0)."""
    run_file = work / RUN_FILE
    if resume and run_file.is_file():
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        if saved != run:
            changed = sorted(k for k in set(saved) | set(run) if saved.get(k) != run.get(k))
            raise TrainingError(
                f"{work}: its checkpoints come from a run with different {', '.join(changed)}; "
                "drop --resume to start over"
            )
        checkpoint = last_complete_checkpoint(work / "checkpoints")
        if checkpoint is not None:
            for partial in (work / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*"):
                if partial != checkpoint and not (partial / "trainer_state.json").is_file():
                    shutil.rmtree(partial, ignore_errors=True)
            return checkpoint
    shutil.rmtree(work, ignore_errors=True)
    (work / "checkpoints").mkdir(parents=True)
    run_file.write_text(canonical_json(run), encoding="utf-8")
    return None


def _check_out(out: Path, subset_path: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a folder")
    if subset_path.resolve().is_relative_to(out.resolve()):
        raise TrainingError(f"--out {out}: would replace the subset folder {subset_path}")
    # a model folder curate wrote (a rerun) is replaced; any other folder is refused
    check_replaceable(out, "model folder", is_model_folder, force=True)


def is_model_folder(path: Path) -> bool:
    """A folder :func:`train` wrote: its metrics file beside the weights, no subfolders."""
    return holds_only(path, ("*",), (METRICS_FILE,))
