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
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, Precision
from curate.errors import CurateError, ModelError, SubsetError
from curate.files import canonical_json, naming_path, replace_dir
from curate.progress import NO_PROGRESS, Progress
from curate.prompts import IGNORE_INDEX, TEMPLATE_VERSION, PaddingCount, pad_batch, tokenize
from curate.subsets import load_subset, verify_examples
from curate.targets import check_replaceable, holds_only

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


# ----------------------------------------------------------------------------- data


@dataclass
class DatasetStats:
    examples: int = 0
    dropped_no_response: int = 0  # truncation removed every response token
    at_max_length: int = 0  # cut by truncation (or exactly max_length long)
    prompt_tokens: int = 0
    response_tokens: int = 0


class SFTDataset(Dataset):
    """Tokenized examples in subset order: ``input_ids`` and response-only ``labels``."""

    def __init__(self, features: list[dict[str, list[int]]]):
        self.features = features
        self.lengths = [len(f["input_ids"]) for f in features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


def build_dataset(
    examples: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> tuple[SFTDataset, DatasetStats]:
    """Render and tokenize subset rows; rows left with no response token are dropped (their
    loss would be 0/0)."""
    features, stats = [], DatasetStats()
    for row in examples:
        tok = tokenize(row, tokenizer, max_length)
        n_response = sum(label != IGNORE_INDEX for label in tok.labels)
        if n_response == 0:
            stats.dropped_no_response += 1
            continue
        stats.examples += 1
        stats.at_max_length += len(tok.input_ids) >= max_length
        stats.response_tokens += n_response
        stats.prompt_tokens += len(tok.input_ids) - n_response
        features.append({"input_ids": list(tok.input_ids), "labels": list(tok.labels)})
    return SFTDataset(features), stats


@dataclass
class PaddingCollator:
    """Trainer's collator over :func:`curate.prompts.pad_batch` (right padding, -100 labels);
    counts real tokens and padded slots."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding: PaddingCount = field(default_factory=PaddingCount)

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = pad_batch(features, self.pad_token_id, self.pad_to_multiple_of)
        self.padding.add(batch["attention_mask"])
        return batch


class EpochSeededLengthSampler(Sampler[int]):
    """Length-grouped shuffling (Trainer's ``group_by_length``) drawn from ``(seed, epoch)``.

    Trainer's own sampler draws from the global RNG, whose state at the start of an epoch
    is not what a resumed run restores; seeding per epoch makes resumption exact.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


# ----------------------------------------------------------------------------- files


def work_dir_for(out: Path) -> Path:
    """Checkpoints and staging live beside ``out`` (same filesystem, so the final move is a
    rename) and never inside it."""
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest ``checkpoint-N`` that finished saving (Trainer writes trainer_state.json last)."""
    done = [
        p
        for p in checkpoints.glob(f"{CHECKPOINT_PREFIX}*")
        if p.name[len(CHECKPOINT_PREFIX) :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def _prepare_work_dir(work: Path, run: dict[str, Any], resume: bool) -> Path | None:
    """Start a fresh work folder, or with ``resume`` reuse one whose run matches; returns the
    checkpoint to resume from (None: start at step 0)."""
    run_file = work / RUN_FILE
    if resume and run_file.is_file():
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        if saved != run:
            changed = sorted(k for k in set(saved) | set(run) if saved.get(k) != run.get(k))
            raise TrainingError(
                f"{work}: its checkpoints come from a run with different {', '.join(changed)}; "
                "drop --resume to start over"
            )
        checkpoint = last_complete_checkpoint(work / "checkpoints")
        if checkpoint is not None:
            for partial in (work / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*"):
                if partial != checkpoint and not (partial / "trainer_state.json").is_file():
                    shutil.rmtree(partial, ignore_errors=True)
            return checkpoint
    shutil.rmtree(work, ignore_errors=True)
    (work / "checkpoints").mkdir(parents=True)
    run_file.write_text(canonical_json(run), encoding="utf-8")
    return None


def _check_out(out: Path, subset_path: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a folder")
    if subset_path.resolve().is_relative_to(out.resolve()):
        raise TrainingError(f"--out {out}: would replace the subset folder {subset_path}")
    # a model folder curate wrote (a rerun) is replaced; any other folder is refused
    check_replaceable(out, "model folder", is_model_folder, force=True)


def is_model_folder(path: Path) -> bool:
    """A folder :func:`train` wrote: its metrics file beside the weights, no subfolders."""
    return holds_only(path, ("*",), (METRICS_FILE,))


# ----------------------------------------------------------------------------- training


def _load_base(config: TrainConfig) -> tuple[Any, Any, str]:
    """(model, tokenizer, fingerprint) of the base weights, on CPU; Trainer places it."""
    from curate.models import load_causal_lm, resolve_model, weights_fingerprint

    resolved = resolve_model(config.base_model)
    model, tokenizer = load_causal_lm(resolved, device="cpu", dtype=torch.float32)
    return model, tokenizer, weights_fingerprint(resolved)


def _with_lora(model: Any, rank: int, seed: int) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise TrainingError("--lora needs peft: pip install 'curate[lora]'") from None
    from transformers import set_seed

    set_seed(seed)  # LoRA's A matrices are drawn at random
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # peft has no default target modules for this architecture
        raise ModelError(f"--lora: {str(err).splitlines()[0]}") from None


class _Reporter:
    """A Trainer callback that reports optimizer steps to ``progress`` and keeps the latest
    loss (the class is built on first use so importing this module does not import
    transformers). Only the main process reports."""

    def __new__(cls, progress: Progress) -> Any:  # a Reporter (a TrainerCallback), not a _Reporter
        from transformers import TrainerCallback

        class Reporter(TrainerCallback):
            loss: float | None = None
            tokens_at_begin = 0  # restored from the checkpoint when resuming

            reported = 0  # steps already passed to progress.advance

            def _emit(self, state) -> None:
                if state.is_world_process_zero and state.global_step > self.reported:
                    progress.advance(state.global_step - self.reported)
                    self.reported = state.global_step

            def on_train_begin(self, args, state, control, **kwargs):
                self.tokens_at_begin = state.num_input_tokens_seen
                if state.is_world_process_zero:
                    progress.start(state.max_steps, "steps", "train")
                    self._emit(state)  # a resumed run starts at its checkpoint's step

            def on_step_end(self, args, state, control, **kwargs):
                self._skip_final_checkpoint(state, control)

            def on_epoch_end(self, args, state, control, **kwargs):
                self._skip_final_checkpoint(state, control)

            @staticmethod
            def _skip_final_checkpoint(state, control) -> None:
                # The final model is saved right after the loop; a checkpoint of the last step
                # (weights + two AdamW moments: ~12 bytes per parameter) would be thrown away.
                if state.global_step >= state.max_steps:
                    control.should_save = False

            def on_log(self, args, state, control, logs=None, **kwargs):
                # Trainer logs every step (logging_steps=1), after the step and before saving.
                if logs and "loss" in logs:
                    self.loss = float(logs["loss"])
                    self._emit(state)

        return Reporter()


def _training_arguments(config: TrainConfig, checkpoints: Path, device: str, precision: str) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of total steps
        weight_decay=config.weight_decay,
        logging_steps=1,
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=1,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",  # mixed precision: autocast, fp32 weights and AdamW state
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )


def _make_trainer(model, args, dataset: SFTDataset, tokenizer, reporter) -> Any:
    from transformers import PrinterCallback, Trainer

    class SubsetTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            data = train_dataset if train_dataset is not None else self.train_dataset
            group = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return EpochSeededLengthSampler(data.lengths, group, self.args.seed)

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    trainer = SubsetTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        # Multiples of 8 feed tensor cores; on a CPU they would only add padding.
        data_collator=PaddingCollator(pad_id, 8 if args.bf16 and not args.use_cpu else None),
        processing_class=tokenizer,
        callbacks=[reporter],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    return trainer


def _save_final(trainer: Any, tokenizer: Any, staging: Path, lora: bool) -> None:
    """A plain HF folder (LoRA merged into the weights) that AutoModelForCausalLM loads."""
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.config.use_cache = True  # Trainer turns the KV cache off for training
    if lora:
        if trainer.args.should_save:
            merged = model.merge_and_unload()
            merged.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    else:
        trainer.save_model(str(staging))  # gathers FSDP shards when needed
        if trainer.args.should_save:
            (staging / "training_args.bin").unlink(missing_ok=True)


def train(
    subset_dir: str | Path,
    out: str | Path,
    config: TrainConfig,
    resume: bool = False,
    progress: Progress = NO_PROGRESS,
) -> TrainResult:
    """Fine-tune ``config.base_model`` on the subset and write the model folder to ``out``.

    Checks the subset, settings and model before any file is written; raises
    :class:`TrainingInterrupted` (checkpoints kept) if the loop stops early.
    """
    from curate.models import resolve_device, resolve_precision

    config.check()
    subset = load_subset(subset_dir)
    verify_examples(subset)  # as `subsets verify` and `select --parent` check it
    if not subset.examples:
        raise SubsetError(f"{subset.path}: subset is empty (0 examples); nothing to train on")
    out = Path(out)
    _check_out(out, subset.path)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    model, tokenizer, base_fingerprint = _load_base(config)
    dataset, stats = build_dataset(subset.examples, tokenizer, config.max_length)
    if not len(dataset):
        raise SubsetError(
            f"{subset.path}: no example keeps a response token at --max-length {config.max_length}"
        )
    if config.lora:
        model = _with_lora(model, config.lora, config.seed)

    manifest_sha256 = subset.manifest_sha256
    run = {
        **config.run_key(),
        "precision": precision,
        "subset_manifest_sha256": manifest_sha256,
        "base_model_fingerprint": base_fingerprint,
        "template_version": TEMPLATE_VERSION,
    }
    work = work_dir_for(out)
    args = _training_arguments(config, work / "checkpoints", device, precision)
    with args.main_process_first(desc="prepare the work folder"):
        if args.should_save:
            checkpoint = _prepare_work_dir(work, run, resume)
        else:
            checkpoint = last_complete_checkpoint(work / "checkpoints") if resume else None

    reporter = _Reporter(progress)
    trainer = _make_trainer(model, args, dataset, tokenizer, reporter)
    if config.lora and trainer.is_fsdp_enabled:
        raise TrainingError("--lora cannot be merged from FSDP shards; use DDP or one GPU")
    started = time.perf_counter()
    try:
        with naming_path(work):  # a checkpoint that meets a full disk names the folder
            output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except KeyboardInterrupt:
        saved = last_complete_checkpoint(work / "checkpoints")
        where = f"last checkpoint {saved}" if saved else f"no checkpoint yet in {work}"
        raise TrainingInterrupted(
            f"training stopped at step {trainer.state.global_step} ({where}); rerun with --resume"
        ) from None
    seconds = time.perf_counter() - started

    staging = work / "staging"
    try:
        with naming_path(out):  # a full disk: one line naming --out; the partial save goes
            _save_final(trainer, tokenizer, staging, bool(config.lora))
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    state = trainer.state
    resumed_step = int(checkpoint.name[len(CHECKPOINT_PREFIX) :]) if checkpoint else 0
    metrics = _metrics(
        config,
        subset,
        manifest_sha256,
        base_fingerprint,
        stats,
        state,
        output.metrics,
        seconds=seconds,
        resumed_step=resumed_step,
        tokens_at_begin=reporter.tokens_at_begin,
        device=device,
        world_size=args.world_size,
        precision=precision,
        padding=trainer.data_collator.padding.fraction,
    )
    trainer.accelerator.wait_for_everyone()
    if args.should_save:
        with naming_path(out):
            (staging / METRICS_FILE).write_text(canonical_json(metrics), encoding="utf-8")
            out.parent.mkdir(parents=True, exist_ok=True)
            replace_dir(staging, out)
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(out, metrics, is_main_process=args.should_save)


def _metrics(
    config,
    subset,
    manifest_sha256,
    base_fingerprint,
    stats,
    state,
    train_metrics,
    *,
    seconds,
    resumed_step,
    tokens_at_begin,
    device,
    world_size,
    precision,
    padding,
) -> dict[str, Any]:
    history = [
        {k: entry[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in entry}
        for entry in state.log_history
        if "loss" in entry
    ]
    steps_now = state.global_step - resumed_step
    tokens_now = state.num_input_tokens_seen - tokens_at_begin
    return {
        "subset": {
            "name": subset.name,
            "path": str(subset.path),
            "manifest_sha256": manifest_sha256,
            "examples": len(subset.examples),
        },
        "base_model": config.base_model,
        "base_model_fingerprint": base_fingerprint,
        "template_version": TEMPLATE_VERSION,
        "config": config.run_key(),
        "precision": precision,
        "data": asdict(stats),
        "steps": state.global_step,
        "epochs": state.epoch,
        "loss_history": history,
        "final_loss": history[-1]["loss"] if history else None,
        "mean_loss": train_metrics.get("train_loss"),
        "tokens_seen": state.num_input_tokens_seen,
        "timing": {  # this invocation only (a resumed run counts from its checkpoint)
            "device": device,
            "world_size": world_size,
            "resumed_from_step": resumed_step or None,
            "seconds": round(seconds, 3),
            "seconds_per_step": round(seconds / steps_now, 4) if steps_now else None,
            "tokens_per_second": round(tokens_now / seconds, 1) if seconds else None,
            "padding_fraction": padding,  # padded slots / all slots in the batches run
        },
    }
