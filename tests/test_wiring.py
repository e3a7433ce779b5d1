"""Wiring: each command's arguments reach its library call unchanged.

For every command, the library function it calls is replaced by a recorder that binds the
call to the real function's signature and stops the command (exit 97); the test then
checks every bound argument against what was typed. A command that swapped two positional
arguments, dropped an option or kept a default where a value was given fails here, before
any functional test has to notice a wrong figure.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from curate.errors import CurateError


class Reached(CurateError):
    """The recorder's stop: the library call was reached."""

    exit_code = 97


def record(monkeypatch, target: str) -> list[dict[str, Any]]:
    """Replace ``module.function`` by a recorder; each call's arguments, by name."""
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    calls: list[dict[str, Any]] = []

    def recorder(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        raise Reached(f"reached {target}")

    monkeypatch.setattr(module, name, recorder)
    return calls


def plain(value: Any) -> Any:
    """What an argument is, for comparing: a Store by its folder, settings by their fields."""
    if type(value).__name__ == "Store":
        return Path(value.path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


T = "{tmp}"  # replaced by the test's tmp_path

# (command line, library function it calls, expected arguments by name)
CASES: dict[str, tuple[list[str], str, dict[str, Any]]] = {
    "ingest": (
        ["ingest", "a.jsonl", "b.json", "--db", f"{T}/db", "--format", "alpaca",
         "--source-name", "mine", "--skip-invalid", "--rejects", f"{T}/rej.jsonl"],
        "curate.ingest.ingest",
        {"store": f"{T}/db", "sources": ["a.jsonl", "b.json"], "fmt": "alpaca",
         "source_name": "mine", "skip_invalid": True, "rejects_path": f"{T}/rej.jsonl"},
    ),
    "pool": (["pool", "--db", f"{T}/db"], "curate.pool.summarize", {"store": f"{T}/db"}),
    "info": (["info", "--db", f"{T}/db"], "curate.pool.summarize", {"store": f"{T}/db"}),
    "embed": (
        ["embed", "--db", f"{T}/db", "--embedder", "lm:some/model", "--max-length", "77",
         "--device", "cpu", "--precision", "bf16", "--scores"],
        "curate.embedders.load_embedder",
        {"spec": "lm:some/model", "max_length": 77, "device": "cpu", "precision": "bf16",
         "scores": True},
    ),
    "dedup": (
        ["dedup", "--db", f"{T}/db", "--method", "embedding", "--threshold", "0.8", "--keep",
         "longest", "--fields", "prompt", "--shingle", "4", "--num-perm", "64",
         "--embeddings", "e"],
        "curate.hygiene.dedup.dedup",
        {"store": f"{T}/db",
         "settings": {"method": "embedding", "threshold": 0.8, "keep": "longest",
                      "fields": "prompt", "shingle": 4, "num_perm": 64, "seed": 1,
                      "embeddings": "e"}},
    ),
    "decontaminate": (
        ["decontaminate", "--against", "e1.jsonl", "--against", "e2.jsonl", "--db", f"{T}/db",
         "--ngram", "9",
         "--min-overlap", "0.4", "--fields", "all"],
        "curate.hygiene.decontaminate.decontaminate",
        {"store": f"{T}/db",
         "settings": {"against": ("e1.jsonl", "e2.jsonl"), "ngram": 9, "min_overlap": 0.4,
                     "fields": "all"}},
    ),
    "select": (
        ["select", "--db", f"{T}/db", "--budget", "5", "--strategy", "kcenter", "--embeddings",
         "e", "--parent", f"{T}/p", "--seed", "3", "--name", "n", "--include-duplicates",
         "--include-contaminated", "--device", "cpu", "--metric", "cosine", "--whiten", "4"],
        "curate.select.select",
        {"store": f"{T}/db",
         "request": {"strategy": "kcenter", "params": {"metric": "cosine", "whiten": "4"},
                     "budget": 5, "add": None, "embeddings": "e", "parent": f"{T}/p",
                     "seed": 3, "name": "n", "device": "cpu", "whole_pool": False,
                     "include_duplicates": True, "include_contaminated": True}},
    ),
    "select --add --whole-pool": (
        ["select", "--db", f"{T}/db", "--add", "4", "--whole-pool", "--strategy", "random",
         "--out", f"{T}/dir/rd_2"],
        "curate.select.select",
        {"request": {"strategy": "random", "params": {}, "budget": None, "add": 4,
                     "embeddings": None, "parent": None, "seed": 0, "name": "rd_2",
                     "device": "auto", "whole_pool": True, "include_duplicates": False,
                     "include_contaminated": False}},
    ),
    "subsets list": (["subsets", "list", "--dir", f"{T}/s"], "curate.subsets.list_subsets",
                     {"root": f"{T}/s"}),
    "subsets show": (["subsets", "show", "rd_1", "--dir", f"{T}/s"],
                     "curate.subsets.resolve_subset_dir", {"ref": "rd_1", "root": f"{T}/s"}),
    "subsets verify": (["subsets", "verify", "rd_1", "--dir", f"{T}/s"],
                       "curate.subsets.resolve_subset_dir", {"ref": "rd_1", "root": f"{T}/s"}),
    "subsets diff": (["subsets", "diff", "rd_1", "rd_2", "--dir", f"{T}/s"],
                     "curate.subsets.resolve_subset_dir", {"ref": "rd_1", "root": f"{T}/s"}),
    "subsets export": (
        ["subsets", "export", f"{T}/s/rd_1", "--format", "sharegpt", "--out", f"{T}/x.json",
         "--force"],
        "curate.exports.export_subset",
        {"path": f"{T}/s/rd_1", "fmt": "sharegpt", "out": f"{T}/x.json", "force": True},
    ),
    "train": (
        ["train", f"{T}/s/rd_1", "--base-model", "smollm2", "--out", f"{T}/m", "--epochs", "2",
         "--lr", "0.001", "--max-length", "128", "--batch-size", "3", "--grad-accum", "2",
         "--seed", "5", "--lora", "8", "--resume", "--device", "cpu", "--precision", "fp32",
         "--max-steps", "9", "--save-steps", "4"],
        "curate.training.train",
        {"subset_dir": f"{T}/s/rd_1", "out": f"{T}/m", "resume": True,
         "config": {"base_model": "smollm2", "epochs": 2.0, "lr": 0.001, "max_length": 128,
                    "batch_size": 3, "grad_accum": 2, "seed": 5, "lora": 8, "max_steps": 9,
                    "save_steps": 4, "device": "cpu", "precision": "fp32",
                    "warmup_ratio": 0.03, "scheduler": "cosine", "weight_decay": 0.0}},
    ),
    "eval subset": (
        ["eval", "subset", f"{T}/s/rd_1", "--db", f"{T}/db", "--embeddings", "e"],
        "curate.evaluation.diversity.evaluate_subset",
        {"store": f"{T}/db", "subset_dir": f"{T}/s/rd_1", "embeddings": "e", "metric": None},
    ),
    "eval model": (
        ["eval", "model", f"{T}/m", "--eval-set", "q.jsonl", "--limit", "7", "--max-length",
         "256", "--batch-size", "2", "--device", "cpu", "--precision", "bf16", "--generate",
         "--max-new-tokens", "33", "--temperature", "0.5", "--seed", "4", "--out",
         f"{T}/r.json"],
        "curate.evaluation.model_eval.evaluate_model",
        {"model_spec": f"{T}/m", "eval_set_path": "q.jsonl", "out": f"{T}/r.json",
         "settings": {"limit": 7, "max_length": 256, "batch_size": 2, "device": "cpu",
                      "generate": True, "max_new_tokens": 33, "temperature": 0.5, "seed": 4,
                      "judge": None, "precision": "bf16"}},
    ),
    "eval model --judge": (
        ["eval", "model", "smollm2", "--eval-set", "q.jsonl", "--judge", "http://j/v1",
         "--judge-model", "gpt-x", "--judge-key-env", "KEY", "--judge-against", f"{T}/a.jsonl",
         "--judge-timeout", "5", "--judge-workers", "2", "--out", f"{T}/r.json"],
        "curate.evaluation.model_eval.evaluate_model",
        {"settings": {"limit": None, "max_length": 1024, "batch_size": 4, "device": "auto",
                      "generate": True, "max_new_tokens": 256, "temperature": 0.0, "seed": 0,
                      "precision": "auto",
                      "judge": {"url": "http://j/v1", "model": "gpt-x", "api_key_env": "KEY",
                                "against": f"{T}/a.jsonl", "timeout_s": 5.0, "workers": 2,
                                "max_retries": 5}}},
    ),
    "eval round": (
        ["eval", "round", "--subset", f"{T}/s/rd_1", "--model", f"{T}/m", "--eval-set",
         "q.jsonl", "--out", f"{T}/r.json", "--db", f"{T}/db", "--embeddings", "e", "--limit",
         "3", "--max-length", "64", "--batch-size", "1", "--device", "cpu", "--precision",
         "fp32"],
        "curate.evaluation.rounds.evaluate_round",
        {"store": f"{T}/db", "subset_dir": f"{T}/s/rd_1", "model_spec": f"{T}/m",
         "embeddings": "e", "eval_set_path": "q.jsonl", "out": f"{T}/r.json",
         "settings": {"limit": 3, "max_length": 64, "batch_size": 1, "device": "cpu",
                      "generate": False, "max_new_tokens": 256, "temperature": 0.0, "seed": 0,
                      "judge": None, "precision": "fp32"}},
    ),
    "eval compare": (
        ["eval", "compare", "a1.json,a2.json", "b1.json", "--n-boot", "500", "--seed", "8"],
        "curate.evaluation.compare.compare_runs",
        {"side_a": ["a1.json", "a2.json"], "side_b": ["b1.json"], "n_boot": 500, "seed": 8},
    ),
    "plot": (
        ["plot", "m/rd_0", "m/rd_1", "--out", f"{T}/plots"],
        "curate.evaluation.plots.plot_rounds",
        {"run_dirs": ["m/rd_0", "m/rd_1"], "out_dir": f"{T}/plots"},
    ),
    "plot --subset": (
        ["plot", "--subset", "s/rd_0", "--subset", "s/rd_1", "--db", f"{T}/db", "--embeddings",
         "e", "--out", f"{T}/plots", "--projection", "umap"],
        "curate.evaluation.plots.plot_pool_map",
        {"store": f"{T}/db", "embeddings": "e", "subset_dirs": ["s/rd_0", "s/rd_1"],
         "out_file": f"{T}/plots/pool_map.png", "method": "umap"},
    ),
    "report": (
        ["report", "--repo", f"{T}/repo", "--out", f"{T}/rep", "--baseline", "longest",
         "--strategy", "typical", "--n-boot", "500"],
        "curate.report.report_repository",
        {"repo": f"{T}/repo", "out": f"{T}/rep", "baseline": "longest", "strategy": "typical",
         "n_boot": 500},
    ),
    "init": (
        ["init", f"{T}/proj", "--profile", "paper", "--force", "--no-samples"],
        "curate.scaffold.scaffold",
        {"root": f"{T}/proj", "profile": "paper", "force": True, "samples": False},
    ),
    "init --check": (
        ["init", f"{T}/proj", "--check", "--stamp", f"{T}/ok"],
        "curate.scaffold.check_folder",
        {"root": f"{T}/proj", "stamp": f"{T}/ok"},
    ),
}  # fmt: skip


def _filled(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        return value.replace(T, str(tmp))
    if isinstance(value, dict):
        return {k: _filled(v, tmp) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_filled(v, tmp) for v in value)
    return value


def _same(got: Any, want: Any, where: str) -> None:
    """``got`` (plain()) matches ``want``: paths as strings, dicts key by key."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {got!r}"
        assert set(got) == set(want), f"{where}: fields {sorted(got)} vs {sorted(want)}"
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple) and isinstance(got, list | tuple):
        assert len(got) == len(want), f"{where}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(got, Path):
        assert got == Path(want), f"{where}: {got} vs {want}"
    else:
        assert got == want and type(got) is type(want), f"{where}: {got!r} vs {want!r}"


@pytest.mark.parametrize("case", list(CASES))
def test_arguments_reach_the_library_call_unchanged(case, cli, monkeypatch, tmp_path):
    argv, target, expected = _filled(CASES[case], tmp_path)
    (tmp_path / "s" / "rd_1").mkdir(parents=True)  # a subset folder to resolve by path
    (tmp_path / "s" / "rd_1" / "manifest.json").write_text("{}")
    calls = record(monkeypatch, target)
    result = cli(*argv)
    assert result.code == 97 and f"reached {target}" in result.err, result.err
    assert len(calls) == 1
    for name, want in expected.items():
        _same(plain(calls[0][name]), want, name)


def _leaves(cmd: Any, path: tuple[str, ...] = ()) -> list[str]:
    import typer

    if not hasattr(cmd, "list_commands"):
        return [" ".join(path)]
    ctx = typer.Context(cmd)
    return [
        leaf
        for name in cmd.list_commands(ctx)
        for leaf in _leaves(cmd.get_command(ctx, name), (*path, name))
    ]


def test_every_command_has_a_wiring_case():
    from curate.cli import command

    commands = set(_leaves(command()))
    assert len(commands) >= 19
    covered = {case.split(" --")[0] for case in CASES}
    assert commands <= covered, f"no wiring case for {sorted(commands - covered)}"
