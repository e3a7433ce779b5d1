"""Supervised fine-tuning of a causal LM on a subset: one DiverseEvol round's ``train`` step.

Every round trains from the base weights (never from the previous round's model), on the
subset's examples rendered by :func:`curate.prompts.tokenize`, so the loss is on response
tokens only and training sees exactly the text the embedder sees. The Hugging Face
``Trainer`` runs the loop, so the same code runs on a CPU, on one GPU with bf16, and under
``accelerate launch`` (DDP or FSDP, see ``pipelines/accelerate_fsdp.yaml``).

Files: checkpoints live in a work folder beside ``--out`` (``.<name>.train-work``); the
final model is written into that folder's ``staging/`` and swapped into ``--out`` in one
rename, then the work folder is removed. A crash leaves ``--out`` as it was and the
checkpoints in place for ``resume=True``.

Reproducibility: the batch order of epoch ``e`` is drawn from a generator seeded by
``(seed, e)`` rather than the global RNG, so a run resumed from a checkpoint sees the same
batches as an uninterrupted one and ends with bit-identical weights (on the same device
and thread count; different hardware reduces floating-point sums in a different order).

Speed: a micro-batch's rows are packed into one row without padding where the model keeps
packed rows apart (:mod:`~curate.training.packing`), and bf16 in one process trains bf16
weights with fp32 master weights in the optimizer instead of autocasting fp32 weights
(:mod:`~curate.training.master`); ``train_metrics.json`` records the recipe a run used.

Modules: :mod:`~curate.training.config` (settings, results, errors),
:mod:`~curate.training.data` (dataset, padding collator, sampler),
:mod:`~curate.training.packing`, :mod:`~curate.training.master`,
:mod:`~curate.training.workdir` (work folder, resume, swap) and
:mod:`~curate.training.run` (Trainer assembly, ``train``).
"""

from curate.training.config import (
    CHECKPOINT_PREFIX,
    METRICS_FILE,
    RUN_FILE,
    WORK_SUFFIX,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
)
from curate.training.data import (
    DatasetStats,
    EpochSeededLengthSampler,
    PaddingCollator,
    SFTDataset,
    build_dataset,
)
from curate.training.run import train
from curate.training.workdir import is_model_folder, last_complete_checkpoint, work_dir_for

__all__ = [
    "CHECKPOINT_PREFIX",
    "METRICS_FILE",
    "RUN_FILE",
    "WORK_SUFFIX",
    "DatasetStats",
    "EpochSeededLengthSampler",
    "PaddingCollator",
    "SFTDataset",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "build_dataset",
    "is_model_folder",
    "last_complete_checkpoint",
    "train",
    "work_dir_for",
]
