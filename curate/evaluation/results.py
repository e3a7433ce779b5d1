"""Result files: a metrics JSON of scalars (what ``dvc metrics`` reads) and its siblings.

``F.json`` holds only scalars and nested dicts of scalars; per-question values go to
``F.details.json``, generated answers to ``F.answers.jsonl`` and judge replies to
``F.judge-cache.jsonl``. Every file is written to a temp file and renamed into place, so a
failed run leaves the previous results as they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from curate.errors import EvalError
from curate.files import atomic_write_text


def details_path(metrics_file: str | Path) -> Path:
    path = Path(metrics_file)
    return path.with_name(f"{path.stem}.details.json")


def answers_path(metrics_file: str | Path) -> Path:
    path = Path(metrics_file)
    return path.with_name(f"{path.stem}.answers.jsonl")


def judge_cache_path(metrics_file: str | Path) -> Path:
    path = Path(metrics_file)
    return path.with_name(f"{path.stem}.judge-cache.jsonl")


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    blob = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    atomic_write_text(path, blob)


def read_json(path: str | Path, what: str = "metrics file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EvalError(f"{path}: malformed JSON ({err})") from None


def check_scalars(data: dict[str, Any], where: str = "") -> None:
    """Guard the ``dvc metrics`` contract: only scalars and dicts of scalars."""
    for key, value in data.items():
        if isinstance(value, dict):
            check_scalars(value, f"{where}{key}.")
        elif not (value is None or isinstance(value, bool | int | float | str)):
            raise TypeError(f"metrics field {where}{key} is a {type(value).__name__}, not a scalar")


class ModelEvalResult(NamedTuple):
    """A model's scores on an eval set: ``metrics`` (scalars, what ``dvc metrics`` reads)
    and ``details`` (per-question values, what ``curate eval compare`` pairs)."""

    metrics: dict[str, Any]
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.metrics
