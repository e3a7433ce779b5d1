"""The canonical example row, and the normalisation of a source record into it.

Every record shape (Alpaca with optional LIMA ``history``, Dolly, ShareGPT, OpenAI
``messages``, TRL ``prompt``/``completion``), as :mod:`curate.readers` streams it from a
file or dataset, is normalised by :func:`normalise` (:func:`to_example` for pool rows).
Pools and eval sets share both. Text fields must be strings (``42`` or ``true`` is
rejected, never coerced). A record that cannot be normalised raises ``ValueError`` with the
reason, which callers turn into :class:`InvalidInputError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from curate.conversations import ROLES, canonical_turns

RECORD_SHAPES = ("alpaca", "sharegpt", "messages")

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Example:
    """One pool row. ``messages`` is set for multi-turn (or system-prompted) conversations;
    ``instruction``/``output`` then hold the last user turn and the last assistant reply."""

    id: str
    instruction: str
    input: str
    output: str
    messages: list[dict[str, str]] | None
    category: str | None
    source: str
    hash: str
    n_chars: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Example:
        values: dict[str, Any] = {k: row.get(k) for k in cls.__dataclass_fields__}
        return cls(**values)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()


def content_hash(instruction: str, input: str, output: str, messages: list | None) -> str:
    """sha256 of the normalised content; identical content from any source hashes equal."""
    payload: dict[str, Any] = {"instruction": instruction, "input": input, "output": output}
    if messages:
        payload["messages"] = [[m["role"], m["content"]] for m in messages]
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _text(value: Any, field: str) -> str:
    """A text field, normalised; ``None`` and NaN (a null from Parquet) are empty. Anything
    but a string is an error: a number or boolean is never silently turned into text."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN: a null in a float column
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field '{field}' must be a string, got {_json_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # an escaped lone surrogate, "\ud800", in JSON
        raise ValueError(
            f"field '{field}' holds a lone surrogate U+{ord(value[err.start]):04X} at "
            f"character {err.start}, which is not Unicode text"
        ) from None
    return _norm(value)


Fields = tuple[str, str, str, list | None]  # instruction, input, output, messages


def _from_alpaca(
    rec: dict[str, Any], need_output: bool = True, counts: Counter | None = None
) -> Fields:
    instruction = _text(rec.get("instruction"), "instruction")
    # Dolly names the input "context" and the output "response".
    input_field = "input" if "input" in rec else "context"
    input_ = _text(rec.get(input_field), input_field)
    output_field = "output" if "output" in rec else "response"
    output = _text(rec.get(output_field), output_field)
    if not instruction:
        raise ValueError("missing or empty 'instruction'")
    if not output and need_output:
        raise ValueError("missing or empty 'output'")
    history = rec.get("history") or []
    if not history:
        return instruction, input_, output, None
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of [user, assistant] pairs")
    turns: list[dict[str, str]] = []
    for i, pair in enumerate(history):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"'history[{i}]' must be a [user, assistant] pair")
        turns += [
            {"role": "user", "content": _text(pair[0], f"history[{i}][0]")},
            {"role": "assistant", "content": _text(pair[1], f"history[{i}][1]")},
        ]
    last_user = f"{instruction}\n\n{input_}" if input_ else instruction
    turns.append({"role": "user", "content": last_user})
    turns.append({"role": "assistant", "content": output})
    messages = canonical_turns(turns, "history", need_output, counts)
    return instruction, input_, output, messages


def _from_turns(
    turns: Any,
    role_key: str,
    text_key: str,
    field: str,
    roles: dict | None,
    need_output: bool = True,
    counts: Counter | None = None,
) -> Fields:
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"'{field}' must be a non-empty list")
    raw = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ValueError(f"'{field}[{i}]' needs '{role_key}' and '{text_key}'")
        named = str(turn[role_key]).lower()
        role = roles.get(named) if roles is not None else named
        if role not in ROLES:
            raise ValueError(f"'{field}[{i}]' has unknown role {turn[role_key]!r}")
        raw.append({"role": role, "content": _text(turn[text_key], f"{field}[{i}].{text_key}")})
    messages = canonical_turns(raw, field, need_output, counts)
    answered = messages[-1]["role"] == "assistant"
    instruction = [m for m in messages if m["role"] == "user"][-1]["content"]
    output = messages[-1]["content"] if answered else ""
    single_turn = messages[0]["role"] == "user" and len(messages) == (2 if answered else 1)
    return instruction, "", output, None if single_turn else messages


def _from_prompt_completion(
    rec: dict[str, Any], need_output: bool = True, counts: Counter | None = None
) -> Fields:
    """TRL's prompt-completion rows: both strings, or both lists of role/content turns."""
    prompt, completion = rec.get("prompt"), rec.get("completion")
    if isinstance(prompt, list):
        if completion in (None, "", []):
            completion = []
        if not isinstance(completion, list):
            raise ValueError("'completion' must be a list of turns when 'prompt' is one")
        return _from_turns(
            prompt + completion, "role", "content", "prompt+completion", None, need_output, counts
        )
    instruction, output = _text(prompt, "prompt"), _text(completion, "completion")
    if not instruction:
        raise ValueError("missing or empty 'prompt'")
    if not output and need_output:
        raise ValueError("missing or empty 'completion'")
    return instruction, "", output, None


def record_shape(rec: dict[str, Any]) -> str:
    if "conversations" in rec:
        return "sharegpt"
    if "messages" in rec:
        return "messages"
    if "prompt" in rec and "instruction" not in rec:
        return "prompt-completion"
    return "alpaca"


def normalise(
    rec: Any, shape: str = "auto", need_output: bool = True, counts: Counter | None = None
) -> Fields:
    """``(instruction, input, output, messages)`` of one source record, in any shape.

    Conversations are brought to the canonical shape of :mod:`curate.conversations`; what
    was dropped or joined on the way is added to ``counts``. With ``need_output=False``
    (questions without answers) the output may be empty and a conversation may end with a
    user turn. Raises ValueError with a reason when unusable.
    """
    if not isinstance(rec, dict):
        raise ValueError(f"record must be an object, got {type(rec).__name__}")
    shape = record_shape(rec) if shape not in RECORD_SHAPES else shape
    if shape == "sharegpt":
        turns = rec.get("conversations")
        return _from_turns(
            turns, "from", "value", "conversations", _SHAREGPT_ROLES, need_output, counts
        )
    if shape == "messages":
        return _from_turns(
            rec.get("messages"), "role", "content", "messages", None, need_output, counts
        )
    if shape == "prompt-completion":
        return _from_prompt_completion(rec, need_output, counts)
    return _from_alpaca(rec, need_output, counts)


def to_example(
    rec: Any, source: str, shape: str = "auto", counts: Counter | None = None
) -> Example:
    """Normalise one source record. Raises ValueError with a reason when it is unusable."""
    instruction, input_, output, messages = normalise(rec, shape, counts=counts)
    digest = content_hash(instruction, input_, output, messages)
    raw_id = rec.get("id")
    id_ = str(raw_id).strip() if raw_id not in (None, "") else digest[:16]
    category = rec.get("category")
    category = _text(category, "category") or None if category is not None else None
    n_chars = (
        sum(len(m["content"]) for m in messages)
        if messages
        else len(instruction) + len(input_) + len(output)
    )
    return Example(id_, instruction, input_, output, messages, category, source, digest, n_chars)


def has_explicit_id(rec: Any) -> bool:
    return isinstance(rec, dict) and rec.get("id") not in (None, "")
