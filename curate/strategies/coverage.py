"""K-center's objective: every row's squared distance to its nearest chosen row.

How the picks stay exact while the bulk work runs in float32 BLAS
-----------------------------------------------------------------
The distance K-center is exact against is :func:`paired_sq_distances`: the float64 sum of
squared differences. Computing that for every row at every pick would cost 2-3x a float32
pass, so each backend keeps an *approximate* running minimum ``m`` from the float32
expansion ``|x|² + |c|² − 2x·c`` (one matrix-vector product per pick, clamped at 0) and
uses a proven error bound ``E`` (:func:`expansion_error_bound`, from the textbook dot-product
bound γ_d = d·u/(1−d·u), valid for any summation order, BLAS or GPU) with
``|m[i] − exact_m[i]| ≤ E`` for every unchosen row. The true farthest row is then among the
rows with ``m ≥ max(m) − 2E``; only those *candidates* (almost always one or two) get their
exact minimum computed in float64 (over the centers whose float32 distance is within 2E of
the smallest, cached so a candidate seen again costs only the new centers), and the
largest exact value wins, ties to the lowest pool position. The result equals a float64
full-matrix implementation, on CPU and GPU alike, and manifests are byte-identical across
them. The price: rows far from the origin relative to their spread (large ``|x|²``, small
distances) widen ``E`` and the candidate set, which costs time, never exactness.

Reading less than one pass over the vectors per pick (the CPU backend, see
:mod:`curate.strategies.coverage_numpy`): *look-ahead blocks* compute the distances of the
next likely picks to every row in one matrix-matrix product, and *triangle-inequality
pruning* skips rows no center of a block can move: each row remembers the center ``a``
that gave its minimum, and a new center ``c`` cannot lower row x's minimum when
``D(a, c)² ≥ 4(m[x] + E)``. Pruning pays on clustered data and not on high-dimensional
Gaussian data, so the check backs off while it does not pay.
"""

from __future__ import annotations

import numpy as np

U32 = 2.0**-24  # unit roundoff, float32
U64 = 2.0**-53  # unit roundoff, float64
BLOCK_ELEMENTS = 1 << 21  # float64 elements per temporary in the exact path (16 MiB)
DEFAULT_CHUNK_ROWS = 1 << 20  # one BLAS call per pick up to 1M rows: thread start-up per call


def expansion_error_bound(dim: int, max_sq_norm: float) -> float:
    """Bound on |float32 expansion − float64 exact| for squared distances of rows whose
    squared norms are at most ``max_sq_norm`` (norms rounded to float32, the dot product
    in float32 by any summation order, two float32 additions; plus float64 rounding)."""
    gamma32 = dim * U32 / (1 - dim * U32)
    gamma64 = (dim + 2) * U64 / (1 - (dim + 2) * U64)
    return (2 * gamma32 + 12 * U32 + 8 * gamma64) * max_sq_norm * 1.01


def paired_sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise float64 sums of squared differences of two (p, d) arrays: the definition
    of distance every K-center result is exact against (both exact paths use it)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    np.square(diff, out=diff)
    return diff.sum(axis=1)


def exact_sq_distances(rows: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(len(rows), len(centers)) float64 :func:`paired_sq_distances` of every pair."""
    dim = max(rows.shape[1], 1)
    out = np.empty((len(rows), len(centers)))
    col_step = max(1, min(len(centers), BLOCK_ELEMENTS // dim))
    row_step = max(1, BLOCK_ELEMENTS // (dim * col_step))
    for r0 in range(0, len(rows), row_step):
        a = rows[r0 : r0 + row_step]
        for c0 in range(0, len(centers), col_step):
            b = centers[c0 : c0 + col_step]
            pairs = paired_sq_distances(np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1)))
            out[r0 : r0 + len(a), c0 : c0 + len(b)] = pairs.reshape(len(a), len(b))
    return out


def expansion_sq_distances(
    a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray
) -> np.ndarray:
    """(len(a), len(b)) float32 expansion |a|² + |b|² − 2a·b, clamped at 0: within
    :func:`expansion_error_bound` of the exact squared distances, in any summation order."""
    if len(a) in (2, 3):  # OpenBLAS's GEMM for 2-3 rows: 1.4-2.6x slower than GEMVs here
        out = np.stack([b @ (row * np.float32(-2.0)) for row in a])
    else:
        out = (a * np.float32(-2.0)) @ b.T  # scaling by 2 is exact
    out += a_sq[:, None]
    out += b_sq[None, :]
    return np.maximum(out, np.float32(0.0), out=out)


def shortlisted_min(
    rows: np.ndarray,
    rows_sq: np.ndarray,
    centers: np.ndarray,
    centers_sq: np.ndarray,
    bound: float,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's exact minimum :func:`paired_sq_distances` to ``centers`` (row i only to
    ``centers[lo[i]:hi[i]]`` when given). The float32 expansion is within ``bound`` of the
    exact value, so only centers within 2·bound of the float32 minimum can hold the exact
    minimum: those few pairs are computed in float64."""
    approx = expansion_sq_distances(rows, rows_sq, centers, centers_sq)
    cols = np.arange(len(centers))[None, :]
    if lo is not None:
        approx[cols < lo[:, None]] = np.inf
    if hi is not None:
        approx[cols >= hi[:, None]] = np.inf
    limit = approx.min(axis=1).astype(np.float64) + 2 * bound * (1 + 1e-6)
    row_at, center_at = np.nonzero(approx <= limit[:, None])  # row-major: grouped by row
    exact = np.empty(len(row_at))
    step = max(1, BLOCK_ELEMENTS // (2 * max(rows.shape[1], 1)))  # bounded float64 copies
    for p0 in range(0, len(row_at), step):
        pairs = slice(p0, p0 + step)
        exact[pairs] = paired_sq_distances(rows[row_at[pairs]], centers[center_at[pairs]])
    # every row has at least one pair (its float32 minimum); row_at ascends
    return np.minimum.reduceat(exact, np.searchsorted(row_at, np.arange(len(rows))))


def block_rows(dim: int) -> int:
    """Rows per float64 temporary of about 8 MiB (keeps peak memory near the vectors')."""
    return max(1, (1 << 20) // max(dim, 1))


def row_sq_norms(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Squared row norms rounded to float32, and their float64 maximum."""
    out = np.empty(len(x), dtype=np.float32)
    top = 0.0
    step = block_rows(x.shape[1])
    for s in range(0, len(x), step):
        block = x[s : s + step].astype(np.float64)
        sq = np.einsum("ij,ij->i", block, block)
        out[s : s + step] = sq
        top = max(top, float(sq.max(initial=0.0)))
    return out, top


class Coverage:
    """Shared bookkeeping: the centers so far and the exact float64 re-check.

    Backends (``NumpyCoverage``, ``TorchCoverage``) keep the approximate minimum and
    implement ``_fold_one``, ``_fold_many``, ``_mark_chosen``, ``_max_value`` and
    ``_candidates``.
    """

    def __init__(self, x: np.ndarray, sq: np.ndarray, max_sq_norm: float):
        self.x = x
        self.sq = sq
        self.bound = expansion_error_bound(x.shape[1], max_sq_norm)
        self.centers: list[int] = []
        self._center_rows = np.empty((16, x.shape[1]), dtype=np.float32)
        self._center_sq = np.empty(16, dtype=np.float32)
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
        have, n = len(self.centers), len(self.centers) + len(indices)
        if n > len(self._center_rows):
            size = max(n, 2 * len(self._center_rows))
            rows = np.empty((size, self.x.shape[1]), np.float32)
            rows[:have] = self._center_rows[:have]
            sq = np.empty(size, np.float32)
            sq[:have] = self._center_sq[:have]
            self._center_rows, self._center_sq = rows, sq
        self._center_rows[have:n] = self.x[indices]
        self._center_sq[have:n] = self.sq[indices]
        self.centers.extend(indices.tolist())

    @property
    def center_rows(self) -> np.ndarray:
        return self._center_rows[: len(self.centers)]

    # ---------------------------------------------------------------- argmax
    def farthest(self) -> int:
        """Pool position of the unchosen row farthest from the centers (exact; ties go to
        the lowest position)."""
        if not self.centers:
            raise ValueError("farthest() needs at least one center")
        top = self._max_value()
        if top == -np.inf:
            raise ValueError("every row is already chosen")
        # every float32 value is within E of its exact value (the bound covers rounding)
        slack = self.bound * (1 + 1e-6)
        rows, approx = self._candidates(top - 2 * slack)
        if len(rows) == 1:
            return int(rows[0])
        # exact value of the float32 leader first: a row more than E below it in float32
        # cannot reach it, so most candidates skip the float64 re-check
        lead = int(np.argmax(approx))
        best = float(self.exact_min(rows[lead : lead + 1])[0])
        rivals = approx + slack >= best
        rivals[lead] = False
        if not rivals.any():
            return int(rows[lead])
        rows = np.concatenate([rows[lead : lead + 1], rows[rivals]])
        exact = np.concatenate([[best], self.exact_min(rows[1:])])
        return int(rows[np.lexsort((rows, -exact))[0]])  # largest, then lowest position

    def exact_min(self, rows: np.ndarray) -> np.ndarray:
        """Exact float64 minimum squared distance of ``rows`` to all centers (cached, so a
        row seen again costs only the centers added since)."""
        n = len(self.centers)
        stale = rows[self._exact_upto[rows] < n]
        if len(stale):
            first = int(self._exact_upto[stale].min())
            step = max(1, BLOCK_ELEMENTS // (n - first))
            for g0 in range(0, len(stale), step):
                part = stale[g0 : g0 + step]
                fresh = shortlisted_min(
                    self.x[part],
                    self.sq[part],
                    self._center_rows[first:n],
                    self._center_sq[first:n],
                    self.bound,
                    lo=self._exact_upto[part] - first,
                )
                self._exact[part] = np.minimum(self._exact[part], fresh)
            self._exact_upto[stale] = n
        return self._exact[rows]

    def pick_sq_distances(self, start: int) -> np.ndarray:
        """Exact squared distance of each center from ``start`` on to the centers before it:
        the distance at pick time (the coverage curve), computed once after the loop."""
        n = len(self.centers)
        out = np.empty(max(0, n - start))
        step = max(1, BLOCK_ELEMENTS // max(n, 1))
        for b0 in range(max(start, 1), n, step):
            b1 = min(b0 + step, n)
            out[b0 - start : b1 - start] = shortlisted_min(
                self._center_rows[b0:b1],
                self._center_sq[b0:b1],
                self._center_rows[: b1 - 1],
                self._center_sq[: b1 - 1],
                self.bound,
                hi=np.arange(b0, b1),
            )
        if start == 0 and n:
            out[0] = np.nan  # the first center has nothing before it
        return out

    # ---------------------------------------------------------------- backend hooks
    def __enter__(self) -> Coverage:
        """Backends set up threads or device settings for the greedy loop here."""
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _fold_one(self, index: int, center_id: int) -> None:
        raise NotImplementedError

    def _fold_many(self, indices: np.ndarray, first_id: int) -> None:
        raise NotImplementedError

    def _mark_chosen(self, indices: np.ndarray) -> None:
        raise NotImplementedError

    def _max_value(self) -> float:
        raise NotImplementedError

    def _candidates(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Ascending positions of the unchosen rows whose float32 minimum is at least
        ``threshold``, and those minima as float64."""
        raise NotImplementedError
