"""The selection rule: rows flagged by a current hygiene result are not chosen.

A result counts when it was computed on the pool version selection reads; one computed on
an older version is stale: it is reported (a warning the caller shows) and not used. The
subset's manifest records each result it was chosen under (table version, pool version,
settings), so ``curate subsets verify`` can check the picks against exactly that result.
Only the new picks are constrained: a parent's picks stay as they were chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from curate.errors import SubsetError
from curate.strategies import PoolArrays, Selection

OPT_OUT = {"dedup": "--include-duplicates", "decontaminate": "--include-contaminated"}


@dataclass
class Exclusion:
    keys: set[tuple[str, str]] = field(default_factory=set)  # (id, hash) of flagged rows
    refs: dict[str, Any] = field(default_factory=dict)  # kind -> result reference
    warnings: list[str] = field(default_factory=list)


def flagged_keys(kind: str, rows) -> set[tuple[str, str]]:
    """(id, hash) of the rows a result flags: a group's non-kept rows, every matching row."""
    if kind == "dedup":
        rows = rows.filter(pc.invert(rows["keep"]))
    return set(zip(rows["id"].to_pylist(), rows["hash"].to_pylist(), strict=True))


def exclusion(store, include: dict[str, bool]) -> Exclusion:
    """The rows to leave out under the current results (``include[kind]`` opts out)."""
    out = Exclusion()
    pool_version = store.pool_version()
    for kind, opt_out in OPT_OUT.items():
        if include.get(kind):
            continue
        result = store.hygiene_result(kind)
        if result is None:
            continue
        if result.pool_version != pool_version:
            out.warnings.append(
                f"the {kind} result (hyg_{kind} v{result.version}) was computed on pool version "
                f"{result.pool_version}, the pool is at {pool_version}: not used; rerun "
                f"`curate {kind}` (or pass {opt_out} to silence this)"
            )
            continue
        keys = flagged_keys(kind, result.rows)
        out.keys |= keys
        out.refs[kind] = {**result.ref(), "flagged": len(keys)}
    return out


def restrict(
    arrays: PoolArrays, chosen: np.ndarray, excluded: np.ndarray
) -> tuple[PoolArrays, np.ndarray, np.ndarray]:
    """The pool without the ``excluded`` positions (chosen rows always stay): the smaller
    arrays, ``chosen`` in their positions, and the map back to pool positions."""
    keep = np.ones(arrays.size, dtype=bool)
    keep[excluded] = False
    keep[chosen] = True
    index = np.flatnonzero(keep)
    small = PoolArrays(
        len(index),
        arrays.vectors[index] if arrays.vectors is not None else None,
        {name: values[index] for name, values in arrays.scores.items()},
        arrays.lengths[index] if arrays.lengths is not None else None,
    )
    return small, np.searchsorted(index, chosen).astype(np.int64), index


def lift(selection: Selection, index: np.ndarray) -> Selection:
    """A selection made on restricted arrays, in pool positions."""
    return Selection(index[selection.indices], selection.distances, selection.scores)


def verify_hygiene(store, manifest, subset_path) -> str:
    """Check that a subset's new picks avoid the rows flagged by the results its manifest
    names, read at the recorded table versions. Returns "ok", "none" (it names none) or
    "gone" (a named result no longer exists as recorded: the table was rebuilt, e.g. by a
    pipeline rerun, so nothing can be checked); raises when a pick is a flagged row."""
    refs = manifest.hygiene or {}
    if not refs:
        return "none"
    new = manifest.keys[len(manifest.keys) - manifest.added :]
    status = "ok"
    for kind, ref in refs.items():
        result = store.hygiene_result(kind, version=ref["version"])
        if (
            result is None
            or result.settings != ref["settings"]
            or result.pool_version != ref["pool_version"]
        ):
            status = "gone"
            continue
        bad = [key for key in new if key in flagged_keys(kind, result.rows)]
        if bad:
            raise SubsetError(
                f"{subset_path}: {len(bad)} picks (e.g. {bad[0][0]!r}) are rows flagged by "
                f"hyg_{kind} v{ref['version']}, which the subset claims to have left out"
            )
    return status
