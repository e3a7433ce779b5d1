"""``curate select``: pool (+ vectors, + parent subset) → strategy → subset artifact.

Everything that can fail (budget, parent from another pool, missing or NaN vectors,
missing scores) fails before the strategy runs and before anything is written; the
subset folder is then written atomically by :func:`curate.subsets.write_subset`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate import __version__
from curate.errors import EmbeddingError, SelectionError
from curate.manifest import EmbeddingsRef, Manifest, ParentRef, PoolRef
from curate.records import Example
from curate.store import EXAMPLE_COLUMNS, Store
from curate.strategies import STRATEGIES, PoolArrays, Selection, Strategy, make_strategy
from curate.subsets import DEFAULT_SUBSETS_DIR, Subset, load_subset, write_subset


@dataclass(frozen=True)
class SelectRequest:
    strategy: str = "kcenter"
    budget: int | None = None  # total size of the new subset ...
    add: int | None = None  # ... or the parent's size plus this
    embeddings: str | None = None
    parent: Path | None = None
    seed: int = 0
    out: Path | None = None
    name: str | None = None
    metric: str = "euclidean"
    whiten: int | None = None
    device: str = "auto"


@dataclass
class SelectResult:
    subset: Subset
    added: int
    seconds: float


def default_name(strategy: str, budget: int, seed: int) -> str:
    return f"{strategy}-{budget}-s{seed}"


def _strategy(request: SelectRequest) -> Strategy:
    if request.strategy not in STRATEGIES:
        raise SelectionError(
            f"unknown strategy {request.strategy!r}; choose from {', '.join(STRATEGIES)}"
        )
    if request.strategy == "kcenter":
        return make_strategy(
            "kcenter", metric=request.metric, whiten_to=request.whiten, device=request.device
        )
    if request.whiten or request.metric != "euclidean":
        raise SelectionError("--metric and --whiten apply to --strategy kcenter only")
    return make_strategy(request.strategy)


def _budget(request: SelectRequest, parent_size: int, pool_size: int) -> tuple[int, int]:
    """(total subset size, new picks)."""
    if (request.budget is None) == (request.add is None):
        raise SelectionError("give exactly one of --budget N (total size) or --add K")
    if request.add is not None:
        if request.parent is None:
            raise SelectionError("--add K needs --parent (the subset to add K rows to)")
        total = parent_size + request.add
    else:
        total = request.budget
    added = total - parent_size
    if added <= 0:
        what = f"--add {request.add}" if request.add is not None else f"--budget {total}"
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


def _pool_arrays(store: Store, strategy: Strategy, embeddings: str | None, ids: list[str]):
    """The arrays the strategy needs, and the manifest's ``embeddings`` entry."""
    if not (strategy.needs_vectors or strategy.needs_scores):
        return PoolArrays(len(ids)), None
    if embeddings is None:
        names = store.embedding_names()
        if len(names) != 1:
            known = ", ".join(names) or "none; run `curate embed` first"
            raise SelectionError(
                f"--strategy {strategy.name} needs --embeddings NAME (known: {known})"
            )
        embeddings = names[0]
    vectors = store.load_vectors(embeddings, with_scores=strategy.needs_scores)
    if vectors.ids != ids:
        raise EmbeddingError(f"the pool changed while loading embeddings {embeddings!r}; run again")
    arrays = PoolArrays(
        len(ids), vectors.matrix if strategy.needs_vectors else None, vectors.scores
    )
    return arrays, {"name": vectors.name, "fingerprint": vectors.fingerprint}


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
    on_start: Callable[[int], None] | None = None,
    on_pick: Callable[[int], None] | None = None,
) -> SelectResult:
    """Run one selection and write its subset folder. ``on_start(k)`` is called once the
    number of new picks is known, ``on_pick(n)`` as picks are made."""
    started = time.perf_counter()
    strategy = _strategy(request)
    pool = store.read_pool(["id", "hash"])
    if pool.num_rows == 0:
        raise SelectionError(f"the pool at {store.path} is empty; run `curate ingest` first")
    ids, hashes = pool["id"].to_pylist(), pool["hash"].to_pylist()
    keys = {key: pos for pos, key in enumerate(zip(ids, hashes, strict=True))}
    parent = load_subset(request.parent) if request.parent is not None else None
    chosen = _parent_positions(parent, keys, store) if parent else np.zeros(0, np.int64)
    total, added = _budget(request, len(chosen), len(ids))
    arrays, embeddings = _pool_arrays(store, strategy, request.embeddings, ids)
    name = request.name or (request.out.name if request.out else None)
    name = name or default_name(strategy.name, total, request.seed)
    out = request.out or DEFAULT_SUBSETS_DIR / name

    if on_start is not None:
        on_start(added)
    selection = strategy.select(arrays, chosen, added, request.seed, on_pick)

    parent_picks = (
        [{"id": p["id"], "hash": p["hash"]} for p in parent.manifest.picks] if parent else []
    )
    new_picks = _picks(ids, hashes, selection)
    picks = parent_picks + new_picks
    manifest = Manifest(
        name=name,
        strategy=strategy.name,
        params={**strategy.params(), "added": added},
        seed=request.seed,
        budget=total,
        parent=ParentRef(parent.name, parent.manifest_sha256) if parent else None,
        pool=PoolRef(store.pool_version(), len(ids)),
        embeddings=EmbeddingsRef(**embeddings) if embeddings else None,
        picks=picks,
        created_by=f"curate {__version__}",
    )
    positions = np.concatenate([chosen, selection.indices])
    examples = _examples(store, positions, [(p["id"], p["hash"]) for p in picks])
    subset = write_subset(out, manifest, examples)
    return SelectResult(subset, added, time.perf_counter() - started)
