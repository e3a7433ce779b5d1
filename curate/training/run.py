"""Trainer assembly: load the base model, build the Hugging Face ``Trainer``, run it, save
the final model and its metrics (see :mod:`curate.training` for the files and guarantees)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from curate.errors import ModelError, SubsetError
from curate.files import canonical_json, naming_path, replace_dir
from curate.progress import NO_PROGRESS, Progress
from curate.prompts import TEMPLATE_VERSION
from curate.subsets import load_subset, verify_examples
from curate.training.config import (
    CHECKPOINT_PREFIX,
    METRICS_FILE,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
)
from curate.training.data import (
    EpochSeededLengthSampler,
    PaddingCollator,
    SFTDataset,
    build_dataset,
)
from curate.training.master import MasterWeightAdamW
from curate.training.packing import ROW_ATTENTION, PackingCollator, honours_packing, use_attention
from curate.training.workdir import (
    _check_out,
    _prepare_work_dir,
    last_complete_checkpoint,
    work_dir_for,
)


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


def _recipe(model: Any, config: TrainConfig, precision: str) -> dict[str, str]:
    """How this run computes its steps (recorded in the run key and the metrics).

    ``batches``: ``packed`` (padding-free, see :mod:`curate.training.packing`) where the
    model keeps packed rows apart, else ``padded``. ``attention``: ``rows`` (curate's
    per-row kernel, :data:`~curate.training.packing.ROW_ATTENTION`) where the model takes
    it, else ``mask`` (the model's own attention, masked by transformers). ``bf16``:
    ``weights`` (bf16 parameters, fp32 master weights in the optimizer, see
    :mod:`curate.training.master`) in one process without LoRA; ``autocast`` (Trainer's
    mixed precision over fp32 weights) under ``accelerate launch`` (DDP/FSDP shard and
    reduce the parameters they are given) and with LoRA (its merge would round the frozen
    base weights to bf16); ``none`` in fp32.
    """
    bf16 = "none"
    if precision == "bf16":
        one_process = int(os.environ.get("WORLD_SIZE", "1")) == 1
        bf16 = "weights" if one_process and not config.lora else "autocast"
    if honours_packing(model, ROW_ATTENTION):
        return {"batches": "packed", "attention": "rows", "bf16": bf16}
    batches = "packed" if honours_packing(model) else "padded"
    return {"batches": batches, "attention": "mask", "bf16": bf16}


def _training_arguments(
    config: TrainConfig, checkpoints: Path, device: str, recipe: dict[str, str]
) -> Any:
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
        bf16=recipe["bf16"] == "autocast",  # autocast over fp32 weights and AdamW state
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        # a packed batch has no padding (and no attention mask to count it by)
        include_num_input_tokens_seen="all" if recipe["batches"] == "packed" else "non_padding",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )


def _make_trainer(model, args, dataset: SFTDataset, tokenizer, reporter, recipe) -> Any:
    from transformers import PrinterCallback, Trainer

    class SubsetTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            data = train_dataset if train_dataset is not None else self.train_dataset
            group = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return EpochSeededLengthSampler(data.lengths, group, self.args.seed)

    if recipe["batches"] == "packed":
        collator: Any = PackingCollator()
    else:
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id
        # Multiples of 8 feed tensor cores; on a CPU they would only add padding.
        gpu_bf16 = recipe["bf16"] != "none" and not args.use_cpu
        collator = PaddingCollator(pad_id, 8 if gpu_bf16 else None)
    optimizer = None
    if recipe["bf16"] == "weights":  # Trainer groups the parameters (weight decay) as usual
        hyper = {"lr": args.learning_rate, "eps": args.adam_epsilon}
        optimizer = (MasterWeightAdamW, hyper | {"betas": (args.adam_beta1, args.adam_beta2)})
    trainer = SubsetTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[reporter],
        optimizer_cls_and_kwargs=optimizer,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    return trainer


def _save_final(trainer: Any, tokenizer: Any, staging: Path, lora: bool) -> None:
    """A plain HF folder (LoRA merged into the weights) that AutoModelForCausalLM loads."""
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    if isinstance(optimizer, MasterWeightAdamW):
        optimizer.fp32_weights_to_model()  # save the fp32 master weights, not their rounding
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
    model.config.use_cache = False  # training has no KV cache (and one hides a packed row)
    recipe = _recipe(model, config, precision)  # before LoRA wraps the model
    if recipe["attention"] == "rows":
        use_attention(model, ROW_ATTENTION)
    if config.lora:
        model = _with_lora(model, config.lora, config.seed)

    manifest_sha256 = subset.manifest_sha256
    run = {
        **config.run_key(),
        "precision": precision,
        "subset_manifest_sha256": manifest_sha256,
        "base_model_fingerprint": base_fingerprint,
        "template_version": TEMPLATE_VERSION,
        "recipe": recipe,  # a checkpoint's optimizer state fits only its own recipe
    }
    work = work_dir_for(out)
    args = _training_arguments(config, work / "checkpoints", device, recipe)
    with args.main_process_first(desc="prepare the work folder"):
        if args.should_save:
            checkpoint = _prepare_work_dir(work, run, resume)
        else:
            checkpoint = last_complete_checkpoint(work / "checkpoints") if resume else None

    reporter = _Reporter(progress)
    trainer = _make_trainer(model, args, dataset, tokenizer, reporter, recipe)
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
        recipe=recipe,
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
    recipe,
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
        "recipe": recipe,
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
