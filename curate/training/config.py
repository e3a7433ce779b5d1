"""Training settings, results and errors, shared by the rest of :mod:`curate.training`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision
from curate.errors import CurateError

METRICS_FILE = "train_metrics.json"
RUN_FILE = "run.json"  # in the work folder: the settings a resumed run must match
WORK_SUFFIX = ".train-work"
CHECKPOINT_PREFIX = "checkpoint-"


class TrainingError(CurateError):
    """Training settings or state that cannot be used (bad values, stale checkpoints)."""


class TrainingInterrupted(TrainingError):
    """The run stopped before the end; its checkpoints are kept for ``--resume``."""

    exit_code = 130


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults are the DiverseEvol paper's (3 epochs, lr 2e-5, cosine,
    3% warmup, max length 512)."""

    base_model: str
    epochs: float = 3.0
    lr: float = 2e-5
    max_length: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    seed: int = 0
    lora: int = 0  # LoRA rank; 0 trains every weight
    max_steps: int | None = None  # stop after this many optimizer steps (quick runs)
    save_steps: int | None = None  # checkpoint every N optimizer steps; None: each epoch
    device: str = DEFAULT_DEVICE
    precision: Precision = DEFAULT_PRECISION  # bf16: mixed, autocast over fp32 master weights
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    weight_decay: float = 0.0

    def check(self) -> None:
        positive = {
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
        }
        for name, value in positive.items():
            if not (value > 0 and math.isfinite(value)):
                raise TrainingError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if not 0 <= self.seed < 2**32:
            raise TrainingError(f"--seed must be from 0 to {2**32 - 1}, got {self.seed}")
        if self.max_length < 2:
            raise TrainingError(f"--max-length must be at least 2, got {self.max_length}")
        if self.lora < 0:
            raise TrainingError(f"--lora must be a rank ≥ 1 (0: full training), got {self.lora}")
        for name in ("max_steps", "save_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be ≥ 1, got {value}")

    def run_key(self) -> dict[str, Any]:
        """The settings that change the trained weights (a resume must match all of them,
        and the resolved precision, which :func:`train` adds)."""
        key = asdict(self)
        del key["device"], key["save_steps"], key["precision"]
        return key | {"epochs": float(self.epochs), "lr": float(self.lr)}


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    is_main_process: bool = True  # under accelerate/torchrun only the main process reports

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), **self.metrics}
