"""K-center's objective: every row's squared distance to its nearest chosen row.

How the picks stay exact while the bulk work runs in float32 BLAS
-----------------------------------------------------------------
The distance K-center is exact against is :func:`exact_sq_distances`: the float64 sum of
squared differences. Computing that for every row at every pick would cost 2-3x a float32
pass, so each backend keeps an *approximate* running minimum ``m`` from the float32
expansion ``|x|² + |c|² − 2x·c`` (one matrix-vector product per pick, clamped at 0) and
uses a proven error bound ``E`` (:func:`expansion_error_bound`, from the textbook dot-product
bound γ_d = d·u/(1−d·u), valid for any summation order, BLAS or GPU) with
``|m[i] − exact_m[i]| ≤ E`` for every unchosen row. The true farthest row is then among the
rows with ``m ≥ max(m) − 2E``; only those *candidates* (almost always one or two) get their
exact minimum computed in float64 (cached incrementally, so a candidate seen again costs
one new center), and the largest exact value wins, ties to the lowest pool position.
The result equals a float64 full-matrix implementation, on CPU and GPU alike.

Triangle-inequality pruning (the part that reads fewer bytes than a full scan): each row
remembers the center ``a`` that gave its minimum. A new center ``c`` cannot lower row x's
minimum when ``D(a, c)² ≥ 4(m[x] + E)``, so such rows skip the matrix-vector product; when
more than a few rows of a block survive, the block is scanned whole. This prunes a lot
on clustered data and nothing on high-dimensional Gaussian data, so the check backs off
while it does not pay.
"""

from __future__ import annotations

import numpy as np

U32 = 2.0**-24  # unit roundoff, float32
U64 = 2.0**-53  # unit roundoff, float64
BLOCK_ELEMENTS = 1 << 21  # float64 elements per temporary in the exact path (16 MiB)
DEFAULT_CHUNK_ROWS = 1 << 16


def expansion_error_bound(dim: int, max_sq_norm: float) -> float:
    """Bound on |float32 expansion − float64 exact| for squared distances of rows whose
    squared norms are at most ``max_sq_norm`` (norms rounded to float32, the dot product
    in float32 by any summation order, two float32 additions; plus float64 rounding)."""
    gamma32 = dim * U32 / (1 - dim * U32)
    gamma64 = (dim + 2) * U64 / (1 - (dim + 2) * U64)
    return (2 * gamma32 + 12 * U32 + 8 * gamma64) * max_sq_norm * 1.01


def exact_sq_distances(rows: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(len(rows), len(centers)) float64 sums of squared differences: the definition of
    distance every K-center result is exact against."""
    a = np.asarray(rows, dtype=np.float64)
    b = np.asarray(centers, dtype=np.float64)
    out = np.empty((len(a), len(b)))
    dim = max(a.shape[1], 1)
    col_step = max(1, min(len(b), BLOCK_ELEMENTS // dim))
    row_step = max(1, BLOCK_ELEMENTS // (dim * col_step))
    for r0 in range(0, len(a), row_step):
        for c0 in range(0, len(b), col_step):
            diff = a[r0 : r0 + row_step, None, :] - b[None, c0 : c0 + col_step, :]
            np.square(diff, out=diff)
            out[r0 : r0 + row_step, c0 : c0 + col_step] = diff.sum(axis=-1)
    return out


def row_sq_norms(x: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[np.ndarray, float]:
    """Squared row norms rounded to float32, and their float64 maximum."""
    out = np.empty(len(x), dtype=np.float32)
    top = 0.0
    for s in range(0, len(x), chunk_rows):
        block = x[s : s + chunk_rows].astype(np.float64)
        sq = np.einsum("ij,ij->i", block, block)
        out[s : s + chunk_rows] = sq
        top = max(top, float(sq.max(initial=0.0)))
    return out, top


def _round_down_f32(values: np.ndarray) -> np.ndarray:
    """float64 → float32 never rounding up."""
    out = values.astype(np.float32)
    up = out.astype(np.float64) > values
    out[up] = np.nextafter(out[up], np.float32(-np.inf))
    return out


class Coverage:
    """Shared bookkeeping: the centers so far and the exact float64 re-check.

    Backends (:class:`NumpyCoverage`, ``TorchCoverage``) keep the approximate minimum and
    implement ``_fold_one``, ``_fold_many``, ``_mark_chosen``, ``_max_value`` and
    ``_candidates``.
    """

    def __init__(self, x: np.ndarray, sq: np.ndarray, max_sq_norm: float):
        self.x = x
        self.sq = sq
        self.bound = expansion_error_bound(x.shape[1], max_sq_norm)
        self.centers: list[int] = []
        self._center_rows = np.empty((16, x.shape[1]), dtype=np.float32)
        self._exact = np.full(len(x), np.inf)  # cached exact minimum ...
        self._exact_upto = np.zeros(len(x), dtype=np.int32)  # ... over centers[:upto]

    # ---------------------------------------------------------------- centers
    def add_centers(self, indices) -> None:
        """Fold new centers into every row's minimum and retire them from the argmax."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) == 0:
            return
        first = len(self.centers)
        self._remember(indices)
        if len(indices) == 1:
            self._fold_one(int(indices[0]), first)
        else:
            self._fold_many(indices, first)
        self._mark_chosen(indices)

    def _remember(self, indices: np.ndarray) -> None:
        n = len(self.centers) + len(indices)
        if n > len(self._center_rows):
            grown = np.empty((max(n, 2 * len(self._center_rows)), self.x.shape[1]), np.float32)
            grown[: len(self.centers)] = self._center_rows[: len(self.centers)]
            self._center_rows = grown
        self._center_rows[len(self.centers) : n] = self.x[indices]
        self.centers.extend(int(i) for i in indices)

    @property
    def center_rows(self) -> np.ndarray:
        return self._center_rows[: len(self.centers)]

    # ---------------------------------------------------------------- argmax
    def farthest(self) -> tuple[int, float]:
        """(pool position, exact squared distance) of the unchosen row farthest from the
        centers; ties go to the lowest position."""
        if not self.centers:
            raise ValueError("farthest() needs at least one center")
        top = self._max_value()
        if top == -np.inf:
            raise ValueError("every row is already chosen")
        candidates = self._candidates(top - 3 * self.bound)  # 3E: 2E proven + float32 rounding
        exact = self.exact_min(candidates)
        best = int(np.argmax(exact))  # candidates ascend, so the first maximum is the lowest
        return int(candidates[best]), float(exact[best])

    def exact_min(self, rows: np.ndarray) -> np.ndarray:
        """Exact float64 minimum squared distance of ``rows`` to all centers (cached)."""
        n = len(self.centers)
        values = self._exact[rows]
        todo = self._exact_upto[rows] < n
        if todo.any():
            stale = rows[todo]
            start = int(self._exact_upto[stale].min())
            fresh = exact_sq_distances(self.x[stale], self._center_rows[start:n]).min(axis=1)
            values[todo] = np.minimum(values[todo], fresh)
            self._exact[stale] = values[todo]
            self._exact_upto[stale] = n
        return values

    # ---------------------------------------------------------------- backend hooks
    def _fold_one(self, index: int, center_id: int) -> None:
        raise NotImplementedError

    def _fold_many(self, indices: np.ndarray, first_id: int) -> None:
        raise NotImplementedError

    def _mark_chosen(self, indices: np.ndarray) -> None:
        raise NotImplementedError

    def _max_value(self) -> float:
        raise NotImplementedError

    def _candidates(self, threshold: float) -> np.ndarray:
        raise NotImplementedError


class NumpyCoverage(Coverage):
    """CPU backend: NumPy/BLAS over row chunks, with triangle-inequality pruning."""

    MANY_COLS = 1024  # centers per GEMM block when folding a parent in
    MANY_ROWS = 4096  # rows per GEMM block
    SPARSE = 0.25  # a chunk with fewer live rows than this fraction gathers them

    def __init__(self, x: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS, prune: bool = True):
        sq, top = row_sq_norms(x, chunk_rows)
        super().__init__(x, sq, top)
        n = len(x)
        self.chunk_rows = max(1, chunk_rows)
        self.m = np.full(n, np.inf, dtype=np.float32)
        self.assign = np.full(n, -1, dtype=np.int32)  # center id that gave m (for pruning)
        self.prune = prune
        self._chunk_max = np.full((n + self.chunk_rows - 1) // self.chunk_rows, np.inf, np.float32)
        self._buf = np.empty(min(n, self.chunk_rows), dtype=np.float32)
        self._mask = np.empty(min(n, self.chunk_rows), dtype=bool)
        self._skip_checks = 0  # picks left before the pruning check is tried again
        self._backoff = 1
        self.rows_scanned = 0  # rows whose distance to a new center was computed (stats)
        self.bound32 = np.float32(self.bound)
        if float(self.bound32) < self.bound:
            self.bound32 = np.nextafter(self.bound32, np.float32(np.inf))

    def _chunks(self):
        for ci, s in enumerate(range(0, len(self.x), self.chunk_rows)):
            yield ci, s, min(s + self.chunk_rows, len(self.x))

    # ---------------------------------------------------------------- one center
    def _lower_bounds(self, index: int, center_id: int) -> np.ndarray:
        """float32 lower bounds on the exact squared distance from the new center to each
        earlier center (indexed by center id)."""
        rows = self._center_rows[:center_id]
        prods = (rows @ self.x[index]).astype(np.float64)
        csq = self.sq[np.asarray(self.centers[:center_id])].astype(np.float64)
        d2 = csq + float(self.sq[index]) - 2.0 * prods - self.bound
        return _round_down_f32(d2)

    def _fold_one(self, index: int, center_id: int) -> None:
        c, cn = self.x[index], self.sq[index]
        check = self.prune and center_id > 0 and self._skip_checks == 0
        lower = self._lower_bounds(index, center_id) if check else None
        scale = np.float32(4.0 * (1.0 + 2.0**-20))  # 4(m + E), rounded safely upward
        live_total = 0
        for ci, s, e in self._chunks():
            mc, ac = self.m[s:e], self.assign[s:e]
            if check:
                limit = np.add(mc, self.bound32, out=self._buf[: e - s])
                limit *= scale
                live = np.less(lower.take(ac), limit, out=self._mask[: e - s])
                n_live = int(np.count_nonzero(live))
                live_total += n_live
                if n_live == 0:
                    continue
                if n_live < self.SPARSE * (e - s):
                    self._fold_rows(np.flatnonzero(live), s, c, cn, center_id)
                    self._chunk_max[ci] = mc.max()
                    continue
            else:
                live_total += e - s
            self._fold_chunk(s, e, c, cn, center_id)
            self._chunk_max[ci] = mc.max()
        self.rows_scanned += live_total
        self._adapt(check, live_total)

    def _fold_chunk(self, s: int, e: int, c: np.ndarray, cn: np.float32, center_id: int) -> None:
        d2 = np.dot(self.x[s:e], c, out=self._buf[: e - s])
        d2 *= np.float32(-2.0)
        d2 += self.sq[s:e]
        d2 += cn
        np.maximum(d2, np.float32(0.0), out=d2)
        mc = self.m[s:e]
        better = np.less(d2, mc, out=self._mask[: e - s])
        np.copyto(mc, d2, where=better)
        np.copyto(self.assign[s:e], np.int32(center_id), where=better)

    def _fold_rows(self, local: np.ndarray, s: int, c, cn, center_id: int) -> None:
        rows = local + s
        d2 = self.x[rows] @ c
        d2 *= np.float32(-2.0)
        d2 += self.sq[rows]
        d2 += cn
        np.maximum(d2, np.float32(0.0), out=d2)
        better = d2 < self.m[rows]
        self.m[rows[better]] = d2[better]
        self.assign[rows[better]] = center_id

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
        centers = self.x[indices]
        csq = self.sq[indices]
        for ci, s, e in self._chunks():
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
        self.rows_scanned += len(self.x) * len(indices)

    # ---------------------------------------------------------------- argmax
    def _mark_chosen(self, indices: np.ndarray) -> None:
        self.m[indices] = -np.inf
        for ci in np.unique(indices // self.chunk_rows):
            s = int(ci) * self.chunk_rows
            self._chunk_max[ci] = self.m[s : s + self.chunk_rows].max()

    def _max_value(self) -> float:
        return float(self._chunk_max.max())

    def _candidates(self, threshold: float) -> np.ndarray:
        parts = []
        for ci in np.flatnonzero(self._chunk_max >= threshold):
            s = int(ci) * self.chunk_rows
            parts.append(np.flatnonzero(self.m[s : s + self.chunk_rows] >= threshold) + s)
        return np.concatenate(parts)
