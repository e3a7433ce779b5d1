"""IFD (Cherry LLM) scores from the `lm:` pass and the `ifd` / `ifd-diverse` strategies, each
against a plain reference: IFD computed directly from the tiny model's logits, the picks by
sorting and by the naive full-matrix K-center / dense facility location."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.embed import embed
from curate.embedders import load_embedder
from curate.embedders.causal_lm import IFD_COLUMNS, UNCERTAINTY_COLUMNS, CausalLMEmbedder
from curate.errors import SelectionError
from curate.prompts import IGNORE_INDEX, tokenize
from curate.store import embedding_schema
from curate.strategies import PoolArrays, make_strategy
from curate.strategies.ifd import ifd_diverse, ifd_top
from curate.subsets import load_subset
from tests.test_embed import CONVERSATION, add_rows, pool_rows, sample_records

LM_SCORES = CausalLMEmbedder.score_columns


# ------------------------------------------------------------------------- the scores
def reference_ifd(model, tokenizer, row, max_length):
    """Cherry's IFD by hand, one row at a time: the answer tokens' mean NLL after the prompt
    (full logits, cross entropy) over their mean NLL after only a BOS."""
    import torch

    tok = tokenize(row, tokenizer, max_length)
    answer_at = [t for t in range(1, len(tok.labels)) if tok.labels[t] != IGNORE_INDEX]
    if not answer_at:
        return 0.0, 0.0, 0.0
    with torch.no_grad():
        logits = model(torch.tensor([tok.input_ids])).logits[0]
        targets = torch.tensor([tok.input_ids[t] for t in answer_at])
        conditioned = torch.nn.functional.cross_entropy(
            logits[[t - 1 for t in answer_at]].float(), targets
        )
        start = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        alone_ids = [start] + targets.tolist()
        alone_logits = model(torch.tensor([alone_ids])).logits[0, :-1]
        alone = torch.nn.functional.cross_entropy(alone_logits.float(), targets)
    return float(conditioned), float(alone), float(conditioned / alone)


def test_ifd_scores_equal_a_direct_computation(tiny_lm, store, tmp_path):
    # a long prompt that 40 tokens cut before its answer: nothing to compare, IFD 0
    long_prompt = {"instruction": "word " * 200, "output": "An answer."}
    add_rows(store, sample_records(6) + [CONVERSATION, long_prompt], tmp_path)
    rows = pool_rows(store)
    for max_length in (512, 40):
        embedder = load_embedder(
            f"lm:{tiny_lm}", max_length=max_length, device="cpu", scores=True, precision="fp32"
        )
        batched = {c: np.zeros(len(rows)) for c in LM_SCORES}
        for indices, result in embedder.embed(rows, batch_size=3):  # padded batches
            for c in LM_SCORES:
                batched[c][indices] = result.scores[c]
        for i, row in enumerate(rows):
            expected = reference_ifd(embedder._model, embedder.tokenizer, row, max_length)
            got = tuple(batched[c][i] for c in IFD_COLUMNS)
            assert got == pytest.approx(expected, rel=1e-4, abs=1e-5), (max_length, i)
        long_row = next(i for i, r in enumerate(rows) if r["output"] == long_prompt["output"])
        if max_length == 512:
            assert (batched["ifd"] > 0).all()
        else:
            assert batched["ifd"][long_row] == 0


def test_an_old_scored_table_is_rescored_for_ifd(tiny_lm, store, tmp_path, cli):
    """A table scored before IFD joined the scores (three columns) is not a cache for IFD:
    asking for an IFD strategy embeds every row again, into a table with every column."""
    add_rows(store, sample_records(5), tmp_path)
    spec = f"lm:{tiny_lm}"
    embedder = load_embedder(spec, device="cpu", precision="fp32")
    pool = store.read_pool(["id", "hash"])
    old = embedding_schema(embedder.dim, UNCERTAINTY_COLUMNS)
    n = pool.num_rows
    columns = {
        "id": pool["id"],
        "hash": pool["hash"],
        "fingerprint": pa.array([embedder.fingerprint] * n),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(n * embedder.dim, np.float32)), embedder.dim),
        **{c: pa.array(np.ones(n, np.float32)) for c in UNCERTAINTY_COLUMNS},
    }  # fmt: skip
    store.create_embeddings("rd", old, pa.table(columns, schema=old))
    refused = cli("select", "--db", store.path, "--strategy", "ifd", "--embeddings", "rd", "--budget", "2")  # fmt: skip
    assert refused.code != 0 and "(table emb_rd in" in refused.err
    assert "have no 'ifd' score" in refused.err
    # its uncertainty scores still serve the strategies that read only those
    assert set(store.load_vectors("rd", scores=UNCERTAINTY_COLUMNS).scores) == set(UNCERTAINTY_COLUMNS)  # fmt: skip
    args = ("embed", "--db", store.path, "--embedder", spec, "--name", "rd", "--precision", "fp32", "--json")  # fmt: skip
    done = cli(*args, "--for-strategy", "ifd")
    assert done.code == 0, done.err
    assert (done.json()["embedded"], done.json()["reused"]) == (5, 0)
    assert set(LM_SCORES) <= set(store.embeddings_schema("rd").names)
    assert cli(*args).json()["embedded"] == 0  # now a cache, with or without asking
    # a vectors-only run on a scored table keeps every column (new rows get them too)
    report = embed(store, load_embedder(spec, precision="fp32"), "rd")
    assert report.embedded == 0


# ------------------------------------------------------------------------- strategies
def naive_ifd(ifd, chosen, k):
    rows = [i for i in range(len(ifd)) if i not in set(chosen) and 0 < ifd[i] <= 1]
    return sorted(rows, key=lambda i: (-float(ifd[i]), i))[:k]


def sample_ifd(n, seed):
    rng = np.random.default_rng(seed)
    ifd = rng.uniform(0.3, 1.3, n).astype(np.float32)  # about 30% above 1
    ifd[rng.choice(n, 3, replace=False)] = 0  # no answer token left
    ifd[5] = ifd[6] = np.float32(0.9)  # a tie: the lower position first
    return ifd


@pytest.mark.parametrize("parent", [[], [2, 7, 11]])
def test_ifd_picks_equal_sorting(parent):
    ifd = sample_ifd(60, 0)
    chosen = np.array(parent, np.int64)
    sel = ifd_top(ifd, chosen, 12)
    assert sel.indices.tolist() == naive_ifd(ifd, parent, 12)
    assert sel.scores.tolist() == [float(ifd[i]) for i in sel.indices]
    assert (ifd[sel.indices] <= 1).all() and (ifd[sel.indices] > 0).all()
    eligible = len(naive_ifd(ifd, parent, 60))
    with pytest.raises(SelectionError, match=f"only {eligible} unchosen rows have 0 < IFD"):
        ifd_top(ifd, chosen, eligible + 1)


def facility_gains(x, chosen, picks):
    """Dense facility location on cosine similarity clamped at 0: for each of ``picks`` in
    turn, (its gain, the largest gain of any row then)."""
    u = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    sim = np.maximum(0.0, u @ u.T)
    cover = sim[:, chosen].max(axis=1) if len(chosen) else np.zeros(len(x))
    taken, out = list(chosen), []
    for j in picks:
        gains = np.maximum(sim - cover[:, None], 0).sum(axis=0)
        gains[taken] = -np.inf
        out.append((gains[j], gains.max()))
        taken.append(j)
        cover = np.maximum(cover, sim[:, j])
    return out


@pytest.mark.parametrize("diverse", ["kcenter", "facility-location"])
@pytest.mark.parametrize("parent", [[], [2, 7, 11]])
def test_ifd_diverse_equals_filter_then_reference(diverse, parent, naive_kcenter):
    n, k, top = 80, 6, 0.25
    ifd = sample_ifd(n, 1)
    x = np.random.default_rng(3).normal(size=(n, 5))  # no near-ties in gains.astype(np.float32)
    eligible = naive_ifd(ifd, parent, n)
    candidates = eligible[: max(k, int(np.ceil(top * len(eligible))))]
    rows = list(parent) + candidates  # the reference runs on the parent, then the candidates
    start = list(range(len(parent)))
    if diverse == "kcenter" and parent:
        local, _ = naive_kcenter(x[rows], start, k)
    elif diverse == "kcenter":  # no parent: the seeded first pick, then the reference
        first = int(np.random.default_rng(4).integers(len(rows)))
        local = [first] + naive_kcenter(x[rows], [first], k - 1)[0]
    sel = ifd_diverse(
        x, ifd, np.array(parent, np.int64), k, 4, top=top, diverse=diverse, neighbors=n
    )
    if diverse == "kcenter":
        assert sel.indices.tolist() == [rows[j] for j in local]
    else:  # mutually nearest pairs tie exactly (up to rounding): check each pick is greedy
        local = [rows.index(i) for i in sel.indices.tolist()]
        for gain, best in facility_gains(x[rows], start, local):
            assert gain == pytest.approx(best, abs=1e-6)
    assert set(sel.indices.tolist()) <= set(candidates)
    # a budget above the top fraction takes the top k instead
    whole = ifd_diverse(x, ifd, np.array(parent, np.int64), len(eligible), 4, top=top, diverse=diverse, neighbors=n)  # fmt: skip
    assert sorted(whole.indices.tolist()) == sorted(eligible)


def test_ifd_strategies_name_what_is_missing():
    pool = PoolArrays(4, vectors=np.eye(4, dtype=np.float32))
    for name in ("ifd", "ifd-diverse"):
        with pytest.raises(SelectionError, match=f"--for-strategy {name}"):
            make_strategy(name).select(pool, np.zeros(0, np.int64), 2, 0)
    bad = PoolArrays(4, np.eye(4, dtype=np.float32), {"ifd": np.array([0.5, np.nan, 1, 1], np.float32)})  # fmt: skip
    with pytest.raises(SelectionError, match="NaN/inf 'ifd'"):
        make_strategy("ifd").select(bad, np.zeros(0, np.int64), 2, 0)


# ------------------------------------------------------------------------- the CLI path
def test_embed_for_ifd_then_select_ifd(tiny_lm, store, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    add_rows(store, sample_records(20) + [CONVERSATION], tmp_path)
    db, spec = str(store.path), f"lm:{tiny_lm}"
    base = ("embed", "--db", db, "--embedder", spec, "--name", "rd", "--precision", "fp32")
    plain = cli(*base, "--for-strategy", "kcenter", "--json")
    assert plain.code == 0, plain.err
    assert "ifd" not in store.embeddings_schema("rd").names  # only when asked
    scored = cli(*base, "--for-strategy", "ifd", "--json")
    assert scored.code == 0, scored.err
    assert scored.json()["embedded"] == 21
    vectors = store.load_vectors("rd", scores=LM_SCORES)
    ifd = vectors.scores["ifd"]
    np.testing.assert_allclose(
        ifd, vectors.scores["answer_loss"] / vectors.scores["answer_alone_loss"], rtol=1e-5
    )
    k = min(5, len(naive_ifd(ifd, [], 21)))
    assert k >= 3, "the tiny model leaves enough rows with IFD <= 1"
    code, _, err = cli("select", "--db", db, "--strategy", "ifd", "--embeddings", "rd",
                       "--budget", str(k), "--out", tmp_path / "a")  # fmt: skip
    assert code == 0, err
    subset = load_subset(tmp_path / "a")
    ids = vectors.ids
    assert subset.ids == [ids[i] for i in naive_ifd(ifd, [], k)]
    assert [p["score"] for p in subset.manifest.picks] == pytest.approx(
        [float(ifd[i]) for i in naive_ifd(ifd, [], k)]
    )
    code, _, err = cli("select", "--db", db, "--strategy", "ifd-diverse", "--embeddings", "rd",
                       "--budget", "2", "--ifd-top", "0.5", "--out", tmp_path / "b")  # fmt: skip
    assert code == 0, err
    manifest = load_subset(tmp_path / "b").manifest
    assert manifest.params["ifd_top"] == 0.5 and manifest.params["diverse"] == "kcenter"
