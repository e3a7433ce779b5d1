"""The canonical example row and the readers that turn source files into it.

Every source format (Alpaca JSON/JSONL with optional LIMA ``history``, Dolly, ShareGPT,
OpenAI ``messages``, Parquet, CSV, Hugging Face datasets) is read as a stream of
``(line, record)`` pairs and normalised by :func:`to_example`. A record that cannot be
normalised raises :class:`InvalidInputError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curate.errors import InvalidInputError

FORMATS = ("auto", "alpaca", "sharegpt", "messages", "jsonl", "parquet", "csv")
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
        return cls(**{k: row.get(k) for k in cls.__dataclass_fields__})


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()


def content_hash(instruction: str, input: str, output: str, messages: list | None) -> str:
    """sha256 of the normalised content; identical content from any source hashes equal."""
    payload = {"instruction": instruction, "input": input, "output": output}
    if messages:
        payload["messages"] = [[m["role"], m["content"]] for m in messages]
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from CSV/Parquet
        return ""
    if not isinstance(value, str):
        if isinstance(value, int | float):
            return str(value)
        raise ValueError(f"field '{field}' must be a string, got {type(value).__name__}")
    return _norm(value)


def _from_alpaca(rec: dict[str, Any]) -> tuple[str, str, str, list | None]:
    instruction = _text(rec.get("instruction"), "instruction")
    # Dolly names the input "context" and the output "response".
    input_ = _text(rec.get("input", rec.get("context")), "input")
    output = _text(rec.get("output", rec.get("response")), "output")
    if not instruction:
        raise ValueError("missing or empty 'instruction'")
    if not output:
        raise ValueError("missing or empty 'output'")
    history = rec.get("history") or []
    if not history:
        return instruction, input_, output, None
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of [user, assistant] pairs")
    messages: list[dict[str, str]] = []
    for i, pair in enumerate(history):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ValueError(f"'history[{i}]' must be a [user, assistant] pair")
        user, assistant = _text(pair[0], "history"), _text(pair[1], "history")
        if not user or not assistant:
            raise ValueError(f"'history[{i}]' has an empty turn")
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    last_user = f"{instruction}\n\n{input_}" if input_ else instruction
    messages += [{"role": "user", "content": last_user}, {"role": "assistant", "content": output}]
    return instruction, input_, output, messages


def _from_turns(turns: Any, role_key: str, text_key: str, field: str, roles: dict | None):
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"'{field}' must be a non-empty list")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ValueError(f"'{field}[{i}]' needs '{role_key}' and '{text_key}'")
        role = str(turn[role_key]).lower()
        role = roles.get(role) if roles is not None else role
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"'{field}[{i}]' has unknown role {turn[role_key]!r}")
        content = _text(turn[text_key], f"{field}[{i}].{text_key}")
        if not content:
            raise ValueError(f"'{field}[{i}]' has empty content")
        messages.append({"role": role, "content": content})
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise ValueError(f"'{field}' has no user turn (missing instruction)")
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"'{field}' does not end with an assistant turn (missing output)")
    instruction, output = users[-1]["content"], messages[-1]["content"]
    single_turn = len(messages) == 2 and messages[0]["role"] == "user"
    return instruction, "", output, None if single_turn else messages


def record_shape(rec: dict[str, Any]) -> str:
    if "conversations" in rec:
        return "sharegpt"
    if "messages" in rec:
        return "messages"
    return "alpaca"


def to_example(rec: Any, source: str, shape: str = "auto") -> Example:
    """Normalise one source record. Raises ValueError with a reason when it is unusable."""
    if not isinstance(rec, dict):
        raise ValueError(f"record must be an object, got {type(rec).__name__}")
    shape = record_shape(rec) if shape not in RECORD_SHAPES else shape
    if shape == "sharegpt":
        turns = rec.get("conversations")
        fields = _from_turns(turns, "from", "value", "conversations", _SHAREGPT_ROLES)
    elif shape == "messages":
        fields = _from_turns(rec.get("messages"), "role", "content", "messages", None)
    else:
        fields = _from_alpaca(rec)
    instruction, input_, output, messages = fields
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


# ----------------------------------------------------------------------------- readers


def _decode(raw: bytes, path: str, line_of) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            path, line_of(err.start), f"invalid UTF-8 byte 0x{raw[err.start]:02x}"
        ) from None


@dataclass(frozen=True)
class BadLine:
    """A line a line-oriented reader could not parse; ingest rejects or skips it."""

    reason: str


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                yield line_no, BadLine(f"invalid UTF-8 byte 0x{raw[err.start]:02x}")
                continue
            if not text:
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as err:
                yield line_no, BadLine(f"malformed JSON: {err.msg} (column {err.colno})")


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array, element by element, with the line each element starts on."""
    raw = path.read_bytes()
    text = _decode(raw, str(path), lambda pos: raw.count(b"\n", 0, pos) + 1)
    decoder = json.JSONDecoder()
    ws = " \t\r\n"

    def skip(p: int) -> int:
        while p < len(text) and text[p] in ws:
            p += 1
        return p

    def fail(p: int, reason: str):
        raise InvalidInputError(path, text.count("\n", 0, p) + 1, reason)

    pos = skip(0)
    if pos < len(text) and text[pos] == "{":
        # one object per line saved as .json: read it as JSON Lines
        yield from _read_jsonl(path)
        return
    if pos >= len(text) or text[pos] != "[":
        fail(pos, "malformed JSON: expected a JSON array of records")
    pos = skip(pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    line, counted = 1, 0  # line number of `counted`, advanced incrementally
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise InvalidInputError(path, err.lineno, f"malformed JSON: {err.msg}") from None
        yield line, value
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            if skip(pos + 1) != len(text):
                fail(skip(pos + 1), "malformed JSON: extra data after the array")
            return
        fail(pos, "malformed JSON: expected ',' or ']' between records")


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as probe:
        raw = probe.read()
    _decode(raw, str(path), lambda pos: raw.count(b"\n", 0, pos) + 1)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise InvalidInputError(path, 1, "CSV has no header row")
        start = reader.line_num + 1
        for row in reader:
            yield start, {k: v for k, v in row.items() if k is not None}
            start = reader.line_num + 1


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise InvalidInputError(path, None, f"not a readable Parquet file: {err}") from None
    row = 0
    for batch in pf.iter_batches(batch_size=2048):
        for rec in batch.to_pylist():
            row += 1
            yield row, _plain(rec)


def _plain(value: Any) -> Any:
    """numpy/arrow containers from Parquet or datasets → plain Python lists and dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def _read_hf(spec: str) -> Iterator[tuple[int, Any]]:
    """``hf://<dataset-id-or-local-folder>[:split]`` through the ``datasets`` library."""
    import datasets

    target = spec[len("hf://") :]
    name, _, split = target.partition(":")
    split = split or "train"
    local = Path(name)
    try:
        if (local / "dataset_info.json").exists() or (local / "state.json").exists():
            ds = datasets.load_from_disk(str(local))
        elif (local / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(local))[split]
        else:
            ds = datasets.load_dataset(name, split=split, streaming=not local.exists())
    except Exception as err:  # datasets raises many types: missing split, no network, ...
        raise InvalidInputError(spec, None, f"cannot load dataset: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split]
    for row, rec in enumerate(ds, start=1):
        yield row, _plain(rec)


def read_records(source: str, fmt: str = "auto") -> Iterator[tuple[int, Any]]:
    """Stream ``(line_or_row, record)`` from a file or ``hf://`` spec."""
    if fmt not in FORMATS:
        raise InvalidInputError(source, None, f"unknown format {fmt!r}; choose from {FORMATS}")
    if source.startswith("hf://"):
        return _read_hf(source)
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(source, None, "no such file")
    container = fmt if fmt in ("jsonl", "parquet", "csv") else None
    if container is None:
        container = {
            ".jsonl": "jsonl",
            ".ndjson": "jsonl",
            ".json": "json",
            ".parquet": "parquet",
            ".pq": "parquet",
            ".csv": "csv",
        }.get(path.suffix.lower())
    if container is None:
        raise InvalidInputError(
            source, None, f"unknown format for extension {path.suffix!r}; pass --format"
        )
    reader = {
        "jsonl": _read_jsonl,
        "json": _read_json,
        "parquet": _read_parquet,
        "csv": _read_csv,
    }[container]
    return reader(path)


def record_shape_for(fmt: str) -> str:
    """The record shape ``--format`` forces (``auto`` for container formats)."""
    return fmt if fmt in RECORD_SHAPES else "auto"
