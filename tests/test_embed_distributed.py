"""`curate embed` under torchrun: 2 CPU processes (gloo) give the single-process result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curate.embed import embed
from curate.embedders import load_embedder
from curate.embedders.causal_lm import CausalLMEmbedder
from curate.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_ranks_split_the_work_and_match_one_process(tiny_lm, store, tmp_path, curate_process):
    lines = (ROOT / "data" / "sample" / "pool.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "pool.jsonl").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    ingest(store, [str(tmp_path / "pool.jsonl")])

    run = curate_process(
        "embed", "--db", store.path, "--embedder", f"lm:{tiny_lm}", "--name", "two",
        "--batch-size", "3", "--max-length", "128", "--device", "cpu", "--precision", "fp32",
        "--scores", "--json",
        launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
        env={"OMP_NUM_THREADS": "1"}, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout[run.stdout.index("{") :])  # only rank 0 prints
    assert summary["ranks"] == 2 and summary["embedded"] == 20
    per_rank = summary["embedded_per_rank"]
    assert len(per_rank) == 2 and min(per_rank) > 0 and sum(per_rank) == 20

    one_process = load_embedder(
        f"lm:{tiny_lm}", max_length=128, device="cpu", precision="fp32", scores=True
    )
    single = embed(store, one_process, "one", batch_size=3)
    assert single.fingerprint == summary["fingerprint"]
    two, one = (
        store.load_vectors("two", scores=CausalLMEmbedder.score_columns),
        store.load_vectors("one", scores=CausalLMEmbedder.score_columns),
    )
    assert store.embeddings_count("two") == 20
    np.testing.assert_allclose(two.matrix, one.matrix, atol=1e-5)
    for name in CausalLMEmbedder.score_columns:
        np.testing.assert_allclose(two.scores[name], one.scores[name], rtol=1e-5, atol=1e-5)
