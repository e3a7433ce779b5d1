"""Padding-free batches: the rows of a micro-batch packed into one row.

transformers (``masking_utils.find_packed_sequence_indices``, read in 5.25) recognises
packed rows by their ``position_ids`` restarting at 0 when no ``attention_mask`` is passed.
This is the layout of ``transformers.DataCollatorWithFlattening``; the collator here does
the same on curate's features and counts the tokens it batched.

Attention within each row: for ``sdpa`` transformers builds a (tokens × tokens)
block-diagonal causal mask, and SDPA's CPU kernel computes every block of it, so the
attention of 4 packed rows costs 4² times one row's, not 4 (31% of a SmolLM2-135M bf16
step's CPU time on 4 rows of ~200 tokens). :data:`ROW_ATTENTION`, registered in
transformers' ``AttentionInterface``, runs SDPA's causal kernel on each row's slice
instead (17% of the step; the step 1.07-1.13x the block mask's in
``benchmarks/train_step.py``, see ``benchmarks/README.md``).

Whether a given model keeps packed rows apart (a remote-code model may build its own mask
or attend by its own code) is checked once per run by :func:`honours_packing`, on the real
model, before any batch is packed: first under :data:`ROW_ATTENTION`, then under the
model's own attention and mask; a model that passes neither trains on padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

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


ROW_ATTENTION = "curate_rows"  # the name of _row_attention in transformers' registry


class _NotPacked(ValueError):
    """A batch that :data:`ROW_ATTENTION` cannot split into rows."""


def _row_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each packed row of a (1, heads, tokens, head dim) batch: SDPA
    with ``is_causal`` on each row's slice, the rows found where ``position_ids`` restart
    at 0. Returns (1, tokens, heads, head dim), as transformers' attention functions do.
    On a GPU each layer reads the row starts back to the host (one sync per layer)."""
    if query.shape[0] != 1 or position_ids is None or attention_mask is not None:
        raise _NotPacked(f"{ROW_ATTENTION} attention takes one packed row with position_ids")
    starts = (position_ids.reshape(-1) == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        raise _NotPacked(f"{ROW_ATTENTION} attention: position_ids do not start a row at 0")
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: heads per key head
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    bounds = [*starts, query.shape[2]]
    rows = [
        F.scaled_dot_product_attention(
            query[:, :, a:b],
            key[:, :, a:b],
            value[:, :, a:b],
            dropout_p=dropout,
            is_causal=True,
            scale=scaling,
        )
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    return torch.cat(rows, dim=2).transpose(1, 2).contiguous(), None


def use_attention(model: Any, attention: str | None) -> bool:
    """Set ``model``'s attention implementation (registering :data:`ROW_ATTENTION` first);
    False where the model takes no other (``None`` leaves it and says True)."""
    if attention is None:
        return True
    if not hasattr(model, "set_attn_implementation"):
        return False
    if attention == ROW_ATTENTION:
        from transformers import AttentionInterface

        AttentionInterface.register(ROW_ATTENTION, _row_attention)
    try:
        model.set_attn_implementation(attention)
    except (ValueError, ImportError):  # the model's code declares no attention backends
        return False
    return True


def honours_packing(model: Any, attention: str | None = None) -> bool:
    """Whether ``model`` keeps packed rows apart (under ``attention``, if given; the model's
    implementation is left as it was): the logits of two short rows packed into one
    equal their logits computed one row at a time (to a thousandth of their scale; attention
    across rows changes them by far more). A forward pass over 12 tokens, in eval mode (no
    dropout, no random draws), with the model as it is."""
    previous = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if not use_attention(model, attention):
        return False
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
    except _NotPacked:  # the model's code does not hand row attention what it needs
        return False
    finally:
        model.train(was_training)
        if attention is not None:
            model.set_attn_implementation(previous)
    scale = alone.abs().max().clamp_min(1e-6)
    return together.shape == alone.shape and bool((together - alone).abs().max() <= 1e-3 * scale)
