"""`curate train` past one process: `accelerate launch` with two gloo processes on the CPU,
as plain DDP and with the shipped FSDP config, against one process on the same global batch.

The two processes each take half of the one-process batch (batch 2 × 2 ranks = batch 4), so
the loss curve must match the single process's up to the order floating-point sums run in:
tolerance 2e-3 nats per logged step (measured: 1e-4). The saved folder is a plain model
that loads and evaluates, and a run killed after a checkpoint resumes to the same curve.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOLERANCE = 2e-3
TRAIN = ["--batch-size", "2", "--max-length", "64", "--epochs", "4", "--lr", "1e-3",
         "--device", "cpu", "--save-steps", "2"]  # fmt: skip
LAUNCH = {
    "ddp": ["--multi_gpu"],  # DDP; on a machine without GPUs the Trainer picks gloo
    "fsdp": ["--config_file", str(ROOT / "pipelines" / "accelerate_fsdp.yaml")],
}


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}


def _accelerate(kind: str, subset: Path, model: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "accelerate"), "launch", *LAUNCH[kind], "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         str(BIN / "curate"), "train", str(subset), "--base-model", str(model),
         "--out", str(out), *TRAIN, *extra],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("accelerate launch did not finish")
    assert proc.returncode == 0, err[-3000:]
    return err


def _losses(model: Path) -> list[float]:
    metrics = json.loads((model / "train_metrics.json").read_text())
    return [h["loss"] for h in metrics["loss_history"]]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_lm, sample_pool) -> tuple[Path, Path]:
    """A 16-row subset and the model one process trains on it at batch 4."""
    from curate.ingest import ingest
    from curate.select import SelectRequest, select
    from curate.store import Store
    from curate.training import TrainConfig, train

    root = tmp_path_factory.mktemp("ddp")
    store = Store(root / "db")
    ingest(store, [str(sample_pool)])
    subset = select(store, SelectRequest(strategy="random", budget=16, name="s")).write(root / "s")
    config = TrainConfig(str(tiny_lm), epochs=4, lr=1e-3, max_length=64, batch_size=4,
                         device="cpu", save_steps=2, precision="fp32")  # fmt: skip
    train(subset.path, root / "one", config)
    return subset.path, root / "one"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_two_processes_follow_the_one_process_loss_curve(kind, one_process, tiny_lm, tmp_path, cli):
    subset, one = one_process
    out = tmp_path / kind
    _finish(_accelerate(kind, subset, tiny_lm, out))
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["timing"]["world_size"] == 2
    reference, losses = _losses(one), _losses(out)
    assert len(losses) == len(reference) >= 6
    assert max(abs(a - b) for a, b in zip(losses, reference, strict=True)) < TOLERANCE
    eval_set = ROOT / "data" / "sample" / "eval.jsonl"
    scored = cli("eval", "model", out, "--eval-set", eval_set, "--limit", "3",
                 "--max-length", "64", "--device", "cpu", "--json")  # fmt: skip
    assert scored.code == 0, scored.err  # a plain folder: the FSDP shards were gathered


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_two_process_run_resumes_to_the_same_curve(one_process, tiny_lm, tmp_path):
    subset, _ = one_process
    longer = ("--epochs", "12")  # time to kill it between checkpoints
    whole = tmp_path / "whole"
    _finish(_accelerate("ddp", subset, tiny_lm, whole, *longer))
    out = tmp_path / "ddp"
    work = tmp_path / f".{out.name}.train-work" / "checkpoints"
    proc = _accelerate("ddp", subset, tiny_lm, out, *longer)
    deadline = time.monotonic() + 240
    while not (work / "checkpoint-4" / "trainer_state.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint-4"
        time.sleep(0.02)
    import psutil

    everyone = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in everyone:  # the launcher and both ranks (torch starts them in sessions of their own)
        os.kill(pid, signal.SIGKILL)
    proc.communicate()
    assert not out.exists(), "the run ended before it was killed"
    _finish(_accelerate("ddp", subset, tiny_lm, out, *longer, "--resume"))
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["timing"]["resumed_from_step"] >= 4
    reference, losses = _losses(whole), _losses(out)
    assert len(losses) == len(reference) >= 18
    assert max(abs(a - b) for a, b in zip(losses, reference, strict=True)) < TOLERANCE
