"""The embedder interface: one abstract method, ``embed_batch(rows)``.

Everything else a caller needs (the fingerprint, length-sorted batching, the vector
dimension) is built on it here, so a new embedder is one class with one method, like
llm's ``EmbeddingModel``. Rows are pool rows as dicts (``instruction``, ``input``,
``output``, ``messages``, ``n_chars``, ...).

Constructing an embedder is cheap: it names the model folder and computes the
fingerprint from files; weights load on the first batch (or :meth:`Embedder.load`).
That is what lets a fully cached ``curate embed`` finish without importing torch.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision
from curate.embedders.fingerprints import embedder_fingerprint
from curate.errors import EmbeddingError
from curate.plugins import Plugin
from curate.prompts import PaddingCount

# Characters per token when planning batches before any tokenizer is loaded (English BPE
# averages about 4; a low guess only makes batches smaller), and the tokens a template adds.
CHARS_PER_TOKEN = 3.5
TEMPLATE_TOKENS = 48
# A stand-in example, used only to learn the vector size of an embedder that cannot tell it.
PROBE_ROW = {"instruction": "Say hello.", "input": "", "output": "Hello.", "messages": None}


@dataclass
class BatchResult:
    """Vectors (and, when asked, the embedder's ``score_columns``) for a batch, in order."""

    vectors: np.ndarray  # (B, d) float32
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # column -> (B,) float32


class Embedder(Plugin, ABC):
    """Turns pool rows into fixed-size float32 vectors.

    Subclasses set the class attributes and implement :meth:`embed_batch`; they may
    override :meth:`load` (to load weights eagerly) and :attr:`dim` (when the size is known
    without a forward pass). A row's vector must not depend on the other rows in its batch.
    ``name`` is the spec prefix (``st`` in ``st:minilm``); another package registers an
    embedder through the ``curate.embedders`` entry-point group, and its spec's target
    (after the colon) reaches it as ``model_path`` unchanged.
    """

    pooling: ClassVar[str]  # how token states become one vector (part of the fingerprint)
    text_format: ClassVar[str]  # how a row becomes text/tokens (part of the fingerprint)
    # The per-row scores it can compute besides the vector (``BatchResult.scores`` keys; one
    # float32 column each in a table made with them). Declared where they are computed.
    score_columns: ClassVar[tuple[str, ...]] = ()
    with_scores: bool = False  # whether batches carry them (set per run: load_embedder(scores=))
    default_batch_size: ClassVar[int] = 32  # most rows in one batch
    # Most padded tokens (rows × longest row) in one batch; None: rows only.
    batch_tokens: ClassVar[int | None] = None

    @classmethod
    def kind_label(cls) -> str:
        return "embedder"

    @classmethod
    def require_scores(cls, spec: str) -> None:
        """Refuse a run that asks ``spec`` for scores when it declares no score columns."""
        if not cls.score_columns:
            raise EmbeddingError(
                f"{spec} computes no score columns (uncertainty, IFD); "
                "a causal LM (lm:<model>) does"
            )

    def __init__(
        self,
        spec: str,
        model_path: str,
        max_length: int = 512,
        device: str = DEFAULT_DEVICE,
        precision: Precision = DEFAULT_PRECISION,
    ):
        self.spec = spec
        self.model_path = model_path
        self.max_length = max_length
        self.device = device
        self.requested_precision = precision
        self.padding = PaddingCount()  # over every batch this embedder ran
        self._model: Any = None

    @abstractmethod
    def embed_batch(self, rows: list[dict[str, Any]]) -> BatchResult:
        """Vectors for ``rows``, in order."""

    def load(self) -> None:  # noqa: B027 - an optional hook, not an abstract method
        """Load the weights now instead of on the first batch."""

    @property
    def batch_scores(self) -> tuple[str, ...]:
        """The score columns this run's batches carry: :attr:`score_columns` when
        :attr:`with_scores`, none otherwise."""
        return self.score_columns if self.with_scores else ()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @cached_property
    def precision(self) -> str:
        """The compute precision, ``fp32`` or ``bf16`` (``auto`` resolved for the device)."""
        from curate.models import resolve_device, resolve_precision

        return resolve_precision(self.requested_precision, resolve_device(self.device))

    @cached_property
    def fingerprint(self) -> str:
        """Identity of every vector this embedder makes (weights, pooling, text, length,
        precision)."""
        return embedder_fingerprint(
            self.name,
            self.model_path,
            self.pooling,
            self.text_format,
            self.max_length,
            self.precision,
        )

    @cached_property
    def dim(self) -> int:
        return int(self.embed_batch([PROBE_ROW]).vectors.shape[1])

    def embed(
        self, rows: list[dict[str, Any]], batch_size: int | None = None
    ) -> Iterator[tuple[list[int], BatchResult]]:
        """Yield ``(row indices, BatchResult)`` over length-sorted batches of ``rows``."""
        for indices in self.plan_batches(rows, batch_size):
            yield indices, self.embed_batch([rows[i] for i in indices])

    def plan_batches(
        self, rows: list[dict[str, Any]], batch_size: int | None = None
    ) -> list[list[int]]:
        """Length-sorted batches of at most ``batch_size`` rows and :attr:`batch_tokens`
        estimated padded tokens (from ``n_chars``, no tokenizer needed)."""
        return length_sorted_batches(
            rows, batch_size or self.default_batch_size, self.batch_tokens, self.max_length
        )

    def torch_device(self) -> str:
        """The device to load on; under a multi-GPU launch, this rank's own GPU."""
        from curate.models import resolve_device

        device = resolve_device(self.device)
        if device == "cuda" and "LOCAL_RANK" in os.environ:
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        return device


def row_length(row: dict[str, Any]) -> int:
    """Characters of content: the pool's ``n_chars``, or counted when a row lacks it."""
    if row.get("n_chars") is not None:
        return int(row["n_chars"])
    if row.get("messages"):
        return sum(len(m["content"]) for m in row["messages"])
    return sum(len(row.get(k) or "") for k in ("instruction", "input", "output"))


def estimated_tokens(row: dict[str, Any], max_length: int | None = None) -> int:
    """A row's tokens as planned before tokenizing: content characters over
    :data:`CHARS_PER_TOKEN` plus the template's, capped at ``max_length``."""
    tokens = math.ceil(row_length(row) / CHARS_PER_TOKEN) + TEMPLATE_TOKENS
    return min(tokens, max_length) if max_length else tokens


def length_sorted_batches(
    rows: list[dict[str, Any]],
    batch_size: int,
    max_tokens: int | None = None,
    max_length: int | None = None,
) -> list[list[int]]:
    """Row indices grouped into batches of similar length, so padding stays small.

    A batch holds at most ``batch_size`` rows and, with ``max_tokens``, at most that many
    padded tokens (rows × its longest row's :func:`estimated_tokens`; a row longer than the
    budget goes alone): short rows share big batches, long ones small ones, so every
    forward pass does about the same work. Sorted by (length, index), so the batches are
    deterministic: every rank of a data-parallel run cuts the same ones.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(rows)), key=lambda i: (row_length(rows[i]), i))
    if not max_tokens:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # ascending length: the row being added is the batch's longest
        width = estimated_tokens(rows[i], max_length)
        if current and (len(current) >= batch_size or (len(current) + 1) * width > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
