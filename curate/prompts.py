"""How an example becomes tokens: one function shared by training, embedding and evaluation.

DiverseEvol embeds each example with the model being trained, over the same text the
model is trained on, so train/embed/eval must render identically. Single-turn rows use
the Stanford Alpaca prompt (the reference's exact text); ``messages`` rows use the
tokenizer's chat template. The text is split into segments flagged prompt or response;
each segment is tokenized on its own and the ids concatenated, so the response mask is
exact (labels are -100 on every prompt token) and independent of BPE merges across the
boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
# Identifies the rendering in embedder fingerprints; bump when anything here changes.
TEMPLATE_VERSION = "alpaca-v1+chat-template-v1"


def alpaca_prompt(instruction: str, input: str = "") -> str:
    if input:
        return ALPACA_PROMPT_INPUT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


@dataclass(frozen=True)
class Segment:
    text: str
    is_response: bool


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens, the token id on response tokens

    @property
    def response_mask(self) -> list[bool]:
        return [label != IGNORE_INDEX for label in self.labels]


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _fallback_chat_segments(messages: list[dict[str, str]]) -> list[Segment]:
    """Multi-turn rendering for tokenizers without a chat template: Alpaca-style turns."""
    segments: list[Segment] = []
    system = [m["content"] for m in messages if m["role"] == "system"]
    header = (system[0] + "\n\n") if system else ""
    for m in messages:
        if m["role"] == "user":
            segments.append(
                Segment(f"{header}### Instruction:\n{m['content']}\n\n### Response:", False)
            )
            header = ""
        elif m["role"] == "assistant":
            segments.append(Segment(m["content"], True))
            segments.append(Segment("\n\n", False))
    if segments and segments[-1].text == "\n\n":
        segments.pop()
    return segments


def _chat_segments(messages: list[dict[str, str]], tokenizer: Any) -> list[Segment]:
    """Split the chat-template rendering at assistant turns by diffing cumulative renders."""
    render = tokenizer.apply_chat_template
    segments: list[Segment] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(messages[:k], tokenize=False, add_generation_prompt=True)
        upto = render(messages[: k + 1], tokenize=False)
        if not (prefix.startswith(done) and upto.startswith(prefix)):
            return _fallback_chat_segments(messages)  # template is not prefix-stable
        segments.append(Segment(prefix[len(done) :], False))
        segments.append(Segment(upto[len(prefix) :], True))
        done = upto
    return [s for s in segments if s.text]


def segments(row: dict[str, Any], tokenizer: Any) -> list[Segment]:
    """The example's text as prompt/response segments (no EOS; :func:`tokenize` adds it)."""
    messages = row.get("messages")
    if messages:
        if _has_chat_template(tokenizer):
            return _chat_segments(messages, tokenizer)
        return _fallback_chat_segments(messages)
    return [
        Segment(alpaca_prompt(row["instruction"], row.get("input") or ""), False),
        Segment(row["output"], True),
    ]


def prompt_text(row: dict[str, Any], tokenizer: Any) -> str:
    """The text a model continues to answer ``row`` (for generation)."""
    messages = row.get("messages")
    if messages:
        context = messages[:-1] if messages[-1]["role"] == "assistant" else messages
        if _has_chat_template(tokenizer):
            return tokenizer.apply_chat_template(
                context, tokenize=False, add_generation_prompt=True
            )
        return "".join(
            s.text
            for s in _fallback_chat_segments(context + [{"role": "assistant", "content": ""}])
        )
    return alpaca_prompt(row["instruction"], row.get("input") or "")


def tokenize(row: dict[str, Any], tokenizer: Any, max_length: int) -> Tokenized:
    """Token ids and response-only labels for one example, EOS appended, truncated."""
    ids: list[int] = []
    labels: list[int] = []
    first = True
    for seg in segments(row, tokenizer):
        seg_ids = tokenizer(seg.text, add_special_tokens=first)["input_ids"]
        first = False
        ids += seg_ids
        labels += seg_ids if seg.is_response else [IGNORE_INDEX] * len(seg_ids)
    # A chat template closes each turn itself; the Alpaca rendering ends with EOS, as in training.
    chat = bool(row.get("messages")) and _has_chat_template(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is not None and not chat and (not ids or ids[-1] != eos):
        ids.append(eos)
        labels.append(eos)
    return Tokenized(ids[:max_length], labels[:max_length])


def pad_batch(
    rows: Sequence[Tokenized | Mapping[str, Sequence[int]] | Sequence[int]],
    pad_id: int,
    multiple_of: int | None = None,
    left: bool = False,
) -> dict[str, Any]:
    """The one padding collator: rows of token ids → ``input_ids``, ``attention_mask`` and
    ``labels`` tensors, padded to the longest row (rounded up to ``multiple_of``).

    A row is a :class:`Tokenized`, a mapping with ``input_ids`` (and ``labels``), or a bare
    list of ids (labels then all ignored). Padding gets ``pad_id``, mask 0 and label
    ``IGNORE_INDEX``; it goes on the right (training, scoring, embedding: causal attention
    never looks ahead at it) or with ``left`` on the left (generation, so new tokens of every
    row start in the same column).
    """
    import torch

    pairs = [_ids_and_labels(row) for row in rows]
    width = max((len(ids) for ids, _ in pairs), default=0)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(pairs):
        n = len(ids)
        span = slice(width - n, width) if left else slice(0, n)
        input_ids[i, span] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, span] = 1
        if row_labels is not None:
            labels[i, span] = torch.tensor(row_labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _ids_and_labels(row: Any) -> tuple[Sequence[int], Sequence[int] | None]:
    if isinstance(row, Tokenized):
        return row.input_ids, row.labels
    if isinstance(row, Mapping):
        return row["input_ids"], row.get("labels")
    return row, None


@dataclass
class PaddingCount:
    """Real tokens and padded slots over the batches a pass ran (padding = wasted work)."""

    tokens: int = 0
    slots: int = 0

    def add(self, attention_mask: Any) -> None:
        self.tokens += int(attention_mask.sum())
        self.slots += int(attention_mask.numel())

    @property
    def fraction(self) -> float | None:
        return round(1 - self.tokens / self.slots, 4) if self.slots else None
