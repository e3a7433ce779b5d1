"""The one rule for the shapes real chats come in.

Real conversation data (ShareGPT exports, chat logs split into chunks) holds shapes that
chat templates and response masks cannot take as they are. Every conversation is brought
to one canonical shape, at ingest (so the pool stores it) and again by every renderer
(training, ``lm:`` embedding, NLL, generation; so rows ingested before this rule render
too):

    [system]  user  assistant  (user  assistant)*   [user, only for a question to answer]

How each shape gets there, in this order:

1. **Empty turns** (no text after normalisation) are dropped.
2. **System turns** before the first user or assistant turn become one leading system
   message (several are joined by a blank line). A system turn later in the conversation
   is rejected: moving an instruction that arrived mid-chat would change what the chat says.
3. **A leading assistant turn** (ShareGPT splits long chats into chunks that start with
   the assistant) is dropped: it answers a question the row does not hold.
4. **Consecutive turns of one role** are joined into one turn, by a blank line.
5. **A trailing user turn** has no answer to learn: dropped from pool rows, kept for eval
   questions (it is the question).

What is left must hold a user turn, and for pool rows an assistant answer; otherwise the
row is rejected with that reason. The counts of what was dropped or joined are reported by
``curate ingest``. A conversation longer than ``--max-length`` tokens keeps its beginning
(the system prompt and the earliest turns); see :func:`curate.prompts.tokenize`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

ROLES = ("system", "user", "assistant")
# Keys of the counts :func:`canonical_turns` reports, in the order ``curate ingest`` shows them.
RESHAPES = ("empty_turn", "leading_assistant", "joined_turn", "trailing_user")


def canonical_turns(
    turns: Sequence[dict[str, str]],
    field: str = "messages",
    need_output: bool = True,
    counts: Counter | None = None,
) -> list[dict[str, str]]:
    """``turns`` (role/content dicts, roles already mapped to :data:`ROLES`, content
    normalised) in the canonical shape. Raises ValueError naming ``field[i]`` when a turn
    cannot be placed, or the conversation has no question (or no answer, with
    ``need_output``). What was dropped or joined is added to ``counts``."""
    counts = counts if counts is not None else Counter()
    system: list[str] = []
    out: list[dict[str, str]] = []
    for i, turn in enumerate(turns):
        role, content = turn["role"], turn["content"]
        if not content:
            counts["empty_turn"] += 1
        elif role == "system":
            if out:
                raise ValueError(f"'{field}[{i}]' is a system turn after the conversation started")
            system.append(content)
        elif role == "assistant" and not out:
            counts["leading_assistant"] += 1
        elif out and out[-1]["role"] == role:
            counts["joined_turn"] += 1
            out[-1] = {"role": role, "content": f"{out[-1]['content']}\n\n{content}"}
        else:
            out.append({"role": role, "content": content})
    if need_output and out and out[-1]["role"] == "user":
        counts["trailing_user"] += 1
        out.pop()
    if not out:
        what = "no user turn answered by an assistant" if need_output else "no user turn"
        raise ValueError(f"'{field}' has {what} (missing instruction)")
    head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    return head + out


def render_turns(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]] | None:
    """The canonical shape of stored ``messages`` for a renderer, or None when they hold
    no user turn (the renderer then uses the row's instruction/output columns). Never
    raises: rows stored under the rule come back unchanged, older rows are reshaped the
    same way, a late system turn kept as a user turn rather than failing a training run."""
    turns: list[dict[str, str]] = []
    for m in messages:
        role = m["role"] if m["role"] in ROLES else "user"
        if role == "system" and any(t["role"] != "system" for t in turns):
            role = "user"
        if m["content"]:
            turns.append({"role": role, "content": m["content"]})
    try:
        return canonical_turns(turns, need_output=False)
    except ValueError:
        return None
