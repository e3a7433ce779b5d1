"""Held-out NLL: how likely a model finds the reference answer, given the question.

Each question is rendered with :func:`curate.prompts.tokenize`, the exact template and
label mask used in training, so the loss counts only answer tokens (and the closing EOS).
Per-question means are kept so two models can be compared question by question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from curate.progress import NO_PROGRESS, Progress
from curate.prompts import IGNORE_INDEX, PaddingCount, Tokenized, pad_batch, tokenize

UNLIMITED = 1 << 30


@dataclass(frozen=True)
class AnswerNLL:
    nll: float  # mean negative log-likelihood per answer token (nats)
    tokens: int  # answer tokens scored
    truncated: bool  # the answer was cut at max_length
    # tokens == 0 (nll NaN): the prompt alone fills max_length; the question is skipped


def encode(
    rows: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> list[tuple[Tokenized, bool]]:
    """Tokenized rows (cut at ``max_length``) and whether each was cut."""
    out = []
    for row in rows:
        full = tokenize(row, tokenizer, UNLIMITED)
        out.append(
            (
                Tokenized(full.input_ids[:max_length], full.labels[:max_length]),
                len(full.input_ids) > max_length,
            )
        )
    return out


def answer_nll(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_length: int = 1024,
    batch_size: int = 4,
    progress: Progress = NO_PROGRESS,
    names: list[str] | None = None,
    padding: PaddingCount | None = None,
) -> list[AnswerNLL]:
    """Mean answer-token NLL of each row's ``output`` given its prompt, batched by length
    (``padding``, when given, counts the padded slots)."""
    import torch

    encoded = encode(rows, tokenizer, max_length)
    results: list[AnswerNLL | None] = [None] * len(rows)
    # A prompt that fills max_length leaves no answer token: skipped (NaN, 0 tokens), not fatal.
    for i, (enc, _) in enumerate(encoded):
        if not any(label != IGNORE_INDEX for label in enc.labels[1:]):
            results[i] = AnswerNLL(math.nan, 0, True)
    skipped = sum(r is not None for r in results)
    if skipped:
        progress.advance(skipped)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    device = next(model.parameters()).device
    scored = [i for i in range(len(rows)) if results[i] is None]
    order = sorted(scored, key=lambda i: -len(encoded[i][0].input_ids))  # longest first
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        padded = pad_batch([encoded[i][0] for i in batch], pad_id)
        ids, labels, mask = padded["input_ids"], padded["labels"], padded["attention_mask"]
        if padding is not None:
            padding.add(mask)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            targets = labels[:, 1:].to(device)
            scored = targets != IGNORE_INDEX
            token_nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2),
                targets,
                ignore_index=IGNORE_INDEX,
                reduction="none",
            )
            sums = (token_nll * scored).sum(dim=1).double().cpu()
            counts = scored.sum(dim=1).cpu()
        for row, i in enumerate(batch):
            count = int(counts[row])
            results[i] = AnswerNLL(float(sums[row]) / count, count, encoded[i][1])
        progress.advance(len(batch))
    return [r for r in results if r is not None]
