"""`lm:` embeddings compute the LM head and the uncertainty scores only when asked (a
strategy that reads them, or --scores): the vectors are the same either way, and the table
keeps a cache that is never wrong about which rows have scores."""

from __future__ import annotations

import numpy as np
import pytest

from curate.embed import embed
from curate.embedders import load_embedder
from curate.embedders.causal_lm import CausalLMEmbedder
from curate.errors import EmbeddingError
from tests.test_embed import CONVERSATION, add_rows, pool_rows, sample_records

LM_SCORES = CausalLMEmbedder.score_columns


@pytest.fixture
def pool12(store, tmp_path):
    add_rows(store, sample_records(11) + [CONVERSATION], tmp_path)
    return store


def head_calls(embedder) -> list[int]:
    calls: list[int] = []
    embedder.load()
    embedder._model.get_output_embeddings().register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_without_scores_the_lm_head_never_runs_and_vectors_are_unchanged(tiny_lm, pool12):
    rows = pool_rows(pool12)
    plain = load_embedder(f"lm:{tiny_lm}", device="cpu", precision="fp32")
    scored = load_embedder(f"lm:{tiny_lm}", device="cpu", scores=True, precision="fp32")
    plain_calls, scored_calls = head_calls(plain), head_calls(scored)
    without, with_ = plain.embed_batch(rows), scored.embed_batch(rows)
    assert without.scores == {} and not plain_calls
    assert set(with_.scores) == set(LM_SCORES) and scored_calls
    np.testing.assert_array_equal(without.vectors, with_.vectors)
    assert plain.fingerprint == scored.fingerprint  # same vectors, one cache
    with pytest.raises(EmbeddingError, match="st:minilm computes no score columns"):
        load_embedder("st:minilm", scores=True)
    with pytest.raises(EmbeddingError, match="st:minilm computes no score columns"):
        embed(pool12, load_embedder("st:minilm"), "plain", scores=True)  # a built embedder


def test_the_table_knows_which_rows_have_scores(tiny_lm, pool12, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # subsets go to ./data/subsets
    db = str(pool12.path)
    spec = f"lm:{tiny_lm}"
    first = embed(pool12, load_embedder(spec, precision="fp32"), "rd", batch_size=4)
    assert first.embedded == 12
    assert "least_confidence" not in pool12.embeddings_schema("rd").names
    refused = cli(
        "select", "--db", db, "--strategy", "entropy", "--embeddings", "rd", "--budget", "3"
    )
    assert refused.code != 0 and "(table emb_rd in" in refused.err
    assert "have no 'entropy' score" in refused.err

    # The pipeline's embed stage names the strategy: one that reads scores gets them, for
    # every row (a vectors-only cache cannot answer it).
    args = (
        "embed",
        "--db",
        db,
        "--embedder",
        spec,
        "--name",
        "rd",
        "--precision",
        "fp32",
        "--json",
    )
    rescored = cli(*args, "--for-strategy", "entropy")
    assert rescored.code == 0, rescored.err
    assert (rescored.json()["embedded"], rescored.json()["reused"]) == (12, 0)
    picked = cli(
        "select", "--db", db, "--strategy", "entropy", "--embeddings", "rd", "--budget", "3"
    )
    assert picked.code == 0, picked.err
    assert cli(*args, "--for-strategy", "entropy").json()["embedded"] == 0

    # Vectors-only runs reuse the scored table; rows added later get scores as well.
    again = load_embedder(spec, precision="fp32")
    assert embed(pool12, again, "rd").embedded == 0 and not again.loaded
    add_rows(pool12, sample_records(3, start=40), tmp_path, "more")
    grown = embed(pool12, load_embedder(spec, precision="fp32"), "rd")
    assert (grown.embedded, grown.reused) == (3, 12)
    vectors = pool12.load_vectors("rd", scores=LM_SCORES)
    assert all(np.isfinite(vectors.scores[c]).all() for c in LM_SCORES)
    assert vectors.matrix.shape[0] == 15
