"""Question / reference-answer files: the Vicuna, WizardLM and AlpacaEval layouts.

The files name the question ``text`` (Vicuna), ``Instruction`` (WizardLM) or
``instruction`` (AlpacaEval), and the reference answer ``answer`` or ``output``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import InvalidInputError
from curate.records import BadLine, read_records

QUESTION_FIELDS = ("text", "Instruction", "instruction")
ANSWER_FIELDS = ("answer", "output")
ID_FIELDS = ("question_id", "idx", "id")
CATEGORY_FIELDS = ("category", "Skill", "dataset")


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    reference: str | None
    category: str | None = None

    def as_row(self, answer: str | None = None) -> dict[str, Any]:
        """The pool-row shape that :mod:`curate.prompts` renders (single turn, no input)."""
        return {"instruction": self.question, "input": "", "output": answer or ""}


@dataclass(frozen=True)
class EvalSet:
    path: Path
    sha256: str
    items: list[EvalItem]

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


def _first(rec: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((rec[f] for f in fields if rec.get(f) not in (None, "")), None)


def load_eval_set(
    path: str | Path, limit: int | None = None, need_reference: bool = False
) -> EvalSet:
    """Read a question file (JSON array or JSONL); ``limit`` keeps the first N questions."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(path, None, "no such eval file")
    items: list[EvalItem] = []
    seen: set[str] = set()
    for line, rec in read_records(str(path)):
        if limit is not None and len(items) >= limit:
            break
        if isinstance(rec, BadLine):
            raise InvalidInputError(path, line, rec.reason)
        if not isinstance(rec, dict):
            raise InvalidInputError(
                path, line, f"record must be an object, got {type(rec).__name__}"
            )
        question = _first(rec, QUESTION_FIELDS)
        if not isinstance(question, str):
            raise InvalidInputError(
                path, line, f"no question field (expected one of {', '.join(QUESTION_FIELDS)})"
            )
        reference = _first(rec, ANSWER_FIELDS)
        if need_reference and not isinstance(reference, str):
            raise InvalidInputError(
                path, line, f"no reference answer (expected one of {', '.join(ANSWER_FIELDS)})"
            )
        raw_id = _first(rec, ID_FIELDS)
        qid = str(raw_id) if raw_id is not None else str(len(items) + 1)
        if qid in seen:
            raise InvalidInputError(path, line, f"question id {qid!r} appears twice")
        seen.add(qid)
        category = _first(rec, CATEGORY_FIELDS)
        items.append(
            EvalItem(qid, question, reference, None if category is None else str(category))
        )
    if not items:
        raise InvalidInputError(path, None, "no questions in the file")
    return EvalSet(path, hashlib.sha256(path.read_bytes()).hexdigest(), items)
