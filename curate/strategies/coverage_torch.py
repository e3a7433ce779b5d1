"""GPU backend of the K-center objective (torch). Same contract as :class:`NumpyCoverage`:
an approximate float32 minimum on the device, exact float64 re-check of the candidates on
the host (see :mod:`curate.strategies.coverage`), so picks equal the CPU backend's."""

from __future__ import annotations

import numpy as np

from curate.strategies.coverage import DEFAULT_CHUNK_ROWS, Coverage, row_sq_norms


class TorchCoverage(Coverage):
    MANY_COLS = 4096

    def __init__(self, x: np.ndarray, device: str, chunk_rows: int = DEFAULT_CHUNK_ROWS * 16):
        import torch

        sq, top = row_sq_norms(x)
        super().__init__(x, sq, top)
        self.torch = torch
        self.device = torch.device(device)
        self.chunk_rows = max(1, chunk_rows)
        self.xd = torch.from_numpy(x).to(self.device)
        self.sqd = torch.from_numpy(sq).to(self.device)
        self.m = torch.full((len(x),), float("inf"), dtype=torch.float32, device=self.device)
        self.rows_scanned = 0
        self._precision: str | None = None

    def __enter__(self) -> TorchCoverage:
        # TF32 would break the float32 error bound: IEEE float32 matmuls meanwhile
        self._precision = self.torch.get_float32_matmul_precision()
        self.torch.set_float32_matmul_precision("highest")
        return self

    def __exit__(self, *exc) -> None:
        if self._precision is not None:
            self.torch.set_float32_matmul_precision(self._precision)

    def _fold_one(self, index: int, center_id: int) -> None:
        c, cn = self.xd[index], self.sqd[index]
        for s in range(0, len(self.x), self.chunk_rows):
            e = min(s + self.chunk_rows, len(self.x))
            d2 = self.xd[s:e] @ c
            d2.mul_(-2.0).add_(self.sqd[s:e]).add_(cn).clamp_(min=0.0)
            self.torch.minimum(self.m[s:e], d2, out=self.m[s:e])
        self.rows_scanned += len(self.x)

    def _fold_many(self, indices: np.ndarray, first_id: int) -> None:
        idx = self.torch.from_numpy(indices).to(self.device)
        centers, csq = self.xd[idx], self.sqd[idx]
        rows = max(1, (1 << 26) // max(1, min(len(indices), self.MANY_COLS)))
        for s in range(0, len(self.x), rows):
            e = min(s + rows, len(self.x))
            for c0 in range(0, len(indices), self.MANY_COLS):
                block = self.xd[s:e] @ centers[c0 : c0 + self.MANY_COLS].T
                block.mul_(-2.0).add_(self.sqd[s:e, None]).add_(csq[None, c0 : c0 + self.MANY_COLS])
                block.clamp_(min=0.0)
                self.torch.minimum(self.m[s:e], block.min(dim=1).values, out=self.m[s:e])
        self.rows_scanned += len(self.x) * len(indices)

    def _mark_chosen(self, indices: np.ndarray) -> None:
        self.m[self.torch.from_numpy(indices).to(self.device)] = float("-inf")

    def _max_value(self) -> float:
        return float(self.m.max().item())

    def _candidates(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        idx = self.torch.nonzero(self.m >= threshold).flatten()
        values = self.m[idx].cpu().numpy().astype(np.float64)
        return idx.cpu().numpy().astype(np.int64), values
