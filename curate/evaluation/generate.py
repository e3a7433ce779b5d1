"""Batched answers from a causal LM, prompted exactly as in training.

Prompts come from :func:`curate.prompts.prompt_text` and are left-padded so every row's
new tokens start at the same column. Rows are batched by prompt length (less padding)
and returned in input order. Greedy unless ``temperature`` > 0.
"""

from __future__ import annotations

from typing import Any

from curate.progress import NO_PROGRESS, Progress
from curate.prompts import pad_batch, prompt_text


def generate_answers(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    batch_size: int = 8,
    seed: int = 0,
    progress: Progress = NO_PROGRESS,
) -> list[str]:
    import torch
    from transformers import GenerationConfig

    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    sampling = temperature > 0
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=None,
        top_k=None,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    device = next(model.parameters()).device
    prompts = [tokenizer(prompt_text(row, tokenizer))["input_ids"] for row in rows]
    order = sorted(range(len(rows)), key=lambda i: -len(prompts[i]))
    answers: list[str] = [""] * len(rows)
    if sampling:
        torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        padded = pad_batch([prompts[i] for i in batch], pad_id, left=True)
        ids, mask = padded["input_ids"], padded["attention_mask"]
        width = ids.shape[1]
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
            )
        for row, i in enumerate(batch):
            answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        progress.advance(len(batch))
    return answers
