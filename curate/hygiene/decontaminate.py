"""``curate decontaminate``: pool rows whose prompt overlaps an eval question.

The test is n-gram overlap, as GPT-3 (Brown et al. 2020, appendix C: 13-grams, any shared
13-gram flags a training document) and Tülu 3 / OLMo 2 (8-grams over the prompt; a
training prompt is contaminated when it holds at least half of a test question's 8-grams)
do it. Default: the pool row's user turns (instruction + input, or the user messages) and
the eval question are lower-cased ``\\w+`` words; a row matches a question when it holds at
least ``min_overlap`` (0.5) of the question's distinct 8-grams. A question shorter than n
words has no n-gram: it matches a row whose whole prompt is the same words.

Each (row, question) match is a row of the ``hyg_decontaminate`` table, with the eval set,
the question's id and text and the overlap, replaced in one commit and tagged with the
pool version and the settings (eval sets by path and sha256); a rerun with the same
settings on the same pool version does no work.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate.hygiene.dedup import HygieneError, check_unchanged
from curate.hygiene.text import TEXT_FIELDS, row_text, words
from curate.progress import NO_PROGRESS, Progress

DEFAULT_NGRAM = 8
DEFAULT_MIN_OVERLAP = 0.5
ROW_COLUMNS = ["instruction", "input", "output", "messages"]
RESULT_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),
        ("id", pa.string()),
        ("hash", pa.string()),
        ("eval_set", pa.string()),
        ("eval_sha256", pa.string()),
        ("eval_id", pa.string()),
        ("question", pa.string()),  # its first 200 characters
        ("overlap", pa.float32()),  # fraction of the question's n-grams found in the row
    ]
)
EXAMPLES = 5


@dataclass(frozen=True)
class DecontaminateSettings:
    against: tuple[str, ...]  # eval set paths (or hf:// specs)
    ngram: int = DEFAULT_NGRAM
    min_overlap: float = DEFAULT_MIN_OVERLAP
    fields: str = "prompt"

    def check(self) -> None:
        if not self.against:
            raise HygieneError("give at least one eval set: --against EVAL")
        if not 0.0 < self.min_overlap <= 1.0:
            raise HygieneError(f"min_overlap must be in (0, 1], not {self.min_overlap}")
        if not 1 <= self.ngram <= 64:
            raise HygieneError(f"ngram must be in [1, 64], not {self.ngram}")
        if self.fields not in TEXT_FIELDS:
            raise HygieneError(f"unknown fields {self.fields!r} ({', '.join(TEXT_FIELDS)})")


@dataclass
class DecontaminateReport:
    db: str
    pool_version: int | None
    version: int
    settings: dict[str, Any]
    rows: int
    flagged: int  # distinct pool rows matching some question
    matches: int  # (row, question) pairs
    per_set: dict[str, dict[str, int]]  # eval set -> questions, matched questions, rows
    examples: list[dict[str, Any]] = field(default_factory=list)
    reused: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Index:
    """The eval questions' n-grams: n-gram -> question numbers, and short questions whole."""

    n: int
    questions: list[tuple[str, str, str, str]]  # (set path, set sha256, id, text)
    counts: np.ndarray  # distinct n-grams per question (0 for a short one)
    grams: dict[str, list[int]]
    short: dict[str, list[int]]  # whole-word text of a question under n words -> numbers


def _ngrams(tokens: list[str], n: int) -> set[str]:
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def build_index(settings: DecontaminateSettings) -> _Index:
    """Read every eval set with `curate eval`'s readers; an unreadable or empty one raises
    before anything is computed or written."""
    from curate.evaluation.eval_sets import load_eval_set

    questions: list[tuple[str, str, str, str]] = []
    counts: list[int] = []
    grams: dict[str, list[int]] = defaultdict(list)
    short: dict[str, list[int]] = defaultdict(list)
    for path in settings.against:
        if not path.startswith("hf://") and not Path(path).exists():
            raise HygieneError(f"{path}: eval set not found")
        eval_set = load_eval_set(path)
        for item in eval_set.items:
            number = len(questions)
            tokens = words(_question_text(item))
            questions.append((str(path), eval_set.sha256, item.id, item.question[:200]))
            if len(tokens) < settings.ngram:
                counts.append(0)
                if tokens:
                    short[" ".join(tokens)].append(number)
                continue
            item_grams = _ngrams(tokens, settings.ngram)
            counts.append(len(item_grams))
            for gram in item_grams:
                grams[gram].append(number)
    return _Index(settings.ngram, questions, np.asarray(counts), dict(grams), dict(short))


def _question_text(item) -> str:
    if item.context:
        return "\n".join(t["content"] for t in item.context if t["role"] == "user")
    return item.question


def matches(index: _Index, text: str, min_overlap: float) -> list[tuple[int, float]]:
    """(question number, overlap) for every question ``text`` matches."""
    tokens = words(text)
    found = [(q, 1.0) for q in index.short.get(" ".join(tokens), [])]
    hits: dict[int, int] = defaultdict(int)
    for gram in _ngrams(tokens, index.n):
        for q in index.grams.get(gram, ()):
            hits[q] += 1
    for q, count in hits.items():
        overlap = count / index.counts[q]
        if overlap >= min_overlap:
            found.append((q, float(overlap)))
    return sorted(found)


def decontaminate(
    store, settings: DecontaminateSettings, progress: Progress = NO_PROGRESS
) -> DecontaminateReport:
    """Find the pool rows that overlap the eval sets and store them (see the module doc)."""
    started = time.perf_counter()
    settings.check()
    index = build_index(settings)
    store.require_pool()  # a PoolError naming the command to run when there is no pool
    pool_version, n = store.pool_version(), store.pool_count()
    stored_settings = _settings_dict(settings, index)
    previous = store.hygiene_result("decontaminate")
    if (
        previous is not None
        and previous.pool_version == pool_version
        and previous.settings == stored_settings
    ):
        return DecontaminateReport(**previous.summary, version=previous.version, reused=True)
    found: list[dict[str, Any]] = []
    progress.start(n, "rows", "decontaminate")
    for positions, batch in store.iter_pool([*ROW_COLUMNS, "id", "hash"]):
        for position, row in zip(positions.tolist(), batch.to_pylist(), strict=True):
            for q, overlap in matches(index, row_text(row, settings.fields), settings.min_overlap):
                path, sha, qid, question = index.questions[q]
                found.append(
                    {
                        "position": position,
                        "id": row["id"],
                        "hash": row["hash"],
                        "eval_set": path,
                        "eval_sha256": sha,
                        "eval_id": qid,
                        "question": question,
                        "overlap": overlap,
                    }
                )
        progress.advance(len(positions))
    found.sort(key=lambda r: (r["position"], r["eval_set"], r["eval_id"]))
    rows = pa.Table.from_pylist(found, schema=RESULT_SCHEMA)
    check_unchanged(store, pool_version, "decontaminate")
    summary = _summary(store, stored_settings, pool_version, n, rows, index)
    version = store.write_hygiene("decontaminate", rows, pool_version, stored_settings, summary)
    return DecontaminateReport(**summary, version=version, seconds=time.perf_counter() - started)


def _settings_dict(settings: DecontaminateSettings, index: _Index) -> dict[str, Any]:
    sets = {q[0]: q[1] for q in index.questions}
    return {
        "against": [{"path": p, "sha256": s} for p, s in sets.items()],
        "ngram": settings.ngram,
        "min_overlap": settings.min_overlap,
        "fields": settings.fields,
    }


def _summary(store, settings, pool_version, n, rows: pa.Table, index: _Index) -> dict[str, Any]:
    per_set: dict[str, dict[str, int]] = {}
    for path, *_ in index.questions:
        per_set.setdefault(path, {"questions": 0, "matched_questions": 0, "rows": 0})
        per_set[path]["questions"] += 1
    table = rows.to_pylist()
    for path in per_set:
        mine = [r for r in table if r["eval_set"] == path]
        per_set[path]["matched_questions"] = len({r["eval_id"] for r in mine})
        per_set[path]["rows"] = len({r["position"] for r in mine})
    examples = [
        {
            "id": r["id"],
            "eval_set": Path(r["eval_set"]).name,
            "eval_id": r["eval_id"],
            "question": r["question"][:120],
            "overlap": round(r["overlap"], 3),
        }
        for r in table[:EXAMPLES]
    ]
    return {
        "db": str(store.path),
        "pool_version": pool_version,
        "settings": settings,
        "rows": n,
        "flagged": len({r["position"] for r in table}),
        "matches": len(table),
        "per_set": per_set,
        "examples": examples,
    }


def overlap_warning(store, eval_set: str | Path) -> str | None:
    """One line when ``eval_set`` overlaps the pool (default settings), else None: read from
    the stored result when it is current and covers this eval set, else computed now
    (streamed, nothing written). None too when there is no pool."""
    from curate.files import sha256_file

    if not store.has_pool() or (
        not str(eval_set).startswith("hf://") and not Path(eval_set).exists()
    ):
        return None
    settings = DecontaminateSettings((str(eval_set),))
    stored = store.hygiene_result("decontaminate")
    sha = None if str(eval_set).startswith("hf://") else sha256_file(eval_set)
    covered = (
        stored is not None
        and stored.pool_version == store.pool_version()
        and any(s["sha256"] == sha for s in stored.settings.get("against", []))
    )
    if covered:
        rows = [r for r in stored.rows.to_pylist() if r["eval_sha256"] == sha]
        questions = {r["eval_id"] for r in rows}
        flagged = {r["position"] for r in rows}
        how = f"hyg_decontaminate v{stored.version}"
    else:
        index = build_index(settings)
        questions, flagged = set(), set()
        for positions, batch in store.iter_pool(ROW_COLUMNS):
            for position, row in zip(positions.tolist(), batch.to_pylist(), strict=True):
                for q, _ in matches(index, row_text(row, settings.fields), settings.min_overlap):
                    questions.add(index.questions[q][2])
                    flagged.add(position)
        how = f"{settings.ngram}-gram overlap >= {settings.min_overlap:g}"
    if not flagged:
        return None
    advice = (
        "`curate select` leaves those rows out unless --include-contaminated"
        if covered
        else f"run `curate decontaminate --against {eval_set}` so selection leaves them out"
    )
    return (
        f"the eval set {eval_set} overlaps the pool at {store.path}: {len(questions)} of its "
        f"questions match {len(flagged)} pool rows ({how}); {advice}"
    )
