"""CPU backend of the K-center objective: NumPy/BLAS over row chunks, one worker thread
per core, with look-ahead blocks and triangle-inequality pruning (see
:mod:`curate.strategies.coverage`).

Look-ahead: one pick folds one center into every row's minimum, a matrix-vector product
that reads all the vectors to do two flops per float, so a pick costs a full memory pass.
But the next picks can be predicted: when a pick misses the current block, the backend
runs the greedy on the few hundred rows with the largest minimum (their distances to each
other are cheap), takes the next ``B`` rows it would pick, and computes their distances to
every row in one matrix-matrix product (at N=15k, d=384 a 128-column GEMM costs about ten
matrix-vector products, not 128). While the following picks are in the block, folding one
is an O(N) elementwise minimum with a stored column, no pass over the vectors; at N=15k,
d=384, k=1,000 about 80 picks come out of each block on Gaussian data. The picks are
unchanged: a column is the same float32 expansion within the same error bound as a
matrix-vector product, and the exact float64 re-check decides each pick as before. ``B``
adapts to how many picks the last block served; the stored columns take at most an eighth
of the vectors' memory (or 64 MiB).

Why our own threads: OpenBLAS's threads busy-wait for each other, and on a shared 2-core
machine (other processes running) a multi-threaded ``X @ c`` measured 3-10x slower than a
single-threaded one. So for vectors of 8 MiB and more, inside ``with coverage:`` BLAS runs
single-threaded (threadpoolctl) and the rows are split into one chunk per core, each
handled by a worker thread; NumPy releases the GIL in BLAS and in ufunc loops, so the
chunks run in parallel without spinning. Below that, a thread hand-off costs more than it
saves: one chunk on one thread.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import numpy as np

from curate.strategies.coverage import (
    DEFAULT_CHUNK_ROWS,
    Coverage,
    expansion_sq_distances,
    row_sq_norms,
)


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
    MAX_BACKOFF = 4  # blocks without the pruning check after checks that did not pay
    GATHER_ROWS = 1 << 14  # rows gathered at a time
    BLOCK_START, BLOCK_MAX = 16, 128  # look-ahead block width, in centers
    BLOCK_MIN_BYTES = 64 << 20  # a block may always take this much memory
    SPREAD = 4  # a block's centers are predicted among the top SPREAD × width rows

    def __init__(
        self,
        x: np.ndarray,
        chunk_rows: int | None = None,
        prune: bool = True,
        workers: int | None = None,
        lookahead: bool = True,
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
        self._skip_checks = 0  # blocks left before the pruning check is tried again
        self._backoff = 1
        self.rows_scanned = 0  # rows read to compute distances, once per block (stats)
        budget = max(x.nbytes // 8, self.BLOCK_MIN_BYTES) // (4 * max(n, 1))
        self.block_max = max(1, min(self.BLOCK_MAX, budget)) if lookahead else 1
        self._width = min(self.BLOCK_START, self.block_max)
        self._block_col: dict[int, int] = {}  # pool position -> column in the current block
        self._block: list[np.ndarray] = []  # per chunk: (width, chunk rows) float32
        self._block_used = 0  # picks the current block has served
        self.blocks_computed = 0  # (stats)
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
    def _fold_one(self, index: int, center_id: int) -> None:
        col = self._block_col.get(index)
        if col is None:
            self._compute_block(index, center_id)
            col = 0
        self._block_used += 1
        for ci in range(len(self.bounds)):  # O(N) and short: a thread hand-off costs more
            self._fold_column(ci, col, center_id)

    def _fold_column(self, ci: int, col: int, center_id: int) -> None:
        s, e = self.bounds[ci]
        d2, mc = self._block[ci][col], self.m[s:e]
        better = np.less(d2, mc, out=self._mask[s:e])
        np.copyto(mc, d2, where=better)
        np.copyto(self.assign[s:e], np.int32(center_id), where=better)
        self._chunk_max[ci] = mc.max()

    # ---------------------------------------------------------------- look-ahead blocks
    def _block_centers(self, index: int) -> np.ndarray:
        """``index`` and the rows the greedy is likely to pick next, as many as the next
        block holds: twice the last block's width when it served at least three quarters of
        its centers as picks, half when under half (a GEMM costs about two matrix-vector
        products plus a fifth of one per column: wide blocks pay only while they are used).

        The prediction runs the greedy itself on the ``SPREAD × width`` unchosen rows with
        the largest minimum, with their distances to each other: the top rows often sit
        together (the far side of one cluster), and picking one of them drops the others."""
        if self._block_col:
            used, size = self._block_used, len(self._block_col)
            if 4 * used >= 3 * size:
                self._width = min(2 * self._width, self.block_max)
            elif 2 * used < size:
                self._width = max(self._width // 2, 1)
        unchosen = len(self.x) - len(self.centers)  # ``index`` already counts as a center
        width = max(1, min(self._width, unchosen + 1))
        if width == 1:
            return np.array([index], dtype=np.int64)
        m = self.m.copy()
        m[index] = -np.inf
        size = min(unchosen, self.SPREAD * width)
        top = np.argpartition(m, len(m) - size)[len(m) - size :]
        rows = np.concatenate([[index], top[np.isfinite(m[top])]])
        near = expansion_sq_distances(self.x[rows], self.sq[rows], self.x[rows], self.sq[rows])
        guess = m[rows].astype(np.float64)
        picked = [0]
        np.minimum(guess, near[0], out=guess)
        for _ in range(width - 1):
            j = int(np.argmax(guess))
            if guess[j] == -np.inf:
                break
            picked.append(j)
            guess[j] = -np.inf
            np.minimum(guess, near[j], out=guess)
        return rows[picked]

    def _compute_block(self, index: int, center_id: int) -> None:
        """Distances from the block's centers to every row that one of them could move
        closer: one GEMM per chunk (column 0 is ``index``)."""
        self._block = []  # free the old block before computing the next
        ahead = self._block_centers(index)
        self._block_col = {int(p): j for j, p in enumerate(ahead)}
        self._block_used = 0
        centers, centers_sq = self.x[ahead], self.sq[ahead]
        check = self.prune and center_id > 0 and self._skip_checks == 0
        lower = self._lower_bounds(centers, centers_sq, center_id) if check else None
        done = self._each_chunk(lambda ci: self._block_chunk(ci, centers, centers_sq, lower))
        self._block = [block for block, _ in done]
        scanned = sum(n for _, n in done)
        self.rows_scanned += scanned
        self.blocks_computed += 1
        self._adapt(check, scanned)

    def _lower_bounds(self, centers: np.ndarray, centers_sq: np.ndarray, n: int) -> np.ndarray:
        """For each of the first ``n`` centers (by id), a float32 lower bound on its exact
        squared distance to the nearest of the block's ``centers``: the float32 expansion
        is within E of it, so expansion − E, rounded down, is below it."""
        d2 = expansion_sq_distances(centers, centers_sq, self._center_rows[:n], self._center_sq[:n])
        lower = d2.min(axis=0)
        lower -= self.bound32
        return np.nextafter(lower, np.float32(-np.inf))

    def _block_chunk(self, ci: int, centers, centers_sq, lower) -> tuple[np.ndarray, int]:
        """Chunk ``ci``'s (block width, chunk rows) squared distances, and the rows computed.
        With ``lower``, a row x assigned to center a is skipped (left at +inf) when
        D(a, c)² ≥ 4(m[x] + E) for every block center c: then no c is nearer to x than a,
        now or after later picks (m only shrinks)."""
        s, e = self.bounds[ci]
        rows = None
        if lower is not None:
            limit = np.add(self.m[s:e], self.bound32, out=self._buf[s:e])
            limit *= np.float32(4.0 * (1.0 + 2.0**-20))  # rounded safely upward
            live = np.less(lower.take(self.assign[s:e]), limit, out=self._mask[s:e])
            n_live = int(np.count_nonzero(live))
            if n_live < self.SPARSE * (e - s):
                rows = np.flatnonzero(live)
        if rows is None:
            return expansion_sq_distances(centers, centers_sq, self.x[s:e], self.sq[s:e]), e - s
        block = np.full((len(centers), e - s), np.inf, dtype=np.float32)
        for g in range(0, len(rows), self.GATHER_ROWS):  # bounded gathered copies
            part = rows[g : g + self.GATHER_ROWS]
            block[:, part] = expansion_sq_distances(
                centers, centers_sq, self.x[s + part], self.sq[s + part]
            )
        return block, len(rows)

    def _adapt(self, checked: bool, live_total: int) -> None:
        """Back off the pruning check while it skips under a quarter of the rows."""
        if not self.prune:
            return
        if not checked:
            self._skip_checks = max(0, self._skip_checks - 1)
            return
        if live_total > 0.75 * len(self.x):
            self._skip_checks = self._backoff
            self._backoff = min(2 * self._backoff, self.MAX_BACKOFF)
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
                    c1 = c0 + self.MANY_COLS
                    block = expansion_sq_distances(
                        self.x[r0:r1], self.sq[r0:r1], centers[c0:c1], csq[c0:c1]
                    )
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

    def _candidates(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for ci in np.flatnonzero(self._chunk_max >= threshold):
            s, e = self.bounds[ci]
            parts.append(np.flatnonzero(self.m[s:e] >= threshold) + s)
        rows = np.concatenate(parts)
        return rows, self.m[rows].astype(np.float64)
