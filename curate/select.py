"""``curate select``: pool (+ vectors, + parent subset) → strategy → subset artifact.

Everything that can fail (budget, parent from another pool, missing or NaN vectors,
missing scores) fails before the strategy runs and before anything is written; the
subset folder is then written atomically by :func:`curate.subsets.write_subset`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate import __version__
from curate.devices import DEFAULT_DEVICE
from curate.errors import EmbeddingError, SelectionError, param
from curate.hygiene.exclusion import exclusion, lift, restrict
from curate.launch import launched
from curate.manifest import EmbeddingsRef, Manifest, ParentRef, PoolRef
from curate.progress import NO_PROGRESS, Progress
from curate.records import Example
from curate.store import EXAMPLE_COLUMNS, Store
from curate.strategies import PoolArrays, Selection, Strategy, make_strategy
from curate.subsets import (
    Subset,
    load_subset,
    verify_examples,
)
from curate.targets import check_select_request


@dataclass(frozen=True)
class SelectRequest:
    strategy: str = "kcenter"
    params: Mapping[str, Any] = field(default_factory=dict)  # the strategy's declared parameters
    budget: int | None = None  # total size of the new subset ...
    add: int | None = None  # ... or the parent's size plus this
    embeddings: str | None = None
    parent: Path | None = None
    seed: int = 0
    name: str | None = None
    device: str = DEFAULT_DEVICE
    whole_pool: bool = False  # every pool row, in the strategy's order (the full reference)
    include_duplicates: bool = False  # choose rows `curate dedup` flagged, too
    include_contaminated: bool = False  # choose rows `curate decontaminate` flagged, too


SubsetSelection = Subset  # what select() returns: the one subset type, not yet written


def default_name(strategy: str, budget: int, seed: int) -> str:
    return f"{strategy}-{budget}-s{seed}"


def _budget(request: SelectRequest, parent_size: int, pool_size: int) -> tuple[int, int]:
    """(total subset size, new picks)."""
    given = [request.budget is not None, request.add is not None, request.whole_pool]
    if sum(given) != 1:
        raise SelectionError(
            f"give exactly one of {param('budget', metavar='N')} (total size), "
            f"{param('add', metavar='K')} or {param('whole_pool')}"
        )
    if request.whole_pool:
        total = pool_size
    elif request.add is not None:
        if request.parent is None:
            raise SelectionError(
                f"{param('add', metavar='K')} needs {param('parent')} (the subset to add rows to)"
            )
        total = parent_size + request.add
    else:
        assert request.budget is not None  # exactly one of the three was given (above)
        total = request.budget
    added = total - parent_size
    if added <= 0:
        what = param("add", request.add) if request.add is not None else param("budget", total)
        raise SelectionError(
            f"{what} adds nothing to the parent's {parent_size} rows; "
            "the budget is the total size of the new subset"
        )
    if total > pool_size:
        raise SelectionError(f"budget {total} is larger than the pool ({pool_size} rows)")
    return total, added


def _parent_positions(parent: Subset, keys: dict[tuple[str, str], int], store: Store) -> np.ndarray:
    positions = [keys.get((p["id"], p["hash"])) for p in parent.manifest.picks]
    missing = [
        p["id"] for p, pos in zip(parent.manifest.picks, positions, strict=True) if pos is None
    ]
    if missing:
        raise SelectionError(
            f"parent {parent.path} was built on a different pool: {len(missing)} of "
            f"{len(positions)} picks (e.g. {missing[0]!r}) are not in the pool at {store.path}"
        )
    if len(set(positions)) != len(positions):
        raise SelectionError(f"parent {parent.path} lists an example twice")
    return np.asarray(positions, dtype=np.int64)


def _pool_arrays(
    store: Store,
    strategy: Strategy,
    embeddings: str | None,
    ids: list[str],
    progress: Progress,
    embed_missing: bool,
) -> tuple[PoolArrays, dict[str, str] | None, int]:
    """The arrays the strategy needs, the manifest's ``embeddings`` entry, and how many rows
    had to be embedded first (with ``embed_missing``, a pool with no embeddings at all gets
    the default embedder's)."""
    lengths = _response_lengths(store) if strategy.needs_lengths else None
    if not (strategy.needs_vectors or strategy.reads_scores):
        return PoolArrays(len(ids), lengths=lengths), None, 0
    embedded = 0
    if embeddings is None:
        names = store.embedding_names()
        if not names and not strategy.reads_scores and embed_missing:
            embedded, names = _embed_default(store, progress), store.embedding_names()
        if len(names) != 1:
            known = ", ".join(names) or "none; run `curate embed` first"
            raise SelectionError(
                f"{param('strategy', strategy.name)} needs {param('embeddings', metavar='NAME')} "
                f"(known: {known})"
            )
        embeddings = names[0]
    vectors = store.load_vectors(embeddings, scores=strategy.reads_scores)
    if vectors.ids != ids:
        raise EmbeddingError(f"the pool changed while loading embeddings {embeddings!r}; run again")
    arrays = PoolArrays(
        len(ids), vectors.matrix if strategy.needs_vectors else None, vectors.scores, lengths
    )
    return arrays, {"name": vectors.name, "fingerprint": vectors.fingerprint}, embedded


def _response_lengths(store: Store) -> np.ndarray:
    """Characters of every row's response, in pool order: its assistant turns for a
    conversation, its output otherwise."""
    import pyarrow.compute as pc

    table = store.read_pool(["output", "messages"])
    lengths = pc.utf8_length(table["output"]).to_numpy(zero_copy_only=False).astype(np.int64)
    messages = table["messages"].combine_chunks()
    turns = pc.list_flatten(messages)
    if len(turns):
        owner = pc.list_parent_indices(messages).to_numpy()
        answer = pc.equal(turns.field("role"), "assistant").to_numpy(zero_copy_only=False)
        chars = pc.utf8_length(turns.field("content")).to_numpy(zero_copy_only=False)
        chat = np.unique(owner)
        lengths[chat] = 0
        np.add.at(lengths, owner[answer], chars[answer])
    return lengths


def _embed_default(store: Store, progress: Progress) -> int:
    """Embed the pool with the default embedder, as `curate embed` with no options would."""
    from curate.embed import EmbedReport, embed

    report = embed(store, progress=progress)
    assert isinstance(report, EmbedReport)  # no for_strategy: never skipped
    return report.embedded


LOOKUP_LIMIT = 20_000  # above this many picks, one scan of the pool beats id lookups


def _examples(
    store: Store, positions: np.ndarray, keys: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Canonical pool rows at ``positions`` (whose (id, hash) must be ``keys``), in order."""
    if len(positions) > LOOKUP_LIMIT:
        rows = store.read_pool(EXAMPLE_COLUMNS).take(pa.array(positions)).to_pylist()
    else:
        table = store.lookup_pool("id", sorted({k[0] for k in keys}), EXAMPLE_COLUMNS)
        by_key = {(r["id"], r["hash"]): r for r in table.to_pylist()}
        rows = [by_key.get(key) for key in keys]
    if any(r is None or (r["id"], r["hash"]) != key for r, key in zip(rows, keys, strict=True)):
        raise SelectionError(f"the pool at {store.path} changed during selection; run again")
    return [Example.from_dict(r).to_dict() for r in rows]


def _picks(ids: list[str], hashes: list[str], selection: Selection) -> list[dict[str, Any]]:
    picks = []
    for t in range(len(selection)):
        pos = int(selection.indices[t])
        pick: dict[str, Any] = {"id": ids[pos], "hash": hashes[pos]}
        if selection.distances is not None:
            d = float(selection.distances[t])
            pick["distance"] = None if math.isnan(d) else d
        if selection.scores is not None:
            pick["score"] = float(selection.scores[t])
        picks.append(pick)
    return picks


def select(
    store: Store,
    request: SelectRequest,
    progress: Progress = NO_PROGRESS,
    *,
    embed_missing: bool = False,
) -> Subset | None:
    """Run one selection in memory (see :meth:`Subset.write` to write it).

    Nothing is written, except with ``embed_missing``: a strategy that reads vectors, on a
    pool with no embeddings at all and no ``embeddings`` named, then first embeds the pool
    with the default embedder into its ``emb_<name>`` table (as ``curate embed`` would;
    ``embedded`` counts the rows). Without it that is an error naming ``curate embed``.

    Everything that can fail (unknown strategy or parameter, budget, a parent that does
    not verify or comes from another pool, missing or NaN vectors) fails before the
    strategy runs. Under torchrun (any ``--nproc-per-node``) the vectors are sharded over the
    ranks (:mod:`curate.select_sharded`): rank 0 gets the selection, the others None.
    """
    if launched():
        from curate.select_sharded import select_sharded

        return select_sharded(store, request, progress)  # never embeds
    return select_one_process(store, request, progress, embed_missing=embed_missing)


def select_one_process(
    store: Store,
    request: SelectRequest,
    progress: Progress = NO_PROGRESS,
    *,
    embed_missing: bool = False,
) -> Subset:
    """:func:`select` in this process, whatever the launcher."""
    started = time.perf_counter()
    check_select_request(request)
    strategy = make_strategy(request.strategy, request.params, request.device)
    pool = store.read_pool(["id", "hash"])
    if pool.num_rows == 0:
        raise SelectionError(f"the pool at {store.path} is empty; run `curate ingest` first")
    ids, hashes = pool["id"].to_pylist(), pool["hash"].to_pylist()
    keys = {key: pos for pos, key in enumerate(zip(ids, hashes, strict=True))}
    parent = _verified_parent(request.parent, keys, store) if request.parent else None
    chosen = parent[1] if parent else np.zeros(0, np.int64)
    include = {"dedup": request.include_duplicates, "decontaminate": request.include_contaminated}
    hygiene = exclusion(store, include)
    excluded = np.asarray(sorted(keys[k] for k in hygiene.keys if k in keys), dtype=np.int64)
    open_rows = len(ids) - len(np.setdiff1d(excluded, chosen))
    total, added = _budget(request, len(chosen), open_rows)
    arrays, embeddings, embedded = _pool_arrays(
        store, strategy, request.embeddings, ids, progress, embed_missing
    )
    name = request.name or default_name(strategy.name, total, request.seed)

    progress.start(added, "picks", f"select {strategy.name}")
    if len(excluded):  # the strategy sees the pool without the flagged rows
        arrays, chosen_open, index = restrict(arrays, chosen, excluded)
        selection = lift(strategy.select(arrays, chosen_open, added, request.seed, progress), index)
    else:
        selection = strategy.select(arrays, chosen, added, request.seed, progress)

    parent_picks = (
        [{"id": p["id"], "hash": p["hash"]} for p in parent[0].manifest.picks] if parent else []
    )
    new_picks = _picks(ids, hashes, selection)
    picks = parent_picks + new_picks
    manifest = Manifest(
        name=name,
        strategy=strategy.name,
        params={**strategy.params(), "added": added},
        seed=request.seed,
        budget=total,
        parent=ParentRef(parent[0].name, parent[0].manifest_sha256) if parent else None,
        pool=PoolRef(store.pool_version(), len(ids)),
        embeddings=EmbeddingsRef(**embeddings) if embeddings else None,
        picks=picks,
        created_by=f"curate {__version__}",
        hygiene=hygiene.refs or None,
    )
    positions = np.concatenate([chosen, selection.indices])
    examples = _examples(store, positions, [(p["id"], p["hash"]) for p in picks])
    seconds = time.perf_counter() - started
    return Subset(manifest, examples, seconds=seconds, embedded=embedded, warnings=hygiene.warnings)


def _verified_parent(
    path: Path, keys: dict[tuple[str, str], int], store: Store
) -> tuple[Subset, np.ndarray]:
    """The parent subset and its pool positions, checked exactly as `curate subsets verify`
    checks a subset (files, content hashes, its own parent), plus: built on this pool."""
    parent = load_subset(path)
    positions = _parent_positions(parent, keys, store)
    verify_examples(parent)
    return parent, positions
