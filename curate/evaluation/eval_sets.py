"""Question / reference-answer files, read by the same readers and normaliser as pools.

Any source ``curate ingest`` reads is an eval set: JSON arrays, JSON Lines, Parquet, CSV,
``hf://`` datasets, in the Alpaca/Dolly, ShareGPT, ``messages`` or TRL ``prompt``/
``completion`` shapes (the reference answer is the output, the last assistant turn or the
completion, and may be absent when only answers are generated). On top of those, the
layouts of the usual question files: the question named ``text`` (Vicuna) or
``Instruction`` (WizardLM) and the reference answer ``answer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import InvalidInputError
from curate.files import sha256_bytes, sha256_file
from curate.readers import BadLine, read_records
from curate.records import normalise

# Where the question may be: eval-file spellings first, then every pool shape's field.
QUESTION_FIELDS = ("text", "Instruction", "instruction", "prompt", "conversations", "messages")
ANSWER_FIELDS = ("answer", "output", "response", "completion")
ID_FIELDS = ("question_id", "idx", "id")
CATEGORY_FIELDS = ("category", "Skill", "dataset")
_QUESTION_ALIASES = ("text", "Instruction")  # → instruction
_ANSWER_ALIASES = ("answer",)  # → output


@dataclass(frozen=True)
class EvalItem:
    """One question. ``question`` is what a reader (or judge) sees: the instruction, then its
    input. ``context`` holds the turns before the answer for a multi-turn question."""

    id: str
    question: str
    reference: str | None
    category: str | None = None
    instruction: str = ""
    input: str = ""
    context: tuple[dict[str, str], ...] | None = None

    def as_row(self, answer: str | None = None) -> dict[str, Any]:
        """The pool-row shape that :mod:`curate.prompts` renders, answered by ``answer``."""
        row: dict[str, Any] = {
            "instruction": self.instruction or self.question,
            "input": self.input,
            "output": answer or "",
        }
        if self.context:
            turns = [dict(turn) for turn in self.context]
            if answer:
                turns.append({"role": "assistant", "content": answer})
            row["messages"] = turns
        return row


@dataclass(frozen=True)
class EvalSet:
    path: Path | str  # a file, or the hf:// spec it was read from
    sha256: str
    items: list[EvalItem]

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


def _first(rec: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((rec[f] for f in fields if rec.get(f) not in (None, "", [])), None)


def _with_aliases(rec: dict[str, Any]) -> dict[str, Any]:
    """Vicuna's ``text`` and WizardLM's ``Instruction``/``answer`` under the pool names."""
    if any(k in rec for k in ("conversations", "messages", "prompt")):
        return rec
    out = dict(rec)
    question = _first(rec, (*_QUESTION_ALIASES, "instruction"))
    if question is not None:
        out["instruction"] = question
    if _first(rec, ("output", "response")) is None:
        answer = _first(rec, _ANSWER_ALIASES)
        if answer is not None:
            out["output"] = answer
    return out


def _item(rec: Any, qid: str, category: Any) -> EvalItem:
    instruction, input_, output, messages = normalise(_with_aliases(rec), need_output=False)
    context = None
    if messages:
        turns = messages[:-1] if messages[-1]["role"] == "assistant" else messages
        context = tuple(turns)
    question = f"{instruction}\n\n{input_}" if input_ else instruction
    return EvalItem(
        qid,
        question,
        output or None,
        None if category is None else str(category),
        instruction,
        input_,
        context,
    )


def load_eval_set(
    path: str | Path, limit: int | None = None, need_reference: bool = False
) -> EvalSet:
    """Read a question file (any source ``ingest`` reads); ``limit`` keeps the first N."""
    source = str(path)
    items: list[EvalItem] = []
    seen: set[str] = set()
    for line, rec in read_records(source):
        if limit is not None and len(items) >= limit:
            break
        if isinstance(rec, BadLine):
            raise InvalidInputError(source, line, rec.reason)
        if not isinstance(rec, dict):
            raise InvalidInputError(
                source, line, f"record must be an object, got {type(rec).__name__}"
            )
        if _first(rec, QUESTION_FIELDS) is None:
            raise InvalidInputError(
                source, line, f"no question field (expected one of {', '.join(QUESTION_FIELDS)})"
            )
        raw_id = _first(rec, ID_FIELDS)
        qid = str(raw_id) if raw_id is not None else str(len(items) + 1)
        try:
            item = _item(rec, qid, _first(rec, CATEGORY_FIELDS))
        except ValueError as err:
            raise InvalidInputError(source, line, str(err)) from None
        if need_reference and item.reference is None:
            raise InvalidInputError(
                source,
                line,
                "no reference answer (expected one of "
                f"{', '.join(ANSWER_FIELDS)}, or a final assistant turn)",
            )
        if qid in seen:
            raise InvalidInputError(source, line, f"question id {qid!r} appears twice")
        seen.add(qid)
        items.append(item)
    if not items:
        raise InvalidInputError(source, None, "no questions in the file")
    return EvalSet(*_identity(source, items), items)


def _identity(source: str, items: list[EvalItem]) -> tuple[Path | str, str]:
    """The file and its bytes' sha256; for an ``hf://`` dataset, the spec and the sha256 of
    the questions and references read from it."""
    if source.startswith("hf://"):
        blob = json.dumps(
            [[i.id, i.question, i.reference, i.context] for i in items],
            ensure_ascii=False,
            sort_keys=True,
        )
        return source, sha256_bytes(blob.encode("utf-8"))
    return Path(source), sha256_file(source)
