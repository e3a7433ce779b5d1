"""ONNX Runtime and OpenVINO backends of ``st:`` models (``onnx:``, ``onnx-int8:``,
``openvino:``, ``openvino-int8:``): exported once into the cache, vectors close to the
torch model's, and a fingerprint per backend and precision so their tables never mix."""

from __future__ import annotations

import numpy as np
import pytest

from curate.embed import embed
from curate.embedders import load_embedder
from curate.embedders.runtime import export_dir
from tests.test_embed import CONVERSATION, add_rows, sample_records
from tests.test_embed_static import build_tiny_st

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

# (spec kind, precision, least cosine to torch fp32 on the tiny model and on MiniLM)
SETTINGS = [
    ("onnx", "fp32", 0.99999),
    ("openvino", "fp32", 0.99999),
    ("openvino", "bf16", 0.999),
    ("onnx-int8", "fp32", 0.95),
    ("openvino-int8", "fp32", 0.99),
]


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return build_tiny_st(tmp_path_factory.mktemp("tiny-st"))


def _vectors(embedder, rows):
    out = np.zeros((len(rows), embedder.dim), np.float32)
    for indices, result in embedder.embed(rows):
        out[indices] = result.vectors
    return out


@pytest.mark.parametrize(("kind", "precision", "least"), SETTINGS)
def test_runtime_vectors_are_close_to_torch_and_the_export_is_cached(
    kind,
    precision,
    least,
    tiny_st,
    store,
    tmp_path,
):
    add_rows(store, sample_records(12) + [CONVERSATION], tmp_path)
    rows = store.read_pool().to_pylist()
    torch_fp32 = _vectors(load_embedder(f"st:{tiny_st}", 64, "cpu", "fp32"), rows)
    embedder = load_embedder(f"{kind}:{tiny_st}", 64, "cpu", precision)
    vectors = _vectors(embedder, rows)
    cosine = (vectors * torch_fp32).sum(1)
    assert cosine.min() >= least, cosine
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    if precision == "fp32" and "int8" not in kind:
        np.testing.assert_allclose(vectors, torch_fp32, atol=1e-4)
    # A row's vector does not depend on its batch (padding is masked out).
    alone = np.concatenate([embedder.embed_batch([r]).vectors for r in rows[:4]])
    np.testing.assert_allclose(alone, vectors[:4], atol=1e-4 if "int8" not in kind else 2e-2)
    # One export per (weights, backend, stored precision), reused by the next load.
    folder = export_dir(embedder.model_path, embedder.backend, embedder._model.precision)
    assert (folder / "done").exists()
    stamp = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = load_embedder(f"{kind}:{tiny_st}", 64, "cpu", precision)
    np.testing.assert_array_equal(_vectors(again, rows[:3]), _vectors(embedder, rows[:3]))
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp


def test_every_backend_precision_and_length_has_its_own_fingerprint_and_table_rows(
    tiny_st,
    store,
    tmp_path,
):
    specs = [(f"st:{tiny_st}", "fp32", 64), (f"st:{tiny_st}", "bf16", 64)]
    specs += [(f"{k}:{tiny_st}", p, 64) for k, p, _ in SETTINGS]
    specs += [(f"openvino-int8:{tiny_st}", "fp32", 32)]
    prints = [load_embedder(s, n, "cpu", p).fingerprint for s, p, n in specs]
    assert len(set(prints)) == len(specs)
    # int8 ignores a bf16 request (it computes in fp32): same vectors, same fingerprint.
    assert (
        load_embedder(f"openvino-int8:{tiny_st}", 64, "cpu", "bf16").fingerprint
        == load_embedder(f"openvino-int8:{tiny_st}", 64, "cpu", "fp32").fingerprint
    )

    # Same embeddings name, another backend: every row is embedded again, none reused.
    add_rows(store, sample_records(8), tmp_path)
    first = embed(store, load_embedder(f"st:{tiny_st}", 64, "cpu", "fp32"), "mini")
    second = embed(store, load_embedder(f"openvino-int8:{tiny_st}", 64, "cpu"), "mini")
    assert (first.embedded, second.embedded, second.reused) == (8, 8, 0)
    stored = set(store.scan("emb_mini", ["fingerprint"])["fingerprint"].to_pylist())
    assert stored == {load_embedder(f"openvino-int8:{tiny_st}", 64, "cpu").fingerprint}
    third = embed(store, load_embedder(f"openvino-int8:{tiny_st}", 64, "cpu"), "mini")
    assert (third.embedded, third.reused) == (0, 8)


def test_minilm_backends_share_the_default_name_and_minilm_vectors_agree():
    from curate.embedders import default_name

    assert {default_name(f"{k}:minilm") for k, _, _ in SETTINGS} == {"minilm"}
    rows = [dict(r, n_chars=100 + i) for i, r in enumerate([CONVERSATION, *sample_records(3)])]
    reference = _vectors(load_embedder("st:minilm", 128, "cpu", "fp32"), rows)
    vectors = _vectors(load_embedder("openvino-int8:minilm", 128, "cpu"), rows)
    assert (vectors * reference).sum(1).min() > 0.99


LOAD_AND_EMBED = """
import sys
import curate.embedders.runtime as runtime
from curate.embedders import load_embedder

export = runtime.export
def counted(*args):
    print("exported", flush=True)
    export(*args)
runtime.export = counted
model = load_embedder(sys.argv[1], 64, "cpu", "fp32")
print(model.embed_batch([{"instruction": "Name a colour.", "output": "Blue."}]).vectors.sum())
"""


@pytest.mark.slow
def test_processes_starting_at_once_share_one_export(tiny_st, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "CURATE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_AND_EMBED, f"openvino-int8:{tiny_st}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-800:] for _, err in outs]
    lines = sorted(out.splitlines() for out, _ in outs)
    assert [len(x) for x in lines] == [1, 2], f"one export, the other waited; stdout: {lines}"
    assert lines[1][0] == "exported", "the export writes nothing else to stdout (NNCF's log)"
    assert lines[0][-1] == lines[1][-1], "both read the same export"
    runtime_dir = tmp_path / "cache" / "runtime"
    assert not list(runtime_dir.glob(".export-*")), "no half-written export left"
