"""The text hygiene compares: words of a row (or of its user turns), shingles, n-grams.

Words are lower-cased ``\\w+`` runs (Unicode), so case, punctuation and whitespace never
tell two rows apart, as in GPT-3's and datatrove's normalisation.
"""

from __future__ import annotations

import re
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)
TEXT_FIELDS = ("all", "prompt")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def row_text(row: dict[str, Any], fields: str = "all") -> str:
    """The text of a pool row: every turn (``all``) or the user's turns only (``prompt``)."""
    messages = row.get("messages")
    if messages:
        turns = [m["content"] for m in messages if fields == "all" or m["role"] == "user"]
        return "\n".join(turns)
    parts = [row.get("instruction") or "", row.get("input") or ""]
    if fields == "all":
        parts.append(row.get("output") or "")
    return "\n".join(p for p in parts if p)


def shingles(tokens: list[str], k: int) -> list[str]:
    """Distinct word k-grams; a text shorter than k words is one shingle of all its words
    (an empty text has none)."""
    if len(tokens) <= k:
        return [" ".join(tokens)] if tokens else []
    return list({" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)})
