"""``st:`` embedders: a sentence-transformers model over the example's full text.

The model folder's own modules (pooling, normalisation) define the vector, and they are
hashed into the fingerprint with the weights. Text is the instruction, input and
response (or every turn of a conversation) separated by blank lines: no prompt
boilerplate, which would only spend the model's short window (256 tokens for MiniLM).

Precision: ``bf16`` when asked for explicitly; ``auto`` stays ``fp32``. These models are
small (MiniLM: 22M parameters, a few seconds per thousand rows), and their vectors are the
fixed yardstick every round's diversity is measured in, so bit-stable vectors are worth
more than the speed.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from curate.embedders.base import BatchResult, Embedder
from curate.errors import ModelError


def example_text(row: dict[str, Any]) -> str:
    if row.get("messages"):
        parts = [m["content"] for m in row["messages"]]
    else:
        parts = [row.get("instruction") or "", row.get("input") or "", row.get("output") or ""]
    return "\n\n".join(p for p in parts if p)


class SentenceTransformerEmbedder(Embedder):
    name = "st"
    summary = "a sentence-transformers model (default: all-MiniLM-L6-v2, offline)"
    pooling = "sentence-transformers-modules"
    text_format = "st-text-v1"
    default_batch_size = 32

    @cached_property
    def precision(self) -> str:
        if self.requested_precision == "auto":
            return "fp32"
        return super().precision

    def load(self) -> None:
        if self._model is not None:
            return
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(self.model_path, device=self.torch_device())
        except (OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ModelError(
                f"{self.spec}: cannot load sentence-transformers model ({reason})"
            ) from None
        # Never read past the window the model was trained with.
        model.max_seq_length = min(self.max_length, model.max_seq_length or self.max_length)
        if self.precision == "bf16":
            import torch

            model.to(torch.bfloat16)
        model.eval()
        self._model = model

    @cached_property
    def dim(self) -> int:
        self.load()
        return int(self._model.get_embedding_dimension())

    def embed_batch(self, rows: list[dict[str, Any]]) -> BatchResult:
        self.load()
        texts = [example_text(row) for row in rows]
        vectors = self._model.encode(
            texts, batch_size=max(1, len(texts)), convert_to_tensor=True, show_progress_bar=False
        )
        vectors = vectors.float().cpu().numpy()
        return BatchResult(np.asarray(vectors, dtype=np.float32).reshape(len(rows), -1))
