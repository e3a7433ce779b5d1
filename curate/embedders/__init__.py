"""Embedders: pool rows → vectors. See :mod:`curate.embedders.base` for the interface."""

from curate.embedders.base import BatchResult, Embedder, length_sorted_batches
from curate.embedders.registry import DEFAULT_SPEC, EMBEDDERS, default_name, load_embedder

__all__ = [
    "DEFAULT_SPEC",
    "EMBEDDERS",
    "BatchResult",
    "Embedder",
    "default_name",
    "length_sorted_batches",
    "load_embedder",
]
