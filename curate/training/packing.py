"""Padding-free batches: the rows of a micro-batch packed into one row.

transformers (``masking_utils.find_packed_sequence_indices``, read in 5.25) recognises
packed rows by their ``position_ids`` restarting at 0 when no ``attention_mask`` is passed,
and builds a block-diagonal causal mask from them for the ``sdpa`` and ``eager`` attention kernels, so
a token attends only to earlier tokens of its own example. This is the layout of
``transformers.DataCollatorWithFlattening``; the collator here does the same on curate's
features and counts the tokens it batched. Whether a given model honours it (a remote-code
model may build its own mask) is checked once per run by :func:`honours_packing`, on the
real model, before any batch is packed.

On a CPU the padded slots of a length-grouped batch are work thrown away (29% of the
slots of the benchmark's batches); packing removes them and the attention mask
of a packed row costs little at these lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from curate.prompts import IGNORE_INDEX, PaddingCount


@dataclass
class PackingCollator:
    """Trainer's collator for packed rows: ``input_ids``, ``labels`` and ``position_ids`` of
    shape ``(1, total tokens)``. The first label of each row is ignored: in the packed row it
    would be predicted from the previous row's last token (a padded batch never predicts a
    row's first token either)."""

    padding: PaddingCount = field(default_factory=PaddingCount)

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for feature in features:
            ids.extend(feature["input_ids"])
            labels.append(IGNORE_INDEX)
            labels.extend(feature["labels"][1:])
            positions.extend(range(len(feature["input_ids"])))
        self.padding.tokens += len(ids)
        self.padding.slots += len(ids)
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
        }


def honours_packing(model: Any) -> bool:
    """Whether ``model`` keeps packed rows apart: the logits of two short rows packed into one
    equal their logits computed one row at a time (to a thousandth of their scale; attention
    across rows changes them by far more). A forward pass over 12 tokens, in eval mode (no
    dropout, no random draws), with the model as it is."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().weight.shape[0]
    rows = [torch.arange(1, 8, device=device) % vocab, torch.arange(20, 25, device=device) % vocab]
    packed = PackingCollator()([{"input_ids": r.tolist(), "labels": r.tolist()} for r in rows])
    try:
        with torch.no_grad():
            alone = torch.cat([model(input_ids=r[None], use_cache=False).logits[0] for r in rows])
            together = model(
                input_ids=packed["input_ids"].to(device),
                position_ids=packed["position_ids"].to(device),
                use_cache=False,  # as in training: with a KV cache the packing is not detected
            ).logits[0]
    finally:
        model.train(was_training)
    scale = alone.abs().max().clamp_min(1e-6)
    return together.shape == alone.shape and bool((together - alone).abs().max() <= 1e-3 * scale)
