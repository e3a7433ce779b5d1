"""`curate embed` on a real LanceDB folder with real models (tiny LM, MiniLM)."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.cli import error_line
from curate.embed import embed, import_vectors
from curate.embedders import load_embedder
from curate.embedders.base import length_sorted_batches
from curate.embedders.causal_lm import CausalLMEmbedder
from curate.embedders.registry import default_name, parse_spec
from curate.errors import CurateError, EmbeddingError, InvalidInputError, ModelError, PoolError
from curate.ingest import ingest
from curate.progress import NoProgress
from curate.prompts import IGNORE_INDEX, tokenize
from curate.store import POOL_SCHEMA, Store

ROOT = Path(__file__).resolve().parents[1]
LM_SCORES = CausalLMEmbedder.score_columns  # what `lm:` stores when asked for scores
CONVERSATION = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7."},
        {"role": "user", "content": "And an even one?"},
        {"role": "assistant", "content": "2, the only even prime."},
    ]
}


def sample_records(n: int, start: int = 0) -> list[dict]:
    lines = (ROOT / "data" / "sample" / "pool.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[start : start + n]]


def add_rows(store: Store, records: list[dict], tmp_path: Path, label: str = "part") -> None:
    path = tmp_path / f"{label}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ingest(store, [str(path)])


@pytest.fixture
def pool16(store, tmp_path) -> Store:
    """15 sample rows of assorted lengths plus one multi-turn conversation."""
    add_rows(store, sample_records(15) + [CONVERSATION], tmp_path)
    return store


@pytest.fixture(scope="session")
def minilm():
    embedder = load_embedder("st:minilm", device="cpu")
    embedder.load()
    return embedder


@pytest.fixture(scope="session")
def tiny_b(smollm2_tokenizer_dir, tmp_path_factory, build_tiny_lm) -> Path:
    """Another tiny LM with the same shape but different weights (a "newer model")."""
    return build_tiny_lm(smollm2_tokenizer_dir, tmp_path_factory.mktemp("tiny-lm-b"), seed=1)


def pool_rows(store: Store) -> list[dict]:
    return store.read_pool().to_pylist()


# ---------------------------------------------------------------- embedders


def test_lm_vector_is_masked_mean_of_last_hidden_state_and_scores_match_logits(tiny_lm, pool16):
    import torch

    embedder = load_embedder(
        f"lm:{tiny_lm}", max_length=512, device="cpu", scores=True, precision="fp32"
    )
    rows = pool_rows(pool16)
    conversation = next(r for r in rows if r["messages"])
    result = embedder.embed_batch([rows[0], conversation, rows[3]])
    assert result.vectors.shape == (3, 64) and result.vectors.dtype == np.float32
    model, tokenizer = embedder._model, embedder.tokenizer
    for b, row in enumerate([rows[0], conversation, rows[3]]):
        tok = tokenize(row, tokenizer, 512)
        with torch.no_grad():
            out = model(torch.tensor([tok.input_ids]), output_hidden_states=True)
        expected = out.hidden_states[-1][0].mean(dim=0).numpy()
        np.testing.assert_allclose(result.vectors[b], expected, atol=1e-5)
        predicting = [t - 1 for t in range(1, len(tok.labels)) if tok.labels[t] != IGNORE_INDEX]
        assert predicting, "the rows have responses"
        logits = out.logits[0, predicting]
        top2 = logits.topk(2, dim=-1).values
        log_p = torch.log_softmax(logits, dim=-1)
        expected_scores = {
            "least_confidence": top2[:, 0].mean(),
            "margin": (top2[:, 0] - top2[:, 1]).mean(),
            "entropy": -(log_p.exp() * log_p).sum(dim=-1).mean(),
        }
        for name in expected_scores:  # IFD's columns: tests/test_ifd.py
            assert result.scores[name][b] == pytest.approx(
                float(expected_scores[name]), rel=1e-4, abs=1e-5
            )


@pytest.mark.parametrize("kind", ["lm", "st"])
def test_batched_vectors_equal_batch_size_one(kind, tiny_lm, minilm, pool16):
    embedder = (
        load_embedder(f"lm:{tiny_lm}", device="cpu", scores=True, precision="fp32")
        if kind == "lm"
        else minilm
    )
    rows = pool_rows(pool16)[6:]  # 10 rows of assorted lengths, the conversation last
    single = np.zeros((len(rows), embedder.dim), np.float32)
    batched = np.zeros_like(single)
    single_scores, batched_scores = {}, {}
    for out, scores, size in ((single, single_scores, 1), (batched, batched_scores, 4)):
        for indices, result in embedder.embed(rows, batch_size=size):
            out[indices] = result.vectors
            for name, values in result.scores.items():
                scores.setdefault(name, np.zeros(len(rows), np.float32))[indices] = values
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert np.abs(single).sum(axis=1).min() > 0, "every row got a vector"
    assert len({v.tobytes() for v in single}) == len(rows), "different rows, different vectors"
    if kind == "lm":
        assert set(batched_scores) == set(LM_SCORES)
        for name in LM_SCORES:
            np.testing.assert_allclose(
                batched_scores[name], single_scores[name], rtol=1e-4, atol=1e-4
            )
    else:
        np.testing.assert_allclose(
            np.linalg.norm(single, axis=1), 1.0, atol=1e-5
        )  # MiniLM normalises


def test_both_kinds_embed_real_multi_turn_and_long_rows_of_the_shared_pools(
    shared_data, tiny_lm, minilm, store
):
    ingest(
        store,
        [
            str(shared_data / "pools" / "lima.json"),
            str(shared_data / "pools" / "alpaca_en_demo.json"),
        ],
    )
    rows = pool_rows(store)
    conversations = [r for r in rows if r["messages"]][:6]
    longest = sorted(rows, key=lambda r: -r["n_chars"])[:2]
    assert len(conversations) == 6
    for embedder in (
        load_embedder(f"lm:{tiny_lm}", max_length=256, scores=True, precision="fp32"),
        minilm,
    ):
        result = embedder.embed_batch(conversations + longest)
        assert result.vectors.shape == (8, embedder.dim)
        assert np.isfinite(result.vectors).all()
        assert all(np.isfinite(v).all() for v in result.scores.values())
        assert set(result.scores) == (set(LM_SCORES) if embedder.name == "lm" else set())


def test_length_sorted_batches_cover_every_row_once_in_length_order():
    rows = [{"n_chars": n} for n in (50, 3, 900, 3, 77, 12, 400)]
    batches = length_sorted_batches(rows, 3)
    assert batches == [[1, 3, 5], [0, 4, 6], [2]]
    with pytest.raises(ValueError):
        length_sorted_batches(rows, 0)


def test_specs_and_default_names(tiny_lm):
    assert parse_spec("st:minilm") == ("st", "minilm")
    assert parse_spec("gguf:/x/SmolLM2.Q4.gguf") == ("lm", "gguf:/x/SmolLM2.Q4.gguf")
    assert parse_spec(str(tiny_lm)) == ("lm", str(tiny_lm))
    assert default_name("st:minilm") == "minilm"
    assert default_name("lm:smollm2") == "smollm2"
    assert default_name("lm:data/models/rd_1/") == "rd_1"
    assert default_name("gguf:/m/SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm2-135m-instruct_q4_1"
    with pytest.raises(EmbeddingError, match="unknown embedder spec"):
        parse_spec("bogus")
    with pytest.raises(ModelError, match="no such model folder"):
        load_embedder("lm:./no/such/model", precision="fp32")
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        load_embedder("lm:nobody/no-such-model", precision="fp32")


def test_fingerprint_tracks_weights_max_length_and_kind(tiny_lm, tiny_b, minilm):
    a = load_embedder(f"lm:{tiny_lm}", precision="fp32")
    assert a.fingerprint == load_embedder(f"lm:{tiny_lm}", precision="fp32").fingerprint
    assert a.fingerprint != load_embedder(f"lm:{tiny_b}", precision="fp32").fingerprint
    assert (
        a.fingerprint
        != load_embedder(f"lm:{tiny_lm}", max_length=256, precision="fp32").fingerprint
    )
    assert minilm.fingerprint != a.fingerprint


# ---------------------------------------------------------------- cache, resume, replace


def test_rerun_reuses_everything_and_new_rows_are_the_only_ones_embedded(tiny_lm, pool16, tmp_path):
    first = embed(
        pool16, load_embedder(f"lm:{tiny_lm}", scores=True, precision="fp32"), "tiny", batch_size=4
    )
    assert (first.embedded, first.reused, first.dim) == (16, 0, 64)
    before = pool16.load_vectors("tiny", scores=LM_SCORES)
    assert before.matrix.shape == (16, 64) and set(before.scores) == set(LM_SCORES)

    again = load_embedder(f"lm:{tiny_lm}", precision="fp32")
    report = embed(pool16, again, "tiny", batch_size=4)
    assert (report.embedded, report.reused) == (0, 16)
    assert not again.loaded, "a fully cached run must not even load the model"

    add_rows(pool16, sample_records(5, start=40), tmp_path, "more")
    grow = load_embedder(f"lm:{tiny_lm}", precision="fp32")
    report = embed(pool16, grow, "tiny", batch_size=4)
    assert (report.embedded, report.reused, report.removed) == (5, 16, 0)
    after = pool16.load_vectors("tiny", scores=LM_SCORES)
    assert after.matrix.shape == (21, 64)
    assert pool16.embeddings_count("tiny") == 21
    np.testing.assert_array_equal(after.matrix[:16], before.matrix)  # old vectors untouched


def test_pool_reader_returns_rows_by_position_in_the_order_asked(pool16, tmp_path):
    add_rows(pool16, sample_records(7, start=40), tmp_path, "second")  # a second fragment
    ids = pool16.read_pool(["id"])["id"].to_pylist()
    positions = np.random.default_rng(0).permutation(len(ids))[:12].tolist() + [3, 3, 0]
    rows = pool16.pool_reader().rows(positions, ["id", "hash"])
    assert rows["id"].to_pylist() == [ids[p] for p in positions]
    assert rows.column_names == ["id", "hash"]
    assert pool16.pool_reader().rows([], ["id"]).num_rows == 0


def test_embedding_reads_the_pool_a_group_of_batches_at_a_time(tiny_lm, pool16, monkeypatch):
    """Batches are length-sorted over the whole pool; the rows are read a group at a time
    (a 1M-row pool's text as Python dicts would be gigabytes), with the same vectors."""
    from curate.embed import run
    from curate.store.pool import PoolReader

    whole = embed(pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "whole", batch_size=2)
    assert whole.embedded == 16
    reads: list[int] = []
    original = PoolReader.rows

    def counted(self, positions, columns):
        reads.append(len(positions))
        return original(self, positions, columns)

    monkeypatch.setattr(PoolReader, "rows", counted)
    monkeypatch.setattr(run, "READ_ROWS", 5)
    grouped = embed(
        pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "grouped", batch_size=2
    )
    assert grouped.embedded == 16 and sum(reads) == 16
    assert reads == [6, 6, 4]  # batches of 2, a group closed once it reaches READ_ROWS
    np.testing.assert_array_equal(
        pool16.load_vectors("grouped").matrix, pool16.load_vectors("whole").matrix
    )


def test_new_model_replaces_old_vectors_only_after_it_succeeds(tiny_lm, tiny_b, pool16):
    old = embed(pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "rd", batch_size=4)
    newer = load_embedder(f"lm:{tiny_b}", precision="fp32")

    class CrashAfterFirstBatch(NoProgress):
        def advance(self, n: int = 1) -> None:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        embed(
            pool16,
            newer,
            "rd",
            batch_size=4,
            progress=CrashAfterFirstBatch(),
            checkpoint_seconds=0,
        )
    stored = pool16.scan("emb_rd", ["fingerprint"])["fingerprint"].to_pylist()
    assert stored.count(old.fingerprint) == 16, "old vectors survive a failed run"
    assert stored.count(newer.fingerprint) == 4, "the committed batch is kept for the resume"
    with pytest.raises(EmbeddingError, match="mix 2 embedder fingerprints"):
        pool16.load_vectors("rd")

    report = embed(pool16, load_embedder(f"lm:{tiny_b}", precision="fp32"), "rd", batch_size=4)
    assert (report.embedded, report.reused, report.removed) == (12, 4, 16)
    vectors = pool16.load_vectors("rd")
    assert vectors.fingerprint == newer.fingerprint
    assert pool16.embeddings_count("rd") == 16
    assert vectors.ids == pool16.read_pool(["id"])["id"].to_pylist()


@pytest.mark.filterwarnings("ignore:optimize")  # LanceDB warns about a zero grace
def test_compaction_merges_checkpoint_appends_and_prunes_versions_past_the_grace(
    tiny_lm, pool16, tmp_path
):
    table = pool16.embedding_table("ck")

    def data_files() -> int:
        return len(list((pool16.path / f"{table}.lance" / "data").glob("*.lance")))

    # A first run leaves no version a reader could use before its end: all pruned at once.
    embed(pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "ck", batch_size=2,
          checkpoint_seconds=0)  # fmt: skip
    assert (pool16.embeddings_versions("ck"), data_files()) == (1, 1)
    # A run that adds rows to a whole table keeps every version for the grace (a reader of
    # the table before it may still be reading), then compaction prunes them.
    add_rows(pool16, sample_records(6, start=40), tmp_path, "more")
    embed(pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "ck", batch_size=2,
          checkpoint_seconds=0)  # fmt: skip
    assert pool16.embeddings_versions("ck") >= 4, "one version per checkpoint, all kept"
    before = pool16.load_vectors("ck").matrix
    pool16.compact_embeddings("ck", grace=timedelta(0))
    assert pool16.embeddings_versions("ck") == 1
    assert data_files() == 1, "the appends' data files went with their versions"
    assert np.array_equal(pool16.load_vectors("ck").matrix, before)


@pytest.mark.slow
def test_kill_9_mid_run_resumes_from_the_written_batches(tiny_lm, pool16, curate_process):
    script = textwrap.dedent(
        f"""
        import os, signal
        from curate.embed import embed
        from curate.embedders import load_embedder
        from curate.progress import NoProgress
        from curate.store import Store

        class DieAfterTwoBatches(NoProgress):
            batches = 0
            def advance(self, n=1):
                self.batches += 1
                if self.batches == 2:
                    os.kill(os.getpid(), signal.SIGKILL)

        embed(Store({str(pool16.path)!r}),
                   load_embedder({f"lm:{tiny_lm}"!r}, device="cpu", scores=True, precision="fp32"),
                   "resume", batch_size=4, progress=DieAfterTwoBatches(), checkpoint_seconds=0)
        """
    )
    killed = curate_process(script=script, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert pool16.embeddings_count("resume") == 8

    report = embed(pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "resume", batch_size=4)
    assert (report.embedded, report.reused, report.removed) == (8, 8, 0)
    assert pool16.embeddings_count("resume") == 16
    embed(
        pool16, load_embedder(f"lm:{tiny_lm}", scores=True, precision="fp32"), "fresh", batch_size=4
    )
    resumed = pool16.load_vectors("resume", scores=LM_SCORES)
    fresh = pool16.load_vectors("fresh", scores=LM_SCORES)
    np.testing.assert_allclose(resumed.matrix, fresh.matrix, atol=1e-5)
    for name in LM_SCORES:
        np.testing.assert_allclose(resumed.scores[name], fresh.scores[name], rtol=1e-5, atol=1e-5)


def test_dimension_change_under_a_name_is_an_error_and_changes_nothing(tiny_lm, minilm, pool16):
    embed(pool16, load_embedder(f"lm:{tiny_lm}", precision="fp32"), "shared", batch_size=8)
    version = pool16.embeddings_version("shared")
    with pytest.raises(EmbeddingError) as raised:
        embed(pool16, minilm, "shared")
    line = error_line(raised.value)  # what `curate embed` prints
    assert re.search(r"64-d vectors, the new ones are 384-d; choose another --name", line), line
    assert pool16.embeddings_version("shared") == version
    assert pool16.load_vectors("shared").matrix.shape == (16, 64)


def test_the_api_and_the_cli_skip_alike_for_a_strategy_that_reads_no_vectors(
    store, build_pool, tmp_path, cli
):
    """One orchestration (issue 22): `Pool.embed(for_strategy=...)` does what
    `curate embed --for-strategy` does: no model, the named table created empty."""
    import curate

    build_pool(store, tmp_path / "src", rows=6)
    report = curate.Pool(store.path).embed(for_strategy="random", name="r")
    assert report.to_dict() == {"name": "r", "skipped": True, "strategy": "random"}
    assert store.embedding_names() == ["r"] and store.embeddings_count("r") == 0
    args = ("embed", "--db", str(store.path), "--for-strategy", "random", "--name", "r", "--json")
    code, out, err = cli(*args)
    assert code == 0 and json.loads(out) == report.to_dict(), err


def test_empty_or_missing_pool_is_a_clear_error(store, tiny_lm):
    embedder = load_embedder(f"lm:{tiny_lm}", precision="fp32")
    with pytest.raises(PoolError, match="no pool table"):
        embed(store, embedder)
    store.append_pool(POOL_SCHEMA.empty_table())
    with pytest.raises(PoolError, match="pool .* is empty"):
        embed(store, embedder)


# ---------------------------------------------------------------- import


def _random_vectors(store: Store, dim: int = 8, seed: int = 0):
    ids = store.read_pool(["id"])["id"].to_pylist()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))  # files need not follow pool order
    return [ids[i] for i in order], rng.normal(size=(len(ids), dim)).astype(np.float32), order


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".npy"])
def test_import_round_trips_in_pool_order(suffix, pool16, tmp_path):
    ids, matrix, order = _random_vectors(pool16)
    path = tmp_path / f"vectors{suffix}"
    if suffix == ".npz":
        np.savez(path, id=np.array(ids), vector=matrix)
    elif suffix == ".parquet":
        hashes = dict(
            zip(
                *(pool16.read_pool(["id", "hash"])[c].to_pylist() for c in ("id", "hash")),
                strict=True,
            )
        )
        pq.write_table(
            pa.table({"id": ids, "hash": [hashes[i] for i in ids], "vector": matrix.tolist()}), path
        )
    else:
        records = np.zeros(len(ids), dtype=[("id", "U64"), ("vector", "f4", (8,))])
        records["id"], records["vector"] = ids, matrix
        np.save(path, records)
    report = import_vectors(pool16, path)
    assert (report.name, report.dim, report.embedded) == ("vectors", 8, 16)
    loaded = pool16.load_vectors("vectors")
    expected = np.empty_like(matrix)
    expected[order] = matrix
    np.testing.assert_array_equal(loaded.matrix, expected)
    assert loaded.fingerprint.startswith("import-")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ids, m: (ids[:-1] + ["nope"], m), "1 ids are not in the pool (nope)"),
        (lambda ids, m: (ids[:-1], m[:-1]), "covers 15 of 16 pool rows"),
        (lambda ids, m: (ids, np.where(np.arange(len(ids))[:, None] == 3, np.nan, m)), "row 3"),
        (lambda ids, m: (ids[:-1] + ids[:1], m), "appears twice"),
    ],
)
def test_bad_import_files_name_the_problem_and_change_nothing(mutate, message, pool16, tmp_path):
    ids, matrix, _ = _random_vectors(pool16)
    good = tmp_path / "good.npz"
    np.savez(good, id=np.array(ids), vector=matrix)
    import_vectors(pool16, good, "imp")
    version = pool16.embeddings_version("imp")
    bad_ids, bad_matrix = mutate(list(ids), matrix.copy())
    bad = tmp_path / "bad.npz"
    np.savez(bad, id=np.array(bad_ids), vector=bad_matrix)
    with pytest.raises(InvalidInputError) as err:
        import_vectors(pool16, bad, "imp")
    assert str(bad) in str(err.value) and message in str(err.value)
    assert pool16.embeddings_version("imp") == version


def test_import_rejects_a_dimension_change_and_plain_arrays(pool16, tmp_path):
    ids, matrix, _ = _random_vectors(pool16)
    np.savez(tmp_path / "a.npz", id=np.array(ids), vector=matrix)
    import_vectors(pool16, tmp_path / "a.npz", "imp")
    np.savez(tmp_path / "b.npz", id=np.array(ids), vector=np.ones((len(ids), 4), np.float32))
    with pytest.raises(EmbeddingError, match="8-d vectors, the new ones are 4-d"):
        import_vectors(pool16, tmp_path / "b.npz", "imp")
    np.save(tmp_path / "plain.npy", matrix)
    with pytest.raises(InvalidInputError, match="a plain array has no ids"):
        import_vectors(pool16, tmp_path / "plain.npy", "imp")
    assert pool16.load_vectors("imp").matrix.shape == (16, 8)


# ---------------------------------------------------------------- command line


def test_cli_without_arguments_embeds_with_offline_minilm_then_reuses(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "data" / "lancedb")
    add_rows(store, sample_records(10), tmp_path)
    first = cli("embed")
    assert first.code == 0, first.err
    assert "minilm" in first.out
    assert store.load_vectors("minilm").matrix.shape == (10, 384)
    second = cli("embed", "--json")
    assert second.code == 0, second.err
    summary = second.json()
    assert (summary["name"], summary["embedded"], summary["reused"], summary["dim"]) == (
        "minilm",
        0,
        10,
        384,
    )


def test_cli_embed_lm_writes_scores_and_reports_json(tiny_lm, pool16, cli):
    args = ["embed", "--db", str(pool16.path), "--embedder", f"lm:{tiny_lm}", "--name", "r1"]
    args.append("--scores")
    result = cli(*args, "--batch-size", "5", "--max-length", "64", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["embedded"] == 16 and summary["examples_per_s"] > 0
    assert set(pool16.load_vectors("r1", scores=LM_SCORES).scores) == set(LM_SCORES)
    # --max-length is part of the fingerprint: the same rows at another length are re-embedded.
    again = cli(*args, "--max-length", "128", "--json")
    assert again.json()["embedded"] == 16


@pytest.mark.parametrize(
    "args, error, message",
    [
        (["--embedder", "lm:./missing-model"], ModelError, "no such model folder"),
        (["--embedder", "wat"], EmbeddingError, "unknown embedder spec"),
        (["--name", "bad name!"], EmbeddingError, "not usable as a table name"),
    ],
)
def test_cli_bad_input_raises_one_clear_error(args, error, message, pool16, cli):
    with pytest.raises(error) as raised:  # the library's error, as --debug shows it
        cli("embed", "--db", str(pool16.path), *args, "--debug")
    assert isinstance(raised.value, CurateError)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    code, out, err = cli("embed", "--db", str(pool16.path), *args)  # as a user sees it
    assert code == error.exit_code and out == "" and err == f"error: {raised.value}\n"
    assert pool16.embedding_names() == []


def test_cli_error_is_one_line_and_a_non_zero_exit(tmp_path, cli):
    code, _, err = cli("embed", "--db", str(tmp_path / "db"))
    assert code != 0
    err = err.strip()
    assert err.startswith("error: no pool table") and len(err.splitlines()) == 1
