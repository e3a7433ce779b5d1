"""Fingerprints: the identity a cached vector is checked against before it is reused.

A vector stays valid only while everything that shaped it is unchanged: the model's
weights and config (content hashes of the model folder, via
:func:`curate.models.weights_fingerprint`), the pooling, how a row is rendered to text or
tokens (which includes :data:`curate.prompts.TEMPLATE_VERSION` for causal LMs), the
maximum length, and this package's embedding code. Computing it reads files only; no
model is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from curate.files import sha256_file

# Bump when the embedding code changes a vector for the same model and row.
EMBED_CODE_VERSION = "1"
IMPORT_PREFIX = "import-"


def embedder_fingerprint(
    kind: str,
    model_path: str,
    pooling: str,
    text_format: str,
    max_length: int,
    precision: str = "fp32",
) -> str:
    """``precision`` is the resolved compute precision (``fp32`` or ``bf16``): vectors from
    the two differ in the last digits, so they never share a table. Stored vectors are
    float32 either way; an fp32 fingerprint is the one this package always made."""
    from curate.models import weights_fingerprint

    identity = {
        "code": EMBED_CODE_VERSION,
        "kind": kind,
        "weights": weights_fingerprint(model_path),
        "pooling": pooling,
        "text": text_format,
        "max_length": max_length,
        "dtype": "float32",
    }
    if precision != "fp32":
        identity["compute"] = precision
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def file_fingerprint(path: str | Path) -> str:
    """Fingerprint of vectors imported from a file: the file's content hash."""
    return IMPORT_PREFIX + sha256_file(path)[:32]
