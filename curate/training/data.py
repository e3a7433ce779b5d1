"""Training data: tokenized subset rows, the collators that batch them, and the sampler that
orders them per epoch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from curate.prompts import IGNORE_INDEX, PaddingCount, pad_batch, tokenize


@dataclass
class DatasetStats:
    examples: int = 0
    dropped_no_response: int = 0  # truncation removed every response token
    at_max_length: int = 0  # cut by truncation (or exactly max_length long)
    prompt_tokens: int = 0
    response_tokens: int = 0


class SFTDataset(Dataset):
    """Tokenized examples in subset order: ``input_ids`` and response-only ``labels``."""

    def __init__(self, features: list[dict[str, list[int]]]):
        self.features = features
        self.lengths = [len(f["input_ids"]) for f in features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


def build_dataset(
    examples: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> tuple[SFTDataset, DatasetStats]:
    """Render and tokenize subset rows; rows left with no response token are dropped (their
    loss would be 0/0)."""
    features, stats = [], DatasetStats()
    for row in examples:
        tok = tokenize(row, tokenizer, max_length)
        n_response = sum(label != IGNORE_INDEX for label in tok.labels)
        if n_response == 0:
            stats.dropped_no_response += 1
            continue
        stats.examples += 1
        stats.at_max_length += len(tok.input_ids) >= max_length
        stats.response_tokens += n_response
        stats.prompt_tokens += len(tok.input_ids) - n_response
        features.append({"input_ids": list(tok.input_ids), "labels": list(tok.labels)})
    return SFTDataset(features), stats


@dataclass
class PaddingCollator:
    """Trainer's collator over :func:`curate.prompts.pad_batch` (right padding, -100 labels);
    counts real tokens and padded slots."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding: PaddingCount = field(default_factory=PaddingCount)

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = pad_batch(features, self.pad_token_id, self.pad_to_multiple_of)
        self.padding.add(batch["attention_mask"])
        return batch


class EpochSeededLengthSampler(Sampler[int]):
    """Length-grouped shuffling (Trainer's ``group_by_length``) drawn from ``(seed, epoch)``.

    Trainer's own sampler draws from the global RNG, whose state at the start of an epoch
    is not what a resumed run restores; seeding per epoch makes resumption exact.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
