"""``curate dedup``: near-duplicate groups in the pool, one row kept per group.

Two methods. ``minhash`` (the default): MinHash LSH over word shingles
(:mod:`curate.hygiene.minhash`), the pool streamed in batches, so 1M short rows fit in
bounded memory. ``embedding``: cosine similarity over an embeddings table, an exact
blockwise pass (every pair, O(N²·d) work, O(block·N) memory), for meaning-level
duplicates that share few words.

The result replaces the ``hyg_dedup`` table in one commit, tagged with the pool version and
the settings; a rerun with the same settings on the same pool version does no work.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import ConflictError, CurateError, EmbeddingError
from curate.files import naming_path, owner_pid, pid_alive
from curate.hygiene import minhash
from curate.hygiene.text import TEXT_FIELDS, row_text, shingles, words
from curate.progress import NO_PROGRESS, Progress

METHODS = ("minhash", "embedding")
KEEP_POLICIES = ("first", "longest", "central")
ROW_COLUMNS = ["instruction", "input", "output", "messages", "n_chars"]
RESULT_SCHEMA = pa.schema(
    [
        ("position", pa.int64()),  # pool position (pool order)
        ("id", pa.string()),
        ("hash", pa.string()),
        ("group", pa.int64()),  # the pool position of the row the group keeps
        ("keep", pa.bool_()),
        ("similarity", pa.float32()),  # to the kept row: estimated Jaccard, or cosine
    ]
)
EXAMPLES = 3


class HygieneError(CurateError):
    """A hygiene setting or input that cannot be used."""


def check_unchanged(store, pool_version: int | None, what: str) -> None:
    """Raise before writing when the pool moved on while ``what`` read it: the result would
    be tagged with a version it was not computed on."""
    if store.pool_version() != pool_version:
        raise ConflictError(
            f"the pool at {store.path} changed while `curate {what}` read it (version "
            f"{pool_version} -> {store.pool_version()}); nothing was written: rerun it"
        )


@dataclass(frozen=True)
class DedupSettings:
    method: str = "minhash"
    threshold: float | None = None  # default per method: MINHASH_THRESHOLD / COSINE_THRESHOLD
    keep: str = "first"
    fields: str = "all"  # all turns, or the prompt (user turns) only
    shingle: int = 3  # words per shingle (minhash)
    num_perm: int = 128  # MinHash permutations (minhash)
    seed: int = 1  # MinHash hash seed (minhash)
    embeddings: str | None = None  # embeddings name (embedding)

    def resolved(self) -> DedupSettings:
        """Checked, with the method's default threshold filled in; raises HygieneError."""
        if self.method not in METHODS:
            raise HygieneError(f"unknown method {self.method!r} (one of {', '.join(METHODS)})")
        if self.keep not in KEEP_POLICIES:
            raise HygieneError(f"unknown keep policy {self.keep!r} ({', '.join(KEEP_POLICIES)})")
        if self.fields not in TEXT_FIELDS:
            raise HygieneError(f"unknown fields {self.fields!r} ({', '.join(TEXT_FIELDS)})")
        threshold = self.threshold
        if threshold is None:
            threshold = MINHASH_THRESHOLD if self.method == "minhash" else COSINE_THRESHOLD
        if not 0.0 < threshold <= 1.0:
            raise HygieneError(f"threshold must be in (0, 1], not {threshold}")
        if self.shingle < 1 or self.num_perm < 2:
            raise HygieneError("shingle must be >= 1 and num_perm >= 2")
        if self.method == "minhash":
            return DedupSettings("minhash", threshold, self.keep, self.fields, self.shingle,
                                 self.num_perm, self.seed)  # fmt: skip
        return DedupSettings("embedding", threshold, self.keep, embeddings=self.embeddings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Measured on the labelled sample of benchmarks/README.md ("Near-duplicate thresholds").
MINHASH_THRESHOLD = 0.7
COSINE_THRESHOLD = 0.95


@dataclass
class DedupReport:
    db: str
    pool_version: int | None
    version: int  # of the hyg_dedup table
    settings: dict[str, Any]
    rows: int
    groups: int
    flagged: int  # rows in a group that are not its kept row
    largest_group: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    reused: bool = False  # an earlier result for this pool version and settings
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dedup(store, settings: DedupSettings, progress: Progress = NO_PROGRESS) -> DedupReport:
    """Find the near-duplicate groups of the pool and store them (see the module doc)."""
    started = time.perf_counter()
    settings = settings.resolved()
    pool_version = store.pool_version()
    store.require_pool()  # a PoolError naming the command to run when there is no pool
    n = store.pool_count()
    stored = settings.to_dict()
    if settings.method == "embedding":
        name = _check_embeddings(store, settings.embeddings)
        settings = dataclasses.replace(settings, embeddings=name)
        # re-embedding under the same name makes a new table version: a new result
        table_version = store.embeddings_version(name)
        stored = {**settings.to_dict(), "embeddings_version": table_version}
    previous = store.hygiene_result("dedup")
    if (
        previous is not None
        and previous.pool_version == pool_version
        and previous.settings == stored
    ):
        return DedupReport(**previous.summary, version=previous.version, reused=True)
    if settings.method == "minhash":
        found = _minhash_groups(store, settings, n, progress)
    else:
        found = _embedding_groups(store, settings, progress)
    rows = _result_rows(store, found)
    check_unchanged(store, pool_version, "dedup")
    summary = _summary(store, stored, pool_version, n, rows)
    version = store.write_hygiene("dedup", rows, pool_version, stored, summary)
    return DedupReport(**summary, version=version, seconds=time.perf_counter() - started)


def _check_embeddings(store, name: str | None) -> str:
    """The embeddings name to read (the only one when none is given)."""
    names = store.embedding_names()
    if name is None and len(names) == 1:
        return names[0]
    if name is None or name not in names:
        known = ", ".join(names) or "none; run `curate embed` first"
        raise EmbeddingError(
            f"the embedding method needs an embeddings table of the pool at {store.path} "
            f"(--embeddings NAME; known: {known})"
        )
    return name


def _minhash_groups(store, settings: DedupSettings, n: int, progress: Progress):
    """Stream the pool: signatures to a memory-mapped file, band keys in RAM; then verify
    candidate pairs and join them into groups."""
    assert settings.threshold is not None  # settings.resolved() filled in the default
    bands, rows_per_band = minhash.lsh_params(settings.threshold, settings.num_perm)
    keys = np.zeros((n, bands), dtype=np.uint64)
    valid = np.zeros(n, dtype=bool)
    n_chars = np.zeros(n, dtype=np.int64)
    progress.start(n, "rows", "minhash")
    with tempfile.TemporaryDirectory(prefix=_scratch(store), dir=store.path) as tmp:
        sigs = np.lib.format.open_memmap(
            f"{tmp}/signatures.npy", "w+", np.uint32, (max(n, 1), settings.num_perm)
        )
        for positions, batch in store.iter_pool(ROW_COLUMNS):
            sets = [
                shingles(words(row_text(r, settings.fields)), settings.shingle)
                for r in batch.to_pylist()
            ]
            block = minhash.signatures(sets, settings.num_perm, settings.seed)
            sigs[positions] = block
            keys[positions] = minhash.band_keys(block, bands, rows_per_band)
            valid[positions] = [bool(s) for s in sets]
            n_chars[positions] = batch["n_chars"].to_numpy(zero_copy_only=False)
            progress.advance(len(positions))
        pairs = minhash.candidate_pairs(keys, valid)
        del keys
        sims = minhash.agreement(sigs, pairs)
        groups = minhash.components(pairs[sims >= settings.threshold])

        def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return minhash.agreement(sigs, np.stack([a, b], 1))

        return _keep(groups, similarity, n_chars, settings.keep)


SCRATCH_PREFIX = ".curate-dedup-"


def _scratch(store) -> str:
    """The prefix of this run's signature folder in the database folder (``.curate-dedup-
    <pid>-``), after removing those of killed runs (a live pid's is never touched)."""
    with naming_path(store.path):
        store.path.mkdir(parents=True, exist_ok=True)
        for leftover in store.path.glob(f"{SCRATCH_PREFIX}*"):
            pid = owner_pid(leftover.name, SCRATCH_PREFIX)
            if pid is not None and pid != os.getpid() and not pid_alive(pid):
                shutil.rmtree(leftover, ignore_errors=True)
    return f"{SCRATCH_PREFIX}{os.getpid()}-"


def _embedding_groups(store, settings: DedupSettings, progress: Progress):
    vectors = store.load_vectors(settings.embeddings).matrix
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    x = vectors / np.where(norms == 0, 1.0, norms)
    n = len(x)
    step = max(1, min(n, (64 << 20) // (4 * max(n, 1))))  # a block of similarities ≈ 64 MB
    pairs = []
    progress.start(n, "rows", "cosine")
    for start in range(0, n, step):
        sims = x[start : start + step] @ x[start:].T
        i, j = np.nonzero(sims >= settings.threshold)
        j = j + start
        i = i + start
        upper = j > i
        pairs.append(np.stack([i[upper], j[upper]], 1))
        progress.advance(min(step, n - start))
    kept = np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64)
    groups = minhash.components(kept)
    n_chars = store.read_pool(["n_chars"])["n_chars"].to_numpy()

    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", x[a], x[b]).astype(np.float32)

    return _keep(groups, similarity, n_chars, settings.keep)


CENTRAL_CAP = 256  # "central" compares a group's members with at most this many of them


@dataclass(frozen=True)
class Found:
    members: np.ndarray  # pool positions in a group, ascending
    kept: np.ndarray  # for each member, the position its group keeps
    similarity: np.ndarray  # for each member, its similarity to the kept row


def _keep(groups: minhash.Groups, similarity, n_chars: np.ndarray, policy: str) -> Found:
    """Choose each group's kept row: the first (lowest position), the longest (most
    characters, then the first) or the most central (highest mean similarity to the
    group's other members, then the first)."""
    members, labels = groups.members, groups.labels
    kept = labels.copy()
    if policy != "first" and len(members):
        order = np.lexsort((members, labels))
        members, labels = members[order], labels[order]
        starts = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1]]))
        ends = np.append(starts[1:], len(members))
        kept = np.empty_like(members)
        for s, e in zip(starts, ends, strict=True):
            group = members[s:e]
            if policy == "longest":
                best = group[np.argmax(n_chars[group])]  # argmax: the first of the longest
            else:
                ref = group[:CENTRAL_CAP]
                a = np.repeat(group, len(ref))
                b = np.tile(ref, len(group))
                score = similarity(a, b).reshape(len(group), len(ref)).sum(axis=1)
                best = group[np.argmax(score)]
            kept[s:e] = best
    sims = similarity(members, kept) if len(members) else np.zeros(0, np.float32)
    return Found(members, kept, sims.astype(np.float32))


def _result_rows(store, found: Found) -> pa.Table:
    pool = store.read_pool(["id", "hash"])
    order = np.argsort(found.members, kind="stable")
    members = found.members[order]
    picked = pool.take(pa.array(members))
    return pa.table(
        {
            "position": pa.array(members, pa.int64()),
            "id": picked["id"],
            "hash": picked["hash"],
            "group": pa.array(found.kept[order], pa.int64()),
            "keep": pa.array(members == found.kept[order]),
            "similarity": pa.array(found.similarity[order], pa.float32()),
        },
        schema=RESULT_SCHEMA,
    )


def _summary(store, settings: dict, pool_version, n: int, rows: pa.Table) -> dict:
    keep = rows["keep"].to_numpy(zero_copy_only=False)
    groups = rows["group"].to_numpy()
    sizes = np.unique(groups, return_counts=True)[1] if len(groups) else np.zeros(0, int)
    return {
        "db": str(store.path),
        "pool_version": pool_version,
        "settings": settings,
        "rows": n,
        "groups": len(sizes),
        "flagged": int((~keep).sum()),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "examples": _examples(store, rows, sizes),
    }


def _examples(store, rows: pa.Table, sizes: np.ndarray) -> list[dict[str, Any]]:
    """The first few groups: the kept row and one flagged row, each with its text's start."""
    if not len(sizes):
        return []
    out = []
    flagged = rows.filter(pc.invert(rows["keep"]))
    seen: set[int] = set()
    for r in flagged.to_pylist():
        if r["group"] in seen:
            continue
        seen.add(r["group"])
        kept = rows.filter(pc.equal(rows["position"], r["group"])).to_pylist()[0]
        pair = store.lookup_pool("id", [kept["id"], r["id"]], [*ROW_COLUMNS[:4], "id", "hash"])
        texts = {(x["id"], x["hash"]): row_text(x)[:160] for x in pair.to_pylist()}
        out.append(
            {
                "kept": {"id": kept["id"], "text": texts.get((kept["id"], kept["hash"]), "")},
                "duplicate": {"id": r["id"], "text": texts.get((r["id"], r["hash"]), "")},
                "similarity": round(float(r["similarity"]), 3),
                "group_size": int((rows["group"].to_numpy() == r["group"]).sum()),
            }
        )
        if len(out) == EXAMPLES:
            break
    return out
