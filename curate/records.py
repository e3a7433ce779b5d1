"""The canonical example row and the readers that turn source files into it.

Every source format (Alpaca JSON/JSONL with optional LIMA ``history``, Dolly, ShareGPT,
OpenAI ``messages``, TRL ``prompt``/``completion``, Parquet, CSV, Hugging Face datasets) is
read as a stream of ``(line, record)`` pairs by :func:`read_records` and normalised by
:func:`normalise` (:func:`to_example` for pool rows). Pools and eval sets share both.

The rules every reader applies: a missing path, a directory or an unreadable file is one
:class:`InvalidInputError` naming the path; a UTF-8 byte-order mark is skipped; a source with
no records (an empty or whitespace-only file, ``[]``, a CSV with only a header, an empty
Parquet file or dataset) is an error; text fields must be strings (``42`` or ``true`` is
rejected, never coerced). A record that cannot be normalised raises ``ValueError`` with the
reason, which callers turn into :class:`InvalidInputError` naming the file and line.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import itertools
import json
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curate.conversations import ROLES, canonical_turns
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


# ----------------------------------------------------------------------------- readers

BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}


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
            if line_no == 1:
                raw = raw.removeprefix(BOM)
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


def _first_byte(path: Path) -> bytes:
    """The first byte that is not whitespace (after a BOM), or b"" for a blank file."""
    with path.open("rb") as fh:
        chunk = fh.read(1 << 16).removeprefix(BOM)
        while chunk:
            rest = chunk.lstrip(_WHITESPACE)
            if rest:
                return rest[:1]
            chunk = fh.read(1 << 16)
    return b""


class ArrayPosition(int):
    """Where a JSON-array element starts: the line (this int, for every caller that wants a
    line), the element's index in the array and its ``id`` when it has one. An error names
    ``pool.json: record [11] (id "conv-11")``, not line 1 of a one-line export (the line
    comes first when it says more: ``pool.json:57: record [11]``)."""

    index: int
    record_id: str | None

    def __new__(cls, line: int, index: int, record_id: str | None = None) -> ArrayPosition:
        position = super().__new__(cls, line)
        position.index, position.record_id = index, record_id
        return position

    def where(self, path: str) -> str:
        where = f"{path}:{int(self)}" if self > 1 else path
        where += f": record [{self.index}]"
        if self.record_id is not None:
            where += f" (id {json.dumps(self.record_id, ensure_ascii=False)})"
        return where


def _record_id(value: Any) -> str | None:
    raw = value.get("id") if isinstance(value, dict) else None
    return str(raw).strip()[:80] if raw not in (None, "") else None


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array element by element (with the line each element starts on, its index and
    id: :class:`ArrayPosition`), or JSON Lines when the first character is ``{``: the
    content decides, not the extension."""
    first = _first_byte(path)
    if first == b"{":
        yield from _read_jsonl(path)
        return
    if not first:
        return  # blank: read_records reports a source with no records
    raw = path.read_bytes()
    text = _decode(raw, str(path), lambda pos: raw.count(b"\n", 0, pos) + 1)
    text = text.removeprefix("\ufeff")
    decoder = json.JSONDecoder()
    ws = " \t\r\n"

    def skip(p: int) -> int:
        while p < len(text) and text[p] in ws:
            p += 1
        return p

    def fail(p: int, reason: str):
        raise InvalidInputError(path, text.count("\n", 0, p) + 1, reason)

    pos = skip(0)
    if text[pos] != "[":
        fail(pos, "malformed JSON: expected a JSON array of records, or one record per line")
    pos = skip(pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    line, counted = 1, 0  # line number of `counted`, advanced incrementally
    for index in itertools.count():
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            where = ArrayPosition(err.lineno, index)
            raise InvalidInputError(path, where, f"malformed JSON: {err.msg}") from None
        yield ArrayPosition(line, index, _record_id(value)), value
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
    if not raw.removeprefix(BOM).strip(_WHITESPACE):
        return  # blank: read_records reports a source with no records
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise InvalidInputError(path, 1, "CSV has no header row")
        start = reader.line_num + 1
        for row in reader:
            yield start, {k: v for k, v in row.items() if k is not None}
            start = reader.line_num + 1


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    if not _first_byte(path):
        return  # blank: read_records reports a source with no records
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InvalidInputError(path, None, f"not a readable Parquet file: {reason}") from None
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


def _os_reason(err: OSError) -> str:
    """One line for an OS error on a source path, saying what to do."""
    if err.errno == errno.ENOENT:
        return "no such file"
    if err.errno == errno.EISDIR:
        return "is a directory, not a file: name the files in it (or hf://DIR for a dataset)"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied: cannot read this file (check its permissions)"
    detail = (err.strerror or str(err) or type(err).__name__).splitlines()[0]
    return f"cannot read: {detail}"


def _guarded(source: str, path: Path | None, records: Iterator) -> Iterator[tuple[int, Any]]:
    """Every reader's shared rules: an OS error while reading is one line naming the source,
    and a source that yields no records at all is an error."""
    count = 0
    try:
        for item in records:
            count += 1
            yield item
    except OSError as err:
        raise InvalidInputError(source, None, _os_reason(err)) from None
    if count == 0:
        blank = path is not None and not _first_byte(path)
        raise InvalidInputError(
            source, None, "the file is empty: no records" if blank else "no records"
        )


def source_container(source: str, fmt: str = "auto") -> str:
    """The container a file is read as: ``jsonl``, ``json`` (array or lines, decided by
    content), ``parquet`` or ``csv``. ``--format jsonl|parquet|csv`` forces one; otherwise
    the extension decides, and a record shape (``--format alpaca``...) on a file with any
    other extension (``x.txt``, an export named ``r.alpaca``) is read as JSON."""
    if fmt in ("jsonl", "parquet", "csv"):
        return fmt
    container = _EXTENSIONS.get(Path(source).suffix.lower())
    if container is None and fmt in RECORD_SHAPES:
        container = "json"
    if container is None:
        suffix = Path(source).suffix
        raise InvalidInputError(
            source,
            None,
            f"unknown format for extension {suffix!r}; pass --format "
            "(alpaca, sharegpt or messages for JSON; jsonl, parquet or csv)",
        )
    return container


def read_records(source: str, fmt: str = "auto") -> Iterator[tuple[int, Any]]:
    """Stream ``(line_or_row, record)`` from a file or ``hf://`` spec.

    A missing path, a directory, an unreadable file or an unknown container is reported
    here, before any record is read; errors while reading and an empty source when the
    stream is consumed. Every error is an :class:`InvalidInputError` naming the source.
    """
    if fmt not in FORMATS:
        raise InvalidInputError(source, None, f"unknown format {fmt!r}; choose from {FORMATS}")
    if source.startswith("hf://"):
        return _guarded(source, None, _read_hf(source))
    path = Path(source)
    if path.is_dir():
        raise InvalidInputError(source, None, _os_reason(IsADirectoryError(errno.EISDIR, "")))
    try:
        with path.open("rb"):  # fail here, before any record, when it cannot be read
            pass
    except OSError as err:
        raise InvalidInputError(source, None, _os_reason(err)) from None
    reader = {
        "jsonl": _read_jsonl,
        "json": _read_json,
        "parquet": _read_parquet,
        "csv": _read_csv,
    }[source_container(source, fmt)]
    return _guarded(source, path, reader(path))


def record_shape_for(fmt: str) -> str:
    """The record shape ``--format`` forces (``auto`` for container formats)."""
    return fmt if fmt in RECORD_SHAPES else "auto"
