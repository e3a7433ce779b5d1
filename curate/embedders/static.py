"""``static:`` embedders: a static token-vector table distilled offline from a
sentence-transformers model (model2vec's recipe), for pools too large for a transformer
pass on a CPU.

Distillation, once per source model (cached under ``$CURATE_CACHE/static/``): every
vocabulary token alone (``[CLS] token [SEP]``) goes through the model, its output vector
is kept, the table is reduced to :data:`DIM` dimensions by PCA, and each row is weighted
``SIF / (SIF + p(rank))`` with a Zipf ``p`` over the vocabulary order (frequent tokens
count less). A row's vector is then the normalised mean of its tokens' rows: no forward
pass, about a hundred times MiniLM's rows/s on a CPU (``benchmarks/embedders_cpu.py``).
The text is the one ``st:`` reads; ``max_length`` truncates the tokens.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import Any

import numpy as np

from curate.embedders.base import BatchResult, Embedder
from curate.embedders.sentence_transformer import example_text

DIM = 256
SIF = 1e-4
CHARS_PER_TOKEN_BOUND = 32  # no WordPiece token plus its spacing runs longer in real text
RECIPE = f"model2vec-style: token outputs, PCA {DIM}, SIF {SIF}, v1"


class StaticEmbedder(Embedder):
    name = "static"
    summary = "a static token-vector model distilled offline from a sentence-transformers model"
    pooling = f"mean-static-token-vectors ({RECIPE})"
    text_format = "st-text-v1"
    default_batch_size = 1024

    @cached_property
    def precision(self) -> str:
        return "fp32"  # a table lookup: nothing to gain from bf16

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._model = self._table()

    @cached_property
    def dim(self) -> int:
        self.load()
        return int(self._model.shape[1])

    def _table(self) -> np.ndarray:
        from curate.files import atomic_file
        from curate.models import cache_root, weights_fingerprint

        # The table depends on the source weights and the recipe, not on max_length.
        key = hashlib.sha256(f"{weights_fingerprint(self.model_path)}|{RECIPE}".encode())
        path = cache_root() / "static" / f"{key.hexdigest()[:32]}.npy"
        if path.exists():
            return np.load(path)
        table = distill(self.model_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, table)
        return table

    def embed_batch(self, rows: list[dict[str, Any]]) -> BatchResult:
        self.load()
        special = set(self.tokenizer.all_special_ids)
        # Tokenizing a long chat whole only to keep its first max_length tokens costs more
        # than the lookup: cut the text first, far past where those tokens can end.
        texts = [example_text(r)[: self.max_length * CHARS_PER_TOKEN_BOUND] for r in rows]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(rows), self._model.shape[1]), np.float32)
        for k, ids in enumerate(encoded):
            ids = [t for t in ids if t not in special]
            if ids:
                out[k] = self._model[ids].mean(0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return BatchResult(out / np.maximum(norms, 1e-12))


def distill(model_path: str, batch: int = 1024) -> np.ndarray:
    """The (vocabulary × :data:`DIM`) float32 table of a sentence-transformers model."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    encoder: Any = model[0].auto_model  # Any: sentence-transformers types modules loosely
    tokenizer = model.tokenizer
    vocab = len(tokenizer)
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    vectors = np.zeros((vocab, encoder.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, vocab, batch):
            ids = torch.arange(start, min(start + batch, vocab))
            columns = [ids]
            if first is not None:
                columns.insert(0, torch.full_like(ids, first))
            if last is not None:
                columns.append(torch.full_like(ids, last))
            states = encoder(input_ids=torch.stack(columns, 1)).last_hidden_state
            vectors[start : start + len(ids)] = states[:, 1 if first is not None else 0].numpy()
    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, vocab // 20000)], full_matrices=False)
    reduced = centred @ vt[: min(DIM, vt.shape[0])].T
    rank = np.arange(1, vocab + 1, dtype=np.float64)
    p = (1 / rank) / (1 / rank).sum()
    return (reduced * (SIF / (SIF + p))[:, None]).astype(np.float32)
