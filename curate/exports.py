"""Subsets written where fine-tuning tools read them: alpaca / sharegpt JSON (LLaMA-Factory,
axolotl), messages JSONL (TRL), Parquet, or a ``datasets.load_from_disk`` folder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.conversations import render_turns
from curate.errors import SubsetError
from curate.files import atomic_dir, atomic_file
from curate.subsets import Subset, examples_blob, load_subset
from curate.targets import check_replaceable, holds_only

EXPORT_FORMATS = ("alpaca", "sharegpt", "messages", "parquet", "hf")
DEFAULT_EXPORTS_DIR = Path("data/exports")
_EXPORT_SUFFIX = {
    "alpaca": ".json",
    "sharegpt": ".json",
    "messages": ".jsonl",
    "parquet": ".parquet",
    "hf": "",
}
_SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


# what `datasets.Dataset.save_to_disk` writes
_HF_FILES, _HF_REQUIRED = ("data-*.arrow", "dataset_info.json", "state.json"), ("state.json",)


def default_export_path(subset: Subset, fmt: str) -> Path:
    """``data/exports/<folder>-<fmt>.<ext>``, named after the subset *folder* the user
    named, never after the manifest's ``name``: a received manifest decides no path."""
    folder = Path(os.path.abspath(subset.path)).name
    return DEFAULT_EXPORTS_DIR / f"{folder}-{fmt}{_EXPORT_SUFFIX[fmt]}"


def _is_export(fmt: str) -> Callable[[Path], bool]:
    if fmt == "hf":
        return lambda path: holds_only(path, _HF_FILES, _HF_REQUIRED)
    return lambda path: path.is_file() and path.suffix == _EXPORT_SUFFIX[fmt]


def chat_turns(example: dict[str, Any]) -> list[dict[str, str]]:
    """The example as chat messages in the canonical shape (:mod:`curate.conversations`;
    single-turn rows: instruction + input as the user turn)."""
    messages = render_turns(example["messages"]) if example.get("messages") else None
    if messages:
        return messages
    user = example["instruction"]
    if example.get("input"):
        user = f"{user}\n\n{example['input']}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": example["output"]}]


def to_alpaca(example: dict[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory / axolotl Alpaca record; earlier turns go to ``history``, a system
    prompt to ``system``."""
    record: dict[str, Any] = {
        "id": example["id"],
        "instruction": example["instruction"],
        "input": example["input"],
        "output": example["output"],
    }
    if not example.get("messages"):
        return record
    turns = chat_turns(example)  # canonical: [system] (user assistant)+, so pairs line up
    if turns[0]["role"] == "system":
        record["system"] = turns[0]["content"]
        turns = turns[1:]
    record["history"] = [
        [turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 2, 2)
    ]
    return record


def to_sharegpt(example: dict[str, Any]) -> dict[str, Any]:
    turns = [
        {"from": _SHAREGPT_FROM[t["role"]], "value": t["content"]} for t in chat_turns(example)
    ]
    return {"id": example["id"], "conversations": turns}


def to_messages(example: dict[str, Any]) -> dict[str, Any]:
    return {"id": example["id"], "messages": chat_turns(example)}


def _table(examples: list[dict[str, Any]]):
    """Canonical columns with ``messages`` always filled (TRL reads it as is)."""
    import pyarrow as pa

    from curate.store import MESSAGE_TYPE

    columns = ("id", "instruction", "input", "output", "category", "source", "hash")
    data = {c: pa.array([e.get(c) for e in examples], pa.string()) for c in columns}
    data["messages"] = pa.array([chat_turns(e) for e in examples], MESSAGE_TYPE)
    return pa.table(data)


def export_subset(
    path: str | Path, fmt: str, out: str | Path | None = None, force: bool = False
) -> Path:
    """Write the subset where fine-tuning tools read it; returns the file or folder written.

    alpaca / sharegpt: a JSON array (LLaMA-Factory, axolotl); messages: JSON Lines of
    ``{"messages": [...]}`` (TRL's conversational format); parquet / hf: canonical columns
    plus ``messages`` (``datasets.load_dataset("parquet", ...)`` / ``load_from_disk``).
    An existing target is replaced only with ``force``, and only when it is an export of
    this format (see :func:`curate.targets.check_replaceable`).
    """
    if fmt not in EXPORT_FORMATS:
        raise SubsetError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")
    subset = load_subset(path, verify=True)
    out = Path(out) if out is not None else default_export_path(subset, fmt)
    check_replaceable(out, f"{fmt} export", _is_export(fmt), force)
    if fmt == "hf":
        import datasets

        with atomic_dir(out) as tmp:
            datasets.Dataset(_table(subset.examples)).save_to_disk(str(tmp))
        return out
    with atomic_file(out) as tmp:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(_table(subset.examples), tmp)
        elif fmt == "messages":
            tmp.write_bytes(examples_blob([to_messages(e) for e in subset.examples]))
        else:
            convert = to_alpaca if fmt == "alpaca" else to_sharegpt
            records = [convert(e) for e in subset.examples]
            tmp.write_text(
                json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
            )
    return out
