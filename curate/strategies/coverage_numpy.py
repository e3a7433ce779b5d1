"""CPU backend of the K-center objective: NumPy/BLAS over row chunks, one worker thread
per core, with triangle-inequality pruning (see :mod:`curate.strategies.coverage`).

Why our own threads: a pick is one matrix-vector product over all rows. OpenBLAS's
threads busy-wait for each other, and on a shared 2-core machine (other processes
running) a multi-threaded ``X @ c`` measured 3-10x slower than a single-threaded one. So
for vectors of 8 MiB and more, inside ``with coverage:`` BLAS runs single-threaded
(threadpoolctl) and the rows are split into one chunk per core, each folded by a worker
thread; NumPy releases the GIL in BLAS and in ufunc loops, so the chunks run in parallel
without spinning. Below that, a thread hand-off costs more than it saves: one chunk on
one thread.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import numpy as np

from curate.strategies.coverage import DEFAULT_CHUNK_ROWS, Coverage, row_sq_norms


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class NumpyCoverage(Coverage):
    PARALLEL_MIN = 1 << 21  # vector elements (8 MiB) below which one thread is faster
    MANY_COLS = 1024  # centers per GEMM block when folding a parent in
    MANY_ROWS = 4096  # rows per GEMM block
    SPARSE = 0.25  # a chunk with fewer live rows than this fraction gathers them
    GATHER_ROWS = 1 << 14  # rows gathered at a time

    def __init__(
        self,
        x: np.ndarray,
        chunk_rows: int | None = None,
        prune: bool = True,
        workers: int | None = None,
    ):
        sq, top = row_sq_norms(x)
        super().__init__(x, sq, top)
        n = len(x)
        if workers is None:
            workers = available_cpus() if x.size >= self.PARALLEL_MIN else 1
        self.workers = max(1, workers)
        per_worker = math.ceil(n / self.workers) if n else 1
        self.chunk_rows = max(1, chunk_rows or min(DEFAULT_CHUNK_ROWS, per_worker))
        self.bounds = [(s, min(s + self.chunk_rows, n)) for s in range(0, n, self.chunk_rows)]
        self.m = np.full(n, np.inf, dtype=np.float32)
        self.assign = np.full(n, -1, dtype=np.int32)  # center id that gave m (for pruning)
        self.prune = prune
        self._chunk_max = np.full(len(self.bounds), np.inf, np.float32)
        self._buf = np.empty(n, dtype=np.float32)  # chunk-sized slices, one per chunk
        self._mask = np.empty(n, dtype=bool)
        self._skip_checks = 0  # picks left before the pruning check is tried again
        self._backoff = 1
        self.rows_scanned = 0  # rows whose distance to a new center was computed (stats)
        self.bound32 = np.float32(self.bound)
        if float(self.bound32) < self.bound:
            self.bound32 = np.nextafter(self.bound32, np.float32(np.inf))
        self._pool: ThreadPoolExecutor | None = None
        self._stack = ExitStack()

    # ---------------------------------------------------------------- threads
    def __enter__(self) -> NumpyCoverage:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # BLAS keeps its own threads; chunks run one after another
            return self
        self._stack.enter_context(threadpool_limits(1, user_api="blas"))
        if self.workers > 1 and len(self.bounds) > 1:
            self._pool = self._stack.enter_context(ThreadPoolExecutor(self.workers))
        return self

    def __exit__(self, *exc) -> None:
        self._pool = None
        self._stack.close()

    def _each_chunk(self, fn) -> list:
        chunks = range(len(self.bounds))
        return list(self._pool.map(fn, chunks)) if self._pool else [fn(ci) for ci in chunks]

    # ---------------------------------------------------------------- one center
    def _lower_bounds(self, index: int, center_id: int) -> np.ndarray:
        """float32 lower bounds on the exact squared distance from the new center to each
        earlier center (indexed by center id)."""
        prods = (self._center_rows[:center_id] @ self.x[index]).astype(np.float64)
        csq = self._center_sq[:center_id].astype(np.float64)
        d2 = csq + (float(self.sq[index]) - self.bound) - 2.0 * prods
        return np.nextafter(d2.astype(np.float32), np.float32(-np.inf))  # never rounds up

    def _fold_one(self, index: int, center_id: int) -> None:
        check = self.prune and center_id > 0 and self._skip_checks == 0
        lower = self._lower_bounds(index, center_id) if check else None
        scanned = self._each_chunk(lambda ci: self._fold_one_chunk(ci, index, center_id, lower))
        self.rows_scanned += sum(scanned)
        self._adapt(check, sum(scanned))

    def _fold_one_chunk(self, ci: int, index: int, center_id: int, lower) -> int:
        """Fold the center into chunk ``ci``; returns the rows whose distance was computed."""
        s, e = self.bounds[ci]
        mc = self.m[s:e]
        if lower is None:
            self._fold_rows(s, e, None, index, center_id)
        else:
            # alive unless D(a, c)² ≥ 4(m + E): then c cannot be nearer than a
            limit = np.add(mc, self.bound32, out=self._buf[s:e])
            limit *= np.float32(4.0 * (1.0 + 2.0**-20))  # rounded safely upward
            live = np.less(lower.take(self.assign[s:e]), limit, out=self._mask[s:e])
            n_live = int(np.count_nonzero(live))
            if n_live == 0:
                return 0
            rows = np.flatnonzero(live) + s if n_live < self.SPARSE * (e - s) else None
            self._fold_rows(s, e, rows, index, center_id)
            if rows is not None:
                self._chunk_max[ci] = mc.max()
                return n_live
        self._chunk_max[ci] = mc.max()
        return e - s

    def _fold_rows(self, s: int, e: int, rows, index: int, center_id: int) -> None:
        """Distances of rows ``s:e`` (or only ``rows``) to the center; keep the smaller."""
        if rows is not None and len(rows) > self.GATHER_ROWS:  # bound the gathered copy
            for g in range(0, len(rows), self.GATHER_ROWS):
                self._fold_rows(s, e, rows[g : g + self.GATHER_ROWS], index, center_id)
            return
        c, cn = self.x[index], self.sq[index]
        if rows is None:
            d2 = np.dot(self.x[s:e], c, out=self._buf[s:e])
            sq, m, assign = self.sq[s:e], self.m[s:e], self.assign[s:e]
        else:
            d2 = self.x[rows] @ c
            sq, m, assign = self.sq[rows], self.m[rows], self.assign[rows]
        d2 *= np.float32(-2.0)
        d2 += sq
        d2 += cn
        np.maximum(d2, np.float32(0.0), out=d2)
        better = np.less(d2, m, out=self._mask[s:e] if rows is None else None)
        np.copyto(m, d2, where=better)
        np.copyto(assign, np.int32(center_id), where=better)
        if rows is not None:  # fancy indexing gave copies: write them back
            self.m[rows], self.assign[rows] = m, assign

    def _adapt(self, checked: bool, live_total: int) -> None:
        """Back off the pruning check while it skips under a quarter of the rows."""
        if not self.prune:
            return
        if not checked:
            self._skip_checks = max(0, self._skip_checks - 1)
            return
        if live_total > 0.75 * len(self.x):
            self._skip_checks = self._backoff
            self._backoff = min(2 * self._backoff, 64)
        else:
            self._backoff = 1

    # ---------------------------------------------------------------- many centers
    def _fold_many(self, indices: np.ndarray, first_id: int) -> None:
        centers = self._center_rows[first_id : first_id + len(indices)]  # already remembered
        csq = self._center_sq[first_id : first_id + len(indices)]

        def fold(ci: int) -> None:
            s, e = self.bounds[ci]
            for r0 in range(s, e, self.MANY_ROWS):
                r1 = min(r0 + self.MANY_ROWS, e)
                mc, ac = self.m[r0:r1], self.assign[r0:r1]
                for c0 in range(0, len(indices), self.MANY_COLS):
                    block = self.x[r0:r1] @ centers[c0 : c0 + self.MANY_COLS].T
                    block *= np.float32(-2.0)
                    block += self.sq[r0:r1, None]
                    block += csq[None, c0 : c0 + self.MANY_COLS]
                    np.maximum(block, np.float32(0.0), out=block)
                    nearest = block.argmin(axis=1)
                    d2 = block[np.arange(r1 - r0), nearest]
                    better = d2 < mc
                    mc[better] = d2[better]
                    ac[better] = first_id + c0 + nearest[better]
            self._chunk_max[ci] = self.m[s:e].max()

        self._each_chunk(fold)
        self.rows_scanned += len(self.x) * len(indices)

    # ---------------------------------------------------------------- argmax
    def _mark_chosen(self, indices: np.ndarray) -> None:
        self.m[indices] = -np.inf
        chunks = indices // self.chunk_rows
        for ci in chunks[:1] if len(indices) == 1 else np.unique(chunks):
            s, e = self.bounds[ci]
            self._chunk_max[ci] = self.m[s:e].max()

    def _max_value(self) -> float:
        return float(self._chunk_max.max())

    def _candidates(self, threshold: float) -> np.ndarray:
        parts = []
        for ci in np.flatnonzero(self._chunk_max >= threshold):
            s, e = self.bounds[ci]
            parts.append(np.flatnonzero(self.m[s:e] >= threshold) + s)
        return np.concatenate(parts)
