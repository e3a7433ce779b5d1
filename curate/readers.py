"""The readers that turn source files into streams of ``(line, record)`` pairs.

Every container (JSON lines, a JSON array, Parquet, CSV, a Hugging Face dataset) is read as
a stream of ``(line, record)`` pairs by :func:`read_records`; :mod:`curate.records`
normalises each record into the canonical row. Pools and eval sets share both.

The rules every reader applies: a missing path, a directory or an unreadable file is one
:class:`InvalidInputError` naming the path; a UTF-8 byte-order mark is skipped; a source with
no records (an empty or whitespace-only file, ``[]``, a CSV with only a header, an empty
Parquet file or dataset) is an error.
"""

from __future__ import annotations

import csv
import errno
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import InvalidInputError, param
from curate.records import RECORD_SHAPES

FORMATS = ("auto", "alpaca", "sharegpt", "messages", "jsonl", "parquet", "csv")

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
            f"unknown format for extension {suffix!r}; pass {param('format')} "
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
