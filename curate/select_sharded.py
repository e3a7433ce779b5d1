"""``curate select`` under ``torchrun``/``accelerate launch``: the pool's vectors sharded
over the ranks, the subset equal to one process's (same ``examples.jsonl`` bytes, same
manifest picks and distances).

What each rank holds. Rank 0 plans (pool and embeddings table versions, budget, parent) and
every rank reads that plan, so all read one pinned version of each table. Rank ``r`` of
``P`` reads only the stored embedding rows ``[S·r/P, S·(r+1)/P)`` by offset (``S`` stored
rows) and keeps those rows' float32 vectors, sorted by pool position, plus the K-center
state of :class:`~curate.strategies.kcenter_sharded.ShardCoverage` (about 29 bytes a row).
To know the pool position of a stored row, every rank reads the pool's (id, hash) keys once
(about 85 bytes a pool row, freed before the vectors are read) and one int64 per pool row
(which stored row wins when an (id, hash) was stored twice: the last one, as in one process).
Rank 0 alone writes the subset; the CLI writes nothing when any rank failed.

The per-pick fold runs with NumPy on the host on every backend: under NCCL (``--device
cuda``) only the per-pick collectives use the GPU (a GPU fold, as ``TorchCoverage`` does
for one process, is not written yet).

Failures are agreed: each stage runs on every rank, the ranks exchange what went wrong, and
all raise the first failing rank's error (one line, non-zero exit), so no rank waits forever
in a collective its peer never reaches. A rank lost mid-loop makes the others' next
collective fail, which becomes one :class:`SelectionError`.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import __version__
from curate.errors import CurateError, EmbeddingError, SelectionError, param
from curate.hygiene.exclusion import exclusion
from curate.launch import Ranks
from curate.manifest import EmbeddingsRef, Manifest, ParentRef, PoolRef
from curate.progress import NO_PROGRESS, Progress
from curate.select import SelectRequest, _budget, _examples, default_name
from curate.store import LOAD_CHUNK_BYTES, Store
from curate.strategies import make_strategy
from curate.strategies.kcenter import normalize_rows
from curate.strategies.kcenter_sharded import Collectives, ShardCoverage, sharded_greedy
from curate.subsets import Subset, load_subset, verify_examples

SHARDED = ("kcenter", "random")
KEY_ROWS = 1 << 16  # stored rows whose keys are read per take


class RankFailed(CurateError):
    """A stage failed on some rank; every rank raises it with that rank's line and code."""

    def __init__(self, line: str, code: int):
        super().__init__(line)
        self.exit_code = code


def comm_device(device: str) -> str:
    """``cuda`` (NCCL for the per-pick collectives) or ``cpu`` (gloo)."""
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return "cuda"
    if device == "cuda":
        raise SelectionError(f"{param('device', 'cuda')} requested but no CUDA device is available")
    return "cpu"


def select_sharded(
    store: Store, request: SelectRequest, progress: Progress = NO_PROGRESS
) -> Subset | None:
    """The selection on rank 0; None on the other ranks (they return once it is made)."""
    device = comm_device(request.device)
    ranks = Ranks()
    try:
        ranks = Ranks.from_env("cpu:gloo,cuda:nccl" if device == "cuda" else "gloo", single=True)
        return _run(store, request, ranks, Collectives(ranks, device), progress)
    except RuntimeError as err:  # torch.distributed: a peer is gone, or timed out
        reason = re.sub(r"\[[^\]]*\]\s*", "", str(err).splitlines()[0] if str(err) else "")
        raise SelectionError(
            f"a rank was lost during selection ({reason or type(err).__name__}); "
            "nothing was written"
        ) from err
    finally:
        ranks.close()


def _agreed(ranks: Ranks, fn, *args) -> Any:
    """``fn(*args)`` on every rank; when it fails anywhere, every rank raises the first
    failing rank's error (named by rank when not rank 0)."""
    import torch.distributed as dist

    failure, result = None, None
    try:
        result = fn(*args)
    except CurateError as err:
        failure = (err.template, err.exit_code)  # the CLI spells its parameters
    except OSError as err:
        from curate.cli import os_error_line

        failure = (os_error_line(err), 1)
    except Exception as err:  # a table that does not open raises lance's own errors
        failure = (f"{type(err).__name__}: {err}", 1)
    failures: list = [None] * ranks.world
    dist.all_gather_object(failures, failure, group=ranks.group)
    for rank, failed in enumerate(failures):
        if failed is not None:
            line, code = failed
            raise RankFailed(line if rank == 0 else f"rank {rank}: {line}", code)
    return result


def _from_main(ranks: Ranks, value: Any) -> Any:
    import torch.distributed as dist

    box = [value]
    src = 0 if ranks.group is None else dist.get_global_rank(ranks.group, 0)
    dist.broadcast_object_list(box, src=src, group=ranks.group)
    return box[0]


def _run(store, request, ranks, comm, progress) -> Subset | None:
    started = time.perf_counter()
    progress = progress if ranks.is_main else NO_PROGRESS
    strategy = _agreed(ranks, _sharded_strategy, request)
    if strategy.name == "random":  # needs no vectors: rank 0 alone, as one process
        from curate.select import select_one_process

        selection = _agreed(
            ranks, lambda: select_one_process(store, request, progress) if ranks.is_main else None
        )
        return selection
    plan = _from_main(
        ranks, _agreed(ranks, lambda: _plan(store, request) if ranks.is_main else None)
    )
    coverage = _read_shard(store, plan, ranks, strategy.options["metric"])
    if ranks.is_main:
        progress.start(plan["added"], "picks", f"select {strategy.name} ({ranks.world} ranks)")
    coverage.bound_from(comm.max_float(coverage.local_max_sq_norm))
    picked = sharded_greedy(
        coverage,
        comm,
        plan["size"],
        np.asarray(plan["chosen"], np.int64),
        plan["added"],
        request.seed,
        metric=strategy.options["metric"],
        progress=progress,
    )
    if not ranks.is_main:
        return None
    selection = _subset(store, request, strategy, plan, picked, time.perf_counter() - started)
    selection.ranks = ranks.world
    return selection


def _sharded_strategy(request: SelectRequest):
    strategy = make_strategy(request.strategy, request.params, request.device)
    if strategy.name not in SHARDED:
        raise SelectionError(
            f"{param('strategy', strategy.name)} runs in one process; run `curate select` without "
            f"torchrun (sharded: {', '.join(SHARDED)})"
        )
    if strategy.name == "kcenter" and strategy.options["whiten"]:
        raise SelectionError(
            f"{param('whiten')} runs in one process; run `curate select` without torchrun"
        )
    return strategy


def _plan(store: Store, request: SelectRequest) -> dict[str, Any]:
    """Rank 0's plan: pinned table versions, budget, the parent's pool positions."""
    version = store.require_pool()
    keys = store.pool_keys(version)
    if len(keys) == 0:
        raise SelectionError(f"the pool at {store.path} is empty; run `curate ingest` first")
    chosen, parent = np.zeros(0, np.int64), None
    if request.parent:
        parent = load_subset(request.parent)
        picks = parent.manifest.picks
        wanted = pc.binary_join_element_wise(
            pa.array([p["id"] for p in picks], pa.string()),
            pa.array([p["hash"] for p in picks], pa.string()),
            "\x00",
        )
        where = pc.index_in(wanted, value_set=keys)
        if where.null_count:
            first = picks[int(np.flatnonzero(~pc.is_valid(where).to_numpy(False))[0])]["id"]
            raise SelectionError(
                f"parent {parent.path} was built on a different pool: {where.null_count} of "
                f"{len(picks)} picks (e.g. {first!r}) are not in the pool at {store.path}"
            )
        chosen = where.to_numpy(False).astype(np.int64)
        if len(np.unique(chosen)) != len(chosen):
            raise SelectionError(f"parent {parent.path} lists an example twice")
        verify_examples(parent)
    include = {"dedup": request.include_duplicates, "decontaminate": request.include_contaminated}
    flagged = exclusion(store, include).refs
    if flagged:
        kinds = ", ".join(f"{kind} ({ref['flagged']} rows)" for kind, ref in flagged.items())
        raise SelectionError(
            f"hygiene results flag rows to leave out ({kinds}), which sharded K-center does not "
            f"do yet: run `curate select` without torchrun, or pass "
            f"{param('include_duplicates', True)} {param('include_contaminated', True)} "
            "to choose from every row"
        )
    total, added = _budget(request, len(chosen), len(keys))
    names = store.embedding_names()
    name = request.embeddings
    if name is None:
        if len(names) != 1:
            known = ", ".join(names) or "none; run `curate embed` first (torchrun works there too)"
            raise SelectionError(
                f"{param('strategy', 'kcenter')} needs {param('embeddings', metavar='NAME')} "
                f"(known: {known})"
            )
        name = names[0]
    if not store.has_embeddings(name):
        raise EmbeddingError(
            f"no embeddings named {name!r} in {store.path} (known: {', '.join(names) or 'none'}); "
            f"run `curate embed --name {name}`"
        )
    emb_version = store.embeddings_version(name)
    return {
        "pool_version": version,
        "size": len(keys),
        "chosen": chosen.tolist(),
        "total": total,
        "added": added,
        "parent": (parent.name, parent.manifest_sha256) if parent else None,
        "parent_picks": [{"id": p["id"], "hash": p["hash"]} for p in parent.manifest.picks]
        if parent
        else [],
        "embeddings": name,
        "emb_version": emb_version,
        "stored": store.embeddings_rows_at(name, emb_version),
    }


def _read_shard(store: Store, plan: dict, ranks: Ranks, metric: str) -> ShardCoverage:
    """This rank's rows: which stored rows it keeps (by pool position), then their vectors.
    Local work runs in :func:`_agreed` stages; the collectives sit between them, so every
    rank reaches each collective or every rank raises."""
    import torch
    import torch.distributed as dist

    name, size = plan["embeddings"], plan["size"]
    keys, positions, lo, hi = _agreed(ranks, _stored_positions, store, plan, ranks)
    # the last stored row of each (id, hash) wins, as in one process: max of offset + 1
    claims = np.zeros(size, np.int64)
    found = np.flatnonzero(positions >= 0)
    np.maximum.at(claims, positions[found], found + lo + 1)
    dist.all_reduce(torch.from_numpy(claims), op=dist.ReduceOp.MAX, group=ranks.group)
    missing = np.flatnonzero(claims == 0)  # the same on every rank
    if len(missing):
        shown = ", ".join(keys[int(i)].as_py().split("\x00")[0] for i in missing[:5])
        raise EmbeddingError(
            f"{len(missing)} of {size} pool rows have no vector in embeddings {name!r} "
            f"({shown}{', ...' if len(missing) > 5 else ''}); run `curate embed --name {name}`"
        )
    winners = found[claims[positions[found]] == found + lo + 1]  # local offsets kept
    first = pc.index_in(keys, value_set=keys).to_numpy(False)
    twins = np.flatnonzero(first != np.arange(size))  # the pool holds an (id, hash) twice
    sources = first[twins]
    del keys, claims, first  # the keys' memory is free before the vectors are read
    _trim_heap()
    x, local, fingerprints, bad = _agreed(
        ranks, _read_vectors, store, plan, lo, hi, positions, winners, twins, sources
    )
    checks = _gathered(ranks, (sorted(fingerprints), bad[:5].tolist(), len(bad)))
    all_fps = sorted({f for fps, _, _ in checks for f in fps})
    if len(all_fps) > 1:
        raise EmbeddingError(
            f"embeddings {name!r} mix {len(all_fps)} embedder fingerprints; "
            f"rerun `curate embed --name {name}` to refresh them"
        )
    n_bad = sum(n for _, _, n in checks)
    if n_bad:
        first_bad = np.array([p for _, b, _ in checks for p in b][:5], np.int64)
        named = store.pool_rows_at(plan["pool_version"], first_bad, ["id"])["id"].to_pylist()
        raise EmbeddingError(
            f"embeddings {name!r} have NaN/inf vectors for {n_bad} rows ({', '.join(named)})"
        )
    plan["fingerprint"] = all_fps[0] if all_fps else ""
    if metric == "cosine":
        x = normalize_rows(x)
    return ShardCoverage(x, local, 0.0)


def _stored_positions(store: Store, plan: dict, ranks: Ranks):
    """The pool's keys, and the pool position of each stored row this rank reads (-1: a row
    of no pool row), with the rank's offsets [lo, hi)."""
    name, version, stored = plan["embeddings"], plan["emb_version"], plan["stored"]
    if stored < ranks.world:
        raise SelectionError(
            f"embeddings {name!r} hold {stored} rows, fewer than the {ranks.world} ranks"
        )
    lo, hi = stored * ranks.rank // ranks.world, stored * (ranks.rank + 1) // ranks.world
    keys = store.pool_keys(plan["pool_version"])
    if len(keys) != plan["size"]:
        raise SelectionError(f"the pool at {store.path} changed while planning; run again")
    # small takes (a take holds far more than its two columns while it runs), then one
    # lookup: each lookup builds a hash table of the whole pool
    parts = []
    for s in range(lo, hi, KEY_ROWS):
        batch = store.embeddings_slice(name, version, s, min(s + KEY_ROWS, hi), ["id", "hash"])
        parts.append(pc.binary_join_element_wise(batch["id"], batch["hash"], "\x00"))
    stored_keys = pa.chunked_array(parts, pa.string())
    where = pc.index_in(stored_keys, value_set=keys).fill_null(-1)
    positions = where.to_numpy() if len(stored_keys) else np.zeros(0, np.int64)
    return keys, positions.astype(np.int64), lo, hi


def _read_vectors(store, plan, lo, hi, positions, winners, twins, sources):
    """The kept rows' float32 vectors, sorted by pool position (twins copied from their
    source), each written straight to its slot: the peak is the slice plus one chunk."""
    name, version = plan["embeddings"], plan["emb_version"]
    mine = positions[winners]
    twin_rows, twin_sources = twins[np.isin(sources, mine)], sources[np.isin(sources, mine)]
    local = np.sort(np.concatenate([mine, twin_rows]))
    dim = store.embeddings_schema(name).field("vector").type.list_size
    x = np.empty((len(local), dim), np.float32)
    finite = np.ones(len(local), bool)
    target = np.searchsorted(local, positions)  # slot of each stored row (winners only used)
    keep = np.zeros(hi - lo, bool)
    keep[winners] = True
    fingerprints: set[str] = set()
    step = max(64, LOAD_CHUNK_BYTES // (4 * max(dim, 1)))
    for s in range(lo, hi, step):
        e = min(s + step, hi)
        batch = store.embeddings_slice(name, version, s, e, ["fingerprint", "vector"])
        fingerprints.update(pc.unique(batch["fingerprint"]).to_pylist())
        rows = np.flatnonzero(keep[s - lo : e - lo])
        flat = batch["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        x[target[s - lo + rows]] = flat.reshape(e - s, dim)[rows]
        finite[target[s - lo + rows]] = np.isfinite(flat).reshape(e - s, dim)[rows].all(axis=1)
        if (s - lo) // step % 64 == 63:
            _trim_heap()
    for p, q in zip(twin_rows, twin_sources, strict=True):
        x[np.searchsorted(local, p)] = x[np.searchsorted(local, q)]
        finite[np.searchsorted(local, p)] = finite[np.searchsorted(local, q)]
    _trim_heap()
    return x, local, fingerprints, local[~finite]


def _trim_heap() -> None:
    """Hand the C heap's freed pages back (glibc keeps what LanceDB's reader threads freed
    in per-thread arenas: hundreds of MB over a slice's reads, counted in the peak RSS)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _gathered(ranks: Ranks, value: Any) -> list:
    import torch.distributed as dist

    out: list = [None] * ranks.world
    dist.all_gather_object(out, value, group=ranks.group)
    return out


def _subset(store, request, strategy, plan, picked, seconds) -> Subset:
    """Rank 0: the manifest and examples one process would have made."""
    positions = picked.indices
    rows = store.pool_rows_at(plan["pool_version"], positions, ["id", "hash"])
    ids, hashes = rows["id"].to_pylist(), rows["hash"].to_pylist()
    new_picks = []
    for t in range(len(picked)):
        pick: dict[str, Any] = {"id": ids[t], "hash": hashes[t]}
        d = float(picked.distances[t])
        pick["distance"] = None if np.isnan(d) else d
        new_picks.append(pick)
    picks = plan["parent_picks"] + new_picks
    manifest = Manifest(
        name=request.name or default_name(strategy.name, plan["total"], request.seed),
        strategy=strategy.name,
        params={**strategy.params(), "added": plan["added"]},
        seed=request.seed,
        budget=plan["total"],
        parent=ParentRef(*plan["parent"]) if plan["parent"] else None,
        pool=PoolRef(plan["pool_version"], plan["size"]),
        embeddings=EmbeddingsRef(plan["embeddings"], plan["fingerprint"]),
        picks=picks,
        created_by=f"curate {__version__}",
    )
    all_positions = np.concatenate([np.asarray(plan["chosen"], np.int64), positions])
    examples = _examples(store, all_positions, [(p["id"], p["hash"]) for p in picks])
    return Subset(manifest, examples, seconds=seconds)
