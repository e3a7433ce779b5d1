"""A sentence-transformers model exported to ONNX Runtime or OpenVINO, fp32 or int8.

sentence-transformers' own ``backend="onnx"/"openvino"`` goes through ``optimum``, whose
install would downgrade transformers (5.x → 4.57) in this environment; the export here
is the same thing done directly: the model's own modules (transformer, pooling,
normalisation) wrapped as one torch module, exported once per (weights, backend,
precision) into ``$CURATE_CACHE/runtime/``, then run without torch.

- ``onnx``: ``torch.onnx.export``; int8 is onnxruntime's dynamic quantization (int8
  weights, activations quantized per batch at run time).
- ``openvino``: ``openvino.convert_model`` on the torch module; int8 is NNCF's weight
  compression (int8 weights, fp32 activations). fp32 pins OpenVINO's inference precision
  to f32 (on a CPU with bf16 it would otherwise compute in bf16).

Tokenization is the model's own (``SentenceTransformer.tokenize``), so a row's tokens are
the ``st:`` embedder's; the text is cut first far past where ``max_length`` tokens can end
(a long chat is tokenized only as far as it is read).
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from curate.embedders.base import PROBE_ROW, BatchResult, Embedder
from curate.embedders.fingerprints import embedder_fingerprint
from curate.embedders.sentence_transformer import example_text
from curate.errors import ModelError

BACKENDS = ("torch", "onnx", "openvino")
RUNTIME_PRECISIONS = ("fp32", "bf16", "int8")  # bf16: OpenVINO only
EXPORT_VERSION = "1"  # bump when the export recipe changes a vector
CHARS_PER_TOKEN_BOUND = 32  # no WordPiece token plus its spacing runs longer in real text
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_dir(model_path: str, backend: str, precision: str) -> Path:
    from curate.models import cache_root, weights_fingerprint

    stored = "int8" if precision == "int8" else "fp32"  # bf16 is a compile-time hint
    key = f"{weights_fingerprint(model_path)}|{backend}|{stored}|{EXPORT_VERSION}"
    return cache_root() / "runtime" / hashlib.sha256(key.encode()).hexdigest()[:32]


class RuntimeModel:
    """One exported model: ``encode(texts) -> (B, d) float32``."""

    def __init__(self, model_path: str, backend: str, precision: str, max_length: int):
        from transformers import AutoTokenizer

        if backend not in BACKENDS[1:]:
            raise ValueError(f"backend must be onnx or openvino, not {backend!r}")
        if precision not in RUNTIME_PRECISIONS or (backend, precision) == ("onnx", "bf16"):
            raise ValueError(f"{backend} has no precision {precision!r}")
        self.backend, self.precision, self.max_length = backend, precision, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        folder = export_dir(model_path, backend, precision)
        if not (folder / "done").exists():
            from filelock import FileLock

            # Ranks of one launch (or two commands) may start at once: one exports, the
            # others wait and read its export, so none replaces a folder another is reading.
            folder.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(folder.parent / f".{folder.name}.lock"):
                if not (folder / "done").exists():
                    export(model_path, backend, precision, folder)
        self._run = (
            _onnx_runner(folder) if backend == "onnx" else _openvino_runner(folder, precision)
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = [t[: self.max_length * CHARS_PER_TOKEN_BOUND] for t in texts]
        features = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        feed = {name: np.asarray(features[name], np.int64) for name in INPUTS if name in features}
        if "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        return np.asarray(self._run(feed), np.float32)


def _wrapper(model_path: str):
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path, device="cpu").eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
            return self.st(features)["sentence_embedding"]

    ids = torch.ones((2, 16), dtype=torch.long)
    return Encoder().eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids))


def export(model_path: str, backend: str, precision: str, folder: Path) -> None:
    """Write the exported model into ``folder`` (then a ``done`` marker: a half-written
    export is redone, never read)."""
    import shutil
    import sys
    import tempfile
    import warnings
    from contextlib import redirect_stdout

    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".export-"))
    try:
        module, example = _wrapper(model_path)
        # NNCF logs its compression table and a progress bar to stdout: on stderr instead,
        # so a first run's `--json` output stays one JSON document.
        with torch.inference_mode(), warnings.catch_warnings(), redirect_stdout(sys.stderr):
            # The tracer's notes, and LanceDB's about NNCF's worker processes forking (the
            # export touches no table): a hundred lines of noise in a one-off job's log.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="lancedb fork support")
            if backend == "onnx":
                _export_onnx(module, example, work, precision)
            else:
                _export_openvino(module, example, work, precision)
        (work / "done").write_text("ok\n")
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_onnx(module: Any, example: tuple, work: Path, precision: str) -> None:
    import torch

    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    axes["token_type_ids"] = {0: "batch", 1: "seq"}
    fp32 = work / ("model.onnx" if precision == "fp32" else "model-fp32.onnx")
    torch.onnx.export(
        module,
        example,
        str(fp32),
        input_names=list(INPUTS),
        output_names=["sentence_embedding"],
        dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # MatMul weights only, per output channel: quantizing every op (the default, which
        # includes the embedding Gather) drops MiniLM's cosine to fp32 to ~0.9.
        quantize_dynamic(
            str(fp32),
            str(work / "model.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
        )
        fp32.unlink()


def _export_openvino(module: Any, example: tuple, work: Path, precision: str) -> None:
    import openvino as ov

    model = ov.convert_model(module, example_input=example)
    for port, name in zip(model.inputs, INPUTS, strict=True):
        port.get_tensor().set_names({name})
    if precision == "int8":
        import nncf

        model = nncf.compress_weights(model)  # int8 weights, asymmetric, per channel
    ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)


def _onnx_runner(folder: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    wanted = {i.name for i in session.get_inputs()}
    return lambda feed: session.run(None, {k: v for k, v in feed.items() if k in wanted})[0]


def _openvino_runner(folder: Path, precision: str):
    import openvino as ov

    core = ov.Core()
    # Pinned either way: OpenVINO's CPU default is bf16 where the CPU has it, f32 elsewhere.
    hint = "bf16" if precision == "bf16" else "f32"
    compiled = core.compile_model(
        str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": hint}
    )
    names = [p.get_any_name() for p in compiled.inputs]
    request = compiled.create_infer_request()

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        result = request.infer({n: feed[n] for n in names})
        return next(iter(result.values())).copy()

    return run


class RuntimeEmbedder(Embedder):
    """``onnx:``/``openvino:`` (fp32 weights) and ``onnx-int8:``/``openvino-int8:`` (int8
    weights): a sentence-transformers model run by an exported runtime. The vector is the
    ``st:`` embedder's up to the runtime's arithmetic; the fingerprint records the backend,
    the stored weights' precision and the compute precision, so their tables never mix with
    ``st:``'s or each other's."""

    backend: ClassVar[str]
    weights: ClassVar[str]  # "fp32" or "int8"
    text_format = "st-text-v1"
    # Short rows in bigger batches: OpenVINO int8 MiniLM over ~50-token rows ran 1.2x faster
    # at 128 rows a batch than at 32 (the token budget lets ~80 through); 256-token rows
    # gained nothing past 16 rows (4,096 tokens), and a larger budget only costs memory.
    default_batch_size = 128
    batch_tokens = 4096

    @cached_property
    def pooling(self) -> str:  # type: ignore[override]
        return f"sentence-transformers-modules ({self.backend} export v{EXPORT_VERSION})"

    @cached_property
    def precision(self) -> str:
        if self.requested_precision == "auto" or self.backend == "onnx" or self.weights == "int8":
            return "fp32"  # as st: fp32 unless bf16 is asked for (OpenVINO fp32 weights only)
        return super().precision

    @cached_property
    def fingerprint(self) -> str:
        compute = self.precision if self.weights == "fp32" else f"{self.precision}-int8w"
        return embedder_fingerprint(
            self.name, self.model_path, self.pooling, self.text_format, self.window, compute
        )

    @cached_property
    def window(self) -> int:
        """Tokens read: ``max_length``, never past the model's own ``max_seq_length``."""
        import json

        config = Path(self.model_path) / "sentence_bert_config.json"
        trained = json.loads(config.read_text()).get("max_seq_length") if config.exists() else None
        return min(self.max_length, trained or self.max_length)

    def load(self) -> None:
        if self._model is not None:
            return
        precision = "int8" if self.weights == "int8" else self.precision
        try:
            self._model = RuntimeModel(self.model_path, self.backend, precision, self.window)
        except (OSError, ValueError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ModelError(f"{self.spec}: cannot load or export the model ({reason})") from None

    @cached_property
    def dim(self) -> int:
        return int(self.embed_batch([PROBE_ROW]).vectors.shape[1])

    def embed_batch(self, rows: list[dict[str, Any]]) -> BatchResult:
        self.load()
        return BatchResult(self._model.encode([example_text(r) for r in rows]))


class OnnxEmbedder(RuntimeEmbedder):
    name, backend, weights = "onnx", "onnx", "fp32"
    summary = "a sentence-transformers model under ONNX Runtime"


class OnnxInt8Embedder(RuntimeEmbedder):
    name, backend, weights = "onnx-int8", "onnx", "int8"
    summary = "a sentence-transformers model under ONNX Runtime, int8 MatMul weights"


class OpenVINOEmbedder(RuntimeEmbedder):
    name, backend, weights = "openvino", "openvino", "fp32"
    summary = "a sentence-transformers model under OpenVINO"


class OpenVINOInt8Embedder(RuntimeEmbedder):
    name, backend, weights = "openvino-int8", "openvino", "int8"
    summary = "a sentence-transformers model under OpenVINO, int8 weights (NNCF)"


RUNTIME_EMBEDDERS = (OnnxEmbedder, OnnxInt8Embedder, OpenVINOEmbedder, OpenVINOInt8Embedder)
