"""Each setting declared once: the command line, the API and the library derive from it.

- precision and device: one default (`curate.devices`), parsed where they enter;
- `curate select`'s own options, which a strategy parameter may not shadow, are read from
  the command itself (a hand-kept list once missed ``--whole-pool``);
- ``TrainConfig`` / ``ModelEvalSettings``: every field a command exposes is an option of
  the same name with the same default, and the command builds the settings from them.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import typer

import curate
from curate.cli import app
from curate.cli.plugin_options import command_options
from curate.devices import DEFAULT_DEVICE, DEFAULT_PRECISION, PRECISIONS, parse_precision
from curate.errors import UsageError
from curate.evaluation.model_eval import ModelEvalSettings
from curate.plugins import Param
from curate.strategies import STRATEGIES
from curate.strategies.kcenter import kcenter_greedy
from curate.training import TrainConfig

ROOT = typer.main.get_command(app)


def command(*path: str):
    cmd = ROOT
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd


def options(cmd) -> dict[str, object]:
    """Python name → default of every option and argument of ``cmd``."""
    return {p.name: p.default for p in cmd.params if p.name}


def field_defaults(cls: type) -> dict[str, object]:
    return {
        f.name: (f.default if f.default is not dataclasses.MISSING else None)
        for f in dataclasses.fields(cls)
    }


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("path", [("embed",), ("train",), ("eval", "model"), ("eval", "round")])
def test_every_command_defaults_to_the_one_precision_and_device(path):
    declared = options(command(*path))
    assert declared["precision"] == DEFAULT_PRECISION
    assert declared["device"] == DEFAULT_DEVICE


def test_the_library_and_the_api_default_to_the_same_precision():
    from curate.embedders import load_embedder
    from curate.embedders.base import Embedder

    assert TrainConfig.precision == ModelEvalSettings.precision == DEFAULT_PRECISION
    for function in (load_embedder, Embedder.__init__, curate.Pool.embed):
        assert inspect.signature(function).parameters["precision"].default == DEFAULT_PRECISION
    assert options(command("select"))["device"] == DEFAULT_DEVICE
    assert inspect.signature(curate.Pool.select).parameters["device"].default == DEFAULT_DEVICE


def test_a_bad_precision_fails_at_the_api_edge_before_any_work(tmp_path):
    assert [parse_precision(p) for p in PRECISIONS] == list(PRECISIONS)
    with pytest.raises(UsageError, match=r"precision 'fp16': choose from auto, fp32, bf16"):
        parse_precision("fp16")
    # nothing is read: neither the subset nor the model exists
    with pytest.raises(UsageError, match=r"precision 'fp16': choose from auto, fp32, bf16"):
        curate.train(tmp_path / "no-subset", "no-model", tmp_path / "out", precision="fp16")
    with pytest.raises(UsageError, match=r"precision 'half': choose from auto, fp32, bf16"):
        curate.evaluate("no-model", tmp_path / "no-eval.jsonl", precision="half")
    with pytest.raises(UsageError, match=r"precision 'fp16': choose from auto, fp32, bf16"):
        curate.Pool(tmp_path / "db").embed("lm:no-model", precision="fp16")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- select options


def _select_context():
    select = command("select")
    root = ROOT.context_class(ROOT, info_name="curate")
    return select.context_class(select, info_name="select", parent=root)


def test_reserved_select_options_are_read_from_the_command():
    reserved = command_options(_select_context())
    for name, _ in options(command("select")).items():
        if name != "ctx":
            assert name.removesuffix("_out") in reserved  # json_out is --json
    # the ones the hand-kept list had, and the ones it missed
    assert {"db", "budget", "add", "strategy", "json", "help", "debug", "version"} <= reserved
    assert {"whole_pool", "include_duplicates", "include_contaminated"} <= reserved
    assert not {p.name for name in STRATEGIES.names() for p in STRATEGIES.get(name).parameters} & (
        reserved
    )


def test_a_strategy_parameter_shadowing_a_select_option_is_one_clear_error(
    pool_db, cli, monkeypatch, tmp_path
):
    from curate.strategies.base import VectorStrategy

    class Shadow(VectorStrategy):
        name = "shadow"
        summary = "declares a parameter named like a select option"
        parameters = (Param("whole_pool", bool, False, "never reachable from the CLI"),)

        @staticmethod
        def function(vectors, chosen, k, seed, *, whole_pool, progress):
            return kcenter_greedy(vectors, chosen, k, seed, progress=progress)

    monkeypatch.setitem(STRATEGIES._builtins, "shadow", Shadow)
    db, _, _ = pool_db
    result = cli("select", "--db", db, "--embeddings", "plain", "--strategy", "shadow",
                 "--budget", "3", "--out", tmp_path / "s")  # fmt: skip
    assert result.code != 0
    assert "strategy 'shadow' declares parameter 'whole_pool', which is a command option" in (
        result.err
    )
    assert not (tmp_path / "s").exists()
    selection = curate.Pool(db).select(3, strategy="shadow", embeddings="plain")  # the API: fine
    assert len(selection.ids) == 3 and np.all([isinstance(i, str) for i in selection.ids])


# ----------------------------------------------------------------------------- train / eval

COMMAND_ONLY = {
    "train": {"subset_dir", "out", "resume", "json_out"},
    "eval model": {"model_dir", "eval_set", "out", "db", "json_out"}
    | {"judge", "judge_model", "judge_key_env", "judge_against", "judge_timeout", "judge_workers"},
    "eval round": {"subset", "model", "eval_set", "out", "db", "embeddings", "json_out"},
}
NOT_ON_THE_COMMAND_LINE = {  # settings only the API sets (the paper's fixed schedule)
    "train": {"warmup_ratio", "scheduler", "weight_decay"},
    "eval model": {"judge"},  # built from the --judge-* options
    "eval round": {"generate", "max_new_tokens", "temperature", "seed", "judge"},
}


@pytest.mark.parametrize(
    "path,cls",
    [(("train",), TrainConfig), (("eval", "model"), ModelEvalSettings),
     (("eval", "round"), ModelEvalSettings)],
)  # fmt: skip
def test_settings_options_are_the_fields_with_the_fields_defaults(path, cls):
    key = " ".join(path)
    declared = options(command(*path))
    fields = field_defaults(cls)
    on_cli = set(fields) - NOT_ON_THE_COMMAND_LINE[key]
    assert set(declared) - COMMAND_ONLY[key] == on_cli
    for name in on_cli:
        assert declared[name] == fields[name], f"{key} --{name}: {declared[name]!r} vs the field"
