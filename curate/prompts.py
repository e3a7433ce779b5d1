"""How an example becomes tokens: one function shared by training, embedding and evaluation.

DiverseEvol embeds each example with the model being trained, over the same text the
model is trained on, so train/embed/eval must render identically. Single-turn rows use
the Stanford Alpaca prompt (the reference's exact text); ``messages`` rows are brought to
the canonical chat shape (:mod:`curate.conversations`) and use the tokenizer's chat
template, or Alpaca-style turns when it has none or refuses the conversation (some
templates raise on a system turn). A row longer than ``max_length`` tokens keeps its first
``max_length`` tokens: the system prompt and the earliest turns; a training row left with
no response token is dropped and counted. The text is split into segments flagged prompt or response;
each segment is tokenized on its own and the ids concatenated, so the response mask is
exact (labels are -100 on every prompt token) and independent of BPE merges across the
boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from curate.conversations import render_turns

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
TEMPLATE_VERSION = "alpaca-v1+chat-template-v2"


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


def _render(tokenizer: Any, messages: list[dict[str, str]], **kwargs: Any) -> str | None:
    """The chat template's text, or None when the template refuses the conversation (some
    raise on a system turn; the caller then uses the Alpaca-style fallback)."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except (TemplateError, ValueError, TypeError, KeyError, IndexError):
        return None


def _chat_segments(messages: list[dict[str, str]], tokenizer: Any) -> list[Segment] | None:
    """Split the chat-template rendering at assistant turns by diffing cumulative renders;
    None when the template refuses the conversation or is not prefix-stable. ``messages``
    are canonical (:mod:`curate.conversations`): a user turn precedes every assistant
    turn, so no prefix is empty."""
    segments: list[Segment] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:k], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: k + 1])
        if (
            prefix is None
            or upto is None
            or not (prefix.startswith(done) and upto.startswith(prefix))
        ):
            return None
        segments.append(Segment(prefix[len(done) :], False))
        segments.append(Segment(upto[len(prefix) :], True))
        done = upto
    return [s for s in segments if s.text]


def _alpaca_segments(row: dict[str, Any]) -> list[Segment]:
    return [
        Segment(alpaca_prompt(row["instruction"], row.get("input") or ""), False),
        Segment(row["output"], True),
    ]


def segments(row: dict[str, Any], tokenizer: Any) -> tuple[list[Segment], bool]:
    """The example's text as prompt/response segments (no EOS), and whether the
    tokenizer's chat template rendered them (it closes each turn itself, so
    :func:`tokenize` adds no EOS after it)."""
    messages = render_turns(row["messages"]) if row.get("messages") else None
    if not messages:
        return _alpaca_segments(row), False
    if _has_chat_template(tokenizer):
        templated = _chat_segments(messages, tokenizer)
        if templated is not None:
            return templated, True
    return _fallback_chat_segments(messages), False


def prompt_text(row: dict[str, Any], tokenizer: Any) -> str:
    """The text a model continues to answer ``row`` (for generation)."""
    messages = render_turns(row["messages"]) if row.get("messages") else None
    if not messages:
        return alpaca_prompt(row["instruction"], row.get("input") or "")
    context = messages[:-1] if messages[-1]["role"] == "assistant" else messages
    if _has_chat_template(tokenizer):
        text = _render(tokenizer, context, add_generation_prompt=True)
        if text is not None:
            return text
    return "".join(
        s.text for s in _fallback_chat_segments(context + [{"role": "assistant", "content": ""}])
    )


def tokenize(row: dict[str, Any], tokenizer: Any, max_length: int) -> Tokenized:
    """Token ids and response-only labels for one example, EOS appended, truncated."""
    ids: list[int] = []
    labels: list[int] = []
    first = True
    parts, templated = segments(row, tokenizer)
    for seg in parts:
        if len(ids) >= max_length:
            break  # the rest is cut: rendering it would only cost time
        seg_ids = encode_head(tokenizer, seg.text, first, max_length - len(ids))
        first = False
        ids += seg_ids
        labels += seg_ids if seg.is_response else [IGNORE_INDEX] * len(seg_ids)
    # A chat template closes each turn itself; the Alpaca rendering ends with EOS, as in training.
    eos = tokenizer.eos_token_id
    if eos is not None and not templated and (not ids or ids[-1] != eos):
        ids.append(eos)
        labels.append(eos)
    return Tokenized(ids[:max_length], labels[:max_length])


def encode_head(tokenizer: Any, text: str, add_special_tokens: bool, limit: int) -> list[int]:
    """The first ``limit`` token ids of ``text``: exactly ``tokenizer(text)["input_ids"][:limit]``,
    without tokenizing all of a long text (a 10 MB row took 25 s; a 7,000-character chat
    at 128 tokens tokenized 14x more than it kept).

    Exactness: a fast tokenizer with no normalizer first splits the text at its added
    tokens (``<|im_start|>`` ...), then splits each piece into pre-tokens left to right (a
    regex whose lookahead is one character) and encodes each pre-token on its own. In a
    prefix of the text, every added token that ends before the prefix's last
    ``longest added token`` characters is one of the whole text's, and in the last piece
    every pre-token but the last two is one of the whole text's, encoded the same. A prefix
    is encoded, longer each time, until ``limit`` tokens lie before that point. Other
    tokenizers (a normalizer, no pre-tokenizer) encode the whole text.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    cut = 8 * limit + 256
    if backend is None or backend.normalizer is not None or backend.pre_tokenizer is None:
        cut = len(text)
    added = list(tokenizer.get_added_vocab()) if cut < len(text) else []
    longest = max(map(len, added), default=0)
    while backend is not None and cut < len(text):  # (cut < len(text) only with a backend)
        head = text[:cut]
        settled = cut - longest  # an added token starting later may continue past the cut
        ends = (head.rfind(t, 0, settled) for t in added)
        piece = max((at + len(t) for at, t in zip(ends, added, strict=True) if at >= 0), default=0)
        spans = backend.pre_tokenizer.pre_tokenize_str(head[piece:])
        if len(spans) > 2:
            safe = min(piece + spans[-2][1][0], settled)
            encoding = backend.encode(head, add_special_tokens=False)
            exact = next(
                (i for i, (start, _) in enumerate(encoding.offsets) if start >= safe),
                len(encoding.ids),
            )
            prefix = _special_prefix(tokenizer) if add_special_tokens else []
            if len(prefix) + exact >= limit:
                return (prefix + encoding.ids[:exact])[:limit]
        cut *= 4
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"][:limit]


def _special_prefix(tokenizer: Any) -> list[int]:
    """The special tokens a tokenizer puts before a text (a BOS, or none)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(wrapped) - len(plain) + 1):
        if wrapped[i : i + len(plain)] == plain:
            return wrapped[:i]
    return []


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
