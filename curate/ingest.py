"""``curate ingest``: source files → canonical rows in the LanceDB ``pool`` table.

All-or-nothing: rows are validated, deduplicated and staged batch by batch in an Arrow
file on disk, and only when every source has been read do they reach the pool, in one
append (one new table version). Any error before that leaves the pool exactly as it was.
Memory holds one batch of rows plus a 32-byte digest per unique row seen in this run.

The staging folder is ``<db>/.curate-staging-<pid>/``: on the database's own disk (one
disk to fill, one place to look) and removed when the ingest ends. One left by an ingest
killed with -9 is removed by the next ingest, which holds the writer lock, once the pid in
its name is gone. Rejects of ``--skip-invalid`` go beside the first source,
``<source>.rejects.jsonl``, unless ``rejects_path`` says otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.conversations import RESHAPES
from curate.errors import InvalidInputError
from curate.files import atomic_write_text, naming_path, owner_pid, pid_alive
from curate.progress import NO_PROGRESS, Progress
from curate.readers import ArrayPosition, BadLine, read_records, record_shape_for
from curate.records import Example, has_explicit_id, to_example
from curate.store import POOL_SCHEMA, Store


@dataclass
class IngestReport:
    sources: list[str]
    read: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejects_path: str | None = None
    version_before: int | None = None
    version_after: int | None = None
    seconds: float = 0.0
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    # Turns the chat-shape rule (curate.conversations) dropped or joined in accepted rows.
    reshaped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Staging:
    """Validated, deduplicated rows waiting for the single append to the pool."""

    store: Store
    path: Path
    next_pos: int
    batch_size: int
    seen_hashes: set[bytes] = field(default_factory=set)
    explicit_ids: dict[str, str] = field(default_factory=dict)
    pending: list[tuple[str, int, Example, bool]] = field(default_factory=list)
    writer: pa.RecordBatchStreamWriter | None = None
    rows: int = 0
    pool_duplicates: int = 0  # rows dropped because the pool already holds their content

    def offer(self, source: str, line: int, example: Example, explicit: bool) -> bool:
        """Queue a row; False if it duplicates a row already seen in this run."""
        digest = bytes.fromhex(example.hash)
        if digest in self.seen_hashes:
            return False
        if explicit:
            other = self.explicit_ids.get(example.id)
            if other is not None and other != example.hash:
                raise InvalidInputError(
                    source, line, f"id {example.id!r} is used by two different records"
                )
            self.explicit_ids[example.id] = example.hash
        self.seen_hashes.add(digest)
        self.pending.append((source, line, example, explicit))
        if len(self.pending) >= self.batch_size:
            self.flush()
        return True

    def flush(self) -> None:
        """Drop rows already in the pool, check id clashes with it, stage the rest."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        in_pool = set(
            self.store.lookup_pool("hash", [e.hash for _, _, e, _ in batch], ["hash"])[
                "hash"
            ].to_pylist()
        )
        fresh = [item for item in batch if item[2].hash not in in_pool]
        explicit = [e.id for _, _, e, x in fresh if x]
        clashes = self.store.lookup_pool("id", explicit, ["id", "hash"])
        if clashes.num_rows:
            clash_id = clashes["id"][0].as_py()
            source, line = next((s, n) for s, n, e, _ in fresh if e.id == clash_id)
            raise InvalidInputError(
                source, line, f"id {clash_id!r} is already in the pool with different content"
            )
        rows = []
        for _, _, example, _ in fresh:
            rows.append({"pos": self.next_pos, **example.to_dict()})
            self.next_pos += 1
        if rows:
            with naming_path(self.path):
                if self.writer is None:
                    self.writer = pa.ipc.new_stream(str(self.path), POOL_SCHEMA)
                self.writer.write_table(pa.Table.from_pylist(rows, schema=POOL_SCHEMA))
            self.rows += len(rows)
        self.pool_duplicates += len(batch) - len(fresh)

    def commit(self, log: dict) -> int | None:
        """Append all staged rows to the pool in one version, logged with ``log``; None if
        nothing was staged."""
        if self.writer is None:
            return None
        with naming_path(self.path):
            self.writer.close()
        with pa.OSFile(str(self.path)) as source:  # not mmap: mapped pages count as RSS
            return self.store.append_pool(pa.ipc.open_stream(source), ingest_log=log)


def ingest(
    store: Store,
    sources: Iterable[str],
    fmt: str = "auto",
    source_name: str | None = None,
    skip_invalid: bool = False,
    rejects_path: str | Path | None = None,
    batch_size: int = 2048,
    progress: Progress = NO_PROGRESS,
) -> IngestReport:
    """Read every source, then append the new unique rows to the pool in one version."""
    sources = list(sources)
    started = time.perf_counter()
    # The writer lock spans next_pos, every dedup lookup and the commit: a concurrent
    # ingest could otherwise store the same rows twice or reuse positions.
    with store.writing("ingest"):
        progress.start(None, "records", "ingest")
        report = IngestReport(sources=sources, version_before=store.pool_version())
        rejects: list[dict] = []
        with _staging_dir(store.path) as tmp:
            staging = _Staging(store, tmp / "rows.arrow", store.next_pos(), batch_size)
            shape = record_shape_for(fmt)
            total_reshaped: Counter = Counter()
            for source in sources:
                label = source_name or _default_source_name(source)
                counts = report.per_source.setdefault(
                    source, {"read": 0, "duplicates": 0, "rejected": 0}
                )
                pool_duplicates_before = staging.pool_duplicates
                for line, record in read_records(source, fmt):
                    counts["read"] += 1
                    progress.advance(1)
                    reshaped: Counter = Counter()
                    try:
                        if isinstance(record, BadLine):
                            raise ValueError(record.reason)
                        example = to_example(record, label, shape, reshaped)
                    except ValueError as err:
                        if not skip_invalid:
                            raise InvalidInputError(source, line, str(err)) from None
                        counts["rejected"] += 1
                        rejects.append(
                            {
                                "source": source,
                                "line": line,
                                **(
                                    {"index": line.index} if isinstance(line, ArrayPosition) else {}
                                ),
                                "reason": str(err),
                                "record": _jsonable(record),
                            }
                        )
                        continue
                    if not staging.offer(source, line, example, has_explicit_id(record)):
                        counts["duplicates"] += 1
                    total_reshaped.update(reshaped)
                staging.flush()
                counts["duplicates"] += staging.pool_duplicates - pool_duplicates_before
            report.read = sum(c["read"] for c in report.per_source.values())
            report.rejected = sum(c["rejected"] for c in report.per_source.values())
            report.duplicates = sum(c["duplicates"] for c in report.per_source.values())
            report.added = staging.rows
            report.reshaped = {k: total_reshaped[k] for k in RESHAPES if total_reshaped[k]}
            if rejects:
                report.rejects_path = str(_write_rejects(rejects, rejects_path, sources[0]))
            # Duplicates are not stored, so the ingest log is where their count lives.
            version = staging.commit(
                {
                    "sources": json.dumps(report.sources),
                    **{k: getattr(report, k) for k in ("read", "added", "duplicates", "rejected")},
                }
            )
    report.version_after = version if version is not None else report.version_before
    report.seconds = time.perf_counter() - started
    return report


STAGING_PREFIX = ".curate-staging-"


@contextmanager
def _staging_dir(db: Path) -> Iterator[Path]:
    """``<db>/.curate-staging-<pid>/``, after removing those of killed ingests (the caller
    holds the writer lock, and a pid that is still alive is never touched)."""
    with naming_path(db):
        db.mkdir(parents=True, exist_ok=True)
        for leftover in db.glob(f"{STAGING_PREFIX}*"):
            pid = owner_pid(leftover.name, STAGING_PREFIX)
            if pid is not None and pid != os.getpid() and not pid_alive(pid):
                shutil.rmtree(leftover, ignore_errors=True)
        path = db / f"{STAGING_PREFIX}{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _default_source_name(source: str) -> str:
    if source.startswith("hf://"):
        return source[len("hf://") :].split(":")[0]
    return Path(source).stem


def _jsonable(record) -> object:
    if isinstance(record, BadLine):
        return None
    try:
        json.dumps(record)
        return record
    except (TypeError, ValueError):
        return repr(record)


def default_rejects_path(source: str) -> Path:
    """``<source>.rejects.jsonl`` beside a file source; for ``hf://`` the dataset name in
    the current folder."""
    if source.startswith("hf://"):
        return Path(f"{_default_source_name(source).replace('/', '_')}.rejects.jsonl")
    return Path(f"{source}.rejects.jsonl")


def _write_rejects(rejects: list[dict], path: str | Path | None, first_source: str) -> Path:
    target = Path(path) if path else default_rejects_path(first_source)
    text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in rejects)
    return atomic_write_text(target, text)
