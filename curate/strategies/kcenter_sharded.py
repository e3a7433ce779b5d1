"""Greedy K-center over ranks: each rank holds a slice of the pool's vectors, and the picks
equal one process's (:func:`curate.strategies.kcenter.kcenter_greedy`) bit for bit.

Each rank keeps the running float32 minimum ``m`` of its own rows only. Per pick:

1. every rank finds its slice's farthest unchosen row *exactly*, with the single-process
   machinery of :class:`~curate.strategies.coverage.Coverage` (float32 candidates within
   2E of the slice's maximum, then the float64 :func:`paired_sq_distances` minimum over
   every center of each candidate, ties to the lowest pool position);
2. one ``all_gather`` of (exact value, pool position) from every rank, and every rank takes
   the largest value, ties to the lowest position: the same row on every rank;
3. the owner broadcasts that row's float32 vector; every rank folds it into its ``m``
   and appends it to its copy of the centers.

Why the picks equal one process's. The exact value of a row is the float64
:func:`paired_sq_distances` minimum over the centers; it depends only on the row's and the
centers' float32 vectors (the float64 sum over one row's ``d`` squared differences is
computed row by row, whatever else is in the array), never on which rank holds the row.
The float32 pass only chooses which rows get that exact check, and it is safe when the
error bound E covers every pair compared; E grows with the largest squared norm, so every
rank uses the *global* largest (one ``all_reduce(MAX)`` before the loop): with a
slice's own maximum, a center from another rank with a larger norm could fall outside E.
Each rank's answer is then the exact maximum over its slice, ties to its lowest position
(slices are sorted by pool position), and the maximum of those maxima, ties to the lowest
position, is the exact maximum over the pool with the single-process tie rule. The first
center is drawn from the global row count with the same seeded generator, and the
manifest's distances come from :meth:`Coverage.pick_sq_distances` over the same centers in
the same order, so they are equal too. What is *not* sharded: ``--whiten`` (a covariance
summed in a different order gives different floats), so it runs in one process.
"""

from __future__ import annotations

import math

import numpy as np

from curate.errors import SelectionError
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import Selection
from curate.strategies.coverage import (
    Coverage,
    expansion_error_bound,
    expansion_sq_distances,
    row_sq_norms,
)

CHUNK_ROWS = 1 << 18  # rows per float32 temporary when folding a center (1 MiB)
GATHER_BYTES = 16 << 20  # rows per all_reduce when gathering many centers


class ShardCoverage(Coverage):
    """The K-center objective over one rank's rows: ``x`` (local rows, ascending pool
    ``positions``); centers arrive as vectors, from this rank or another."""

    def __init__(self, x: np.ndarray, positions: np.ndarray, max_sq_norm: float):
        sq, top = row_sq_norms(x)
        super().__init__(x, sq, max(max_sq_norm, top))
        self.local_max_sq_norm = top
        self.positions = positions
        self.m = np.full(len(x), np.inf, dtype=np.float32)

    def bound_from(self, max_sq_norm: float) -> None:
        """Widen the error bound to the largest squared norm over *every* rank's rows (the
        centers come from all of them); see the module doc."""
        self.bound = expansion_error_bound(
            self.x.shape[1], max(max_sq_norm, self.local_max_sq_norm)
        )

    def local_index(self, position: int) -> int | None:
        i = int(np.searchsorted(self.positions, position))
        return i if i < len(self.positions) and self.positions[i] == position else None

    def add_center_rows(self, rows: np.ndarray, positions: np.ndarray) -> None:
        """Fold centers (their float32 rows, their pool positions) into every local minimum."""
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(len(positions), -1)
        first = len(self.centers)
        self._remember_rows(rows, positions)
        csq = self._center_sq[first : first + len(rows)]
        for s in range(0, len(self.x), CHUNK_ROWS):
            e = min(s + CHUNK_ROWS, len(self.x))
            for c0 in range(0, len(rows), 1024):
                d2 = expansion_sq_distances(
                    rows[c0 : c0 + 1024], csq[c0 : c0 + 1024], self.x[s:e], self.sq[s:e]
                )
                np.minimum(self.m[s:e], d2.min(axis=0), out=self.m[s:e])
        local = [self.local_index(int(p)) for p in positions]
        self.m[[i for i in local if i is not None]] = -np.inf

    def _remember_rows(self, rows: np.ndarray, positions: np.ndarray) -> None:
        have, n = len(self.centers), len(self.centers) + len(rows)
        if n > len(self._center_rows):
            size = max(n, 2 * len(self._center_rows))
            grown = np.empty((size, self.x.shape[1]), np.float32)
            grown[:have] = self._center_rows[:have]
            sq = np.empty(size, np.float32)
            sq[:have] = self._center_sq[:have]
            self._center_rows, self._center_sq = grown, sq
        self._center_rows[have:n] = rows
        self._center_sq[have:n] = row_sq_norms(rows)[0]
        self.centers.extend(int(p) for p in positions)

    def local_farthest(self) -> tuple[float, int]:
        """(exact squared distance, pool position) of this slice's farthest unchosen row;
        (-inf, -1) when every local row is chosen (or the slice is empty)."""
        if len(self.x) == 0 or self._max_value() == -np.inf:
            return -math.inf, -1
        i = self.farthest()
        return float(self.exact_min(np.array([i]))[0]), int(self.positions[i])

    # the base class's argmax hooks
    def _max_value(self) -> float:
        return float(self.m.max(initial=-np.inf))

    def _candidates(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(self.m >= threshold)
        return rows, self.m[rows].astype(np.float64)


class Collectives:
    """The few collectives the sharded loop needs, over a :class:`~curate.launch.Ranks`
    group; tensors live on ``device`` (``cuda`` for NCCL, else the CPU for gloo)."""

    def __init__(self, ranks, device: str = "cpu"):
        import torch
        import torch.distributed as dist

        self.torch, self.dist, self.ranks, self.device = torch, dist, ranks, torch.device(device)

    def argmax(self, value: float, position: int) -> tuple[float, int, int]:
        """(value, position, owning rank) of the largest value over ranks, ties to the
        lowest position (float64 holds positions exactly up to 2**53)."""
        mine = self.torch.tensor([value, float(position)], dtype=self.torch.float64)
        parts = [
            self.torch.empty(2, dtype=self.torch.float64, device=self.device)
            for _ in range(self.ranks.world)
        ]
        self.dist.all_gather(parts, mine.to(self.device), group=self.ranks.group)
        table = self.torch.stack(parts).cpu().numpy()
        live = np.flatnonzero(table[:, 1] >= 0)
        if len(live) == 0:
            raise SelectionError("every row is already chosen")
        order = np.lexsort((table[live, 1], -table[live, 0]))
        owner = int(live[order[0]])
        return float(table[owner, 0]), int(table[owner, 1]), owner

    def broadcast_row(self, row: np.ndarray | None, owner: int, dim: int) -> np.ndarray:
        """The owner's float32 row, on every rank."""
        torch = self.torch
        if row is not None:
            buf = torch.from_numpy(np.ascontiguousarray(row, np.float32)).to(self.device)
        else:
            buf = torch.empty(dim, dtype=torch.float32, device=self.device)
        src = (
            owner
            if self.ranks.group is None
            else self.dist.get_global_rank(self.ranks.group, owner)
        )
        self.dist.broadcast(buf, src=src, group=self.ranks.group)
        return buf.cpu().numpy()

    def owned_rows(self, coverage: ShardCoverage, positions: np.ndarray) -> np.ndarray:
        """The float32 rows at pool ``positions``, wherever they live: each rank fills the
        rows it owns and zeros elsewhere, and an integer sum of the bit patterns (exactly one
        rank contributes each row) gives every rank the exact rows, signed zeros included."""
        dim = coverage.x.shape[1]
        out = np.empty((len(positions), dim), np.float32)
        step = max(1, GATHER_BYTES // (4 * max(dim, 1)))
        for s in range(0, len(positions), step):
            part = positions[s : s + step]
            block = np.zeros((len(part), dim), np.float32)
            for j, p in enumerate(part):
                i = coverage.local_index(int(p))
                if i is not None:
                    block[j] = coverage.x[i]
            bits = self.torch.from_numpy(block.view(np.int32)).to(self.device)
            self.dist.all_reduce(bits, op=self.dist.ReduceOp.SUM, group=self.ranks.group)
            out[s : s + len(part)] = bits.cpu().numpy().view(np.float32)
        return out

    def max_float(self, value: float) -> float:
        t = self.torch.tensor([value], dtype=self.torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX, group=self.ranks.group)
        return float(t.item())


def sharded_greedy(
    coverage: ShardCoverage,
    comm: Collectives,
    size: int,
    chosen: np.ndarray,
    k: int,
    seed: int,
    *,
    metric: str = "euclidean",
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """``k`` greedy K-center picks over the pool of ``size`` rows spread over the ranks; the
    same :class:`Selection` on every rank, equal to :func:`kcenter_greedy`'s."""
    dim = coverage.x.shape[1]
    if len(chosen):
        coverage.add_center_rows(comm.owned_rows(coverage, chosen), chosen)
        start, picks = len(chosen), []
    else:
        first = int(np.random.default_rng(seed).integers(size))
        coverage.add_center_rows(comm.owned_rows(coverage, np.array([first])), np.array([first]))
        progress.advance(1)
        start, picks = 0, [first]
    while len(picks) < k:
        _, position, owner = comm.argmax(*coverage.local_farthest())
        i = coverage.local_index(position) if owner == comm.ranks.rank else None
        row = comm.broadcast_row(coverage.x[i] if i is not None else None, owner, dim)
        coverage.add_center_rows(row[None, :], np.array([position]))
        picks.append(position)
        progress.advance(1)
    sq = coverage.pick_sq_distances(start)
    distances = sq / 2 if metric == "cosine" else np.sqrt(sq)
    return Selection(np.asarray(picks, dtype=np.int64), distances=distances)
