"""The DVC pipeline: templates, `curate init`, and the rounds run by the real `dvc repro`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curate.errors import CurateError
from curate.scaffold import (
    PROFILES,
    TEMPLATES,
    check_folder,
    pipeline_files,
    round_order,
    scaffold,
    validate_params,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------------------- templates
def test_root_pipeline_is_the_default_template():
    files = pipeline_files("default")
    for name, text in files.items():
        assert (ROOT / name).read_text(encoding="utf-8") == text, (
            f"{name} at the project root differs from pipelines/; copy the template over it"
        )


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_are_valid_and_chain_their_rounds(profile):
    params = yaml.safe_load(pipeline_files(profile)["params.yaml"])
    rounds = validate_params(params, profile)
    assert rounds[0] == "rd_0"
    assert rounds == [f"rd_{r}" for r in range(len(rounds))]
    assert all(params["rounds"][f"rd_{r}"] == f"rd_{r - 1}" for r in range(1, len(rounds)))


def test_paper_profile_has_the_papers_budget():
    params = yaml.safe_load(pipeline_files("paper")["params.yaml"])
    assert (params["init_size"], params["n_query"], len(params["rounds"])) == (100, 100, 10)
    assert (params["train"]["epochs"], params["max_length"]) == (3, 512)


def test_default_profile_runs_offline_on_the_sample_data():
    params = yaml.safe_load(pipeline_files("default")["params.yaml"])
    assert params["base_model"] == "smollm2"
    assert (ROOT / params["pool"]).is_file()
    assert (ROOT / params["eval"]["set"]).is_file()


def test_every_stage_runs_a_declared_command_on_declared_inputs():
    """Each round-r stage reads only paths that an earlier stage writes or the user provides."""
    pipeline = yaml.safe_load((TEMPLATES / "dvc.yaml").read_text())["stages"]
    for name, stage in pipeline.items():
        body = stage.get("do", stage)
        assert body["cmd"].startswith("curate "), name
        for dep in body.get("deps", []):
            assert dep.split("/")[0] in ("${pool}", "${db}", "data", "${eval.set}"), (name, dep)
    assert "${item}" in pipeline["select"]["do"]["cmd"]  # grows from the previous round
    assert "--budget" not in pipeline["select"]["do"]["cmd"]


# ---------------------------------------------------------------------------- validation
def _default_params() -> dict:
    return yaml.safe_load(pipeline_files("default")["params.yaml"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.pop("pool"), "`pool` is missing"),
        (lambda p: p.update(n_query=0), "`n_query` must be a positive integer"),
        (lambda p: p.update(init_size="10"), "`init_size` must be a positive integer"),
        (lambda p: p["train"].update(lr=-1), "`train.lr` must be a positive number"),
        (lambda p: p["eval"].pop("limit"), "`eval.limit` is missing"),
        (lambda p: p.update(strategy="kcentre"), "choose from kcenter, random"),
        (lambda p: p.update(seed=None), "`seed` must be an integer"),
        (lambda p: p["rounds"].update(rd_4="rd_9"), "rounds.rd_4 grows from 'rd_9'"),
        (lambda p: p["rounds"].update(rd_0="rd_1"), "rounds.rd_0 is not a usable round name"),
        (lambda p: p.update(rounds={}), "`rounds` must map each round"),
    ],
)
def test_validate_params_names_the_bad_field(edit, message):
    params = _default_params()
    edit(params)
    with pytest.raises(CurateError, match=message.replace("(", r"\(")) as err:
        validate_params(params, "params.yaml")
    assert str(err.value).startswith("params.yaml: ")


def test_round_order_follows_the_chain_in_listed_order():
    assert round_order({"a": "rd_0", "b": "a", "c": "rd_0"}) == ["rd_0", "a", "b", "c"]
    with pytest.raises(CurateError, match="rounds.b grows from 'c'"):
        round_order({"b": "c", "c": "rd_0"})


def test_check_folder_reports_yaml_errors_with_the_line(tmp_path):
    (tmp_path / "params.yaml").write_text("pool: a\nrounds: [unclosed\n")
    with pytest.raises(CurateError, match=r"params.yaml:\d+: not valid YAML"):
        check_folder(tmp_path)
    with pytest.raises(CurateError, match="no params file"):
        check_folder(tmp_path / "elsewhere")


# ---------------------------------------------------------------------------- curate init
def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def test_scaffold_makes_a_git_and_dvc_repo_with_the_pipeline(tmp_path):
    target = tmp_path / "project"
    result = scaffold(target)
    assert result.git_initialised and result.dvc_initialised
    assert (target / ".git").is_dir() and (target / ".dvc" / "config").is_file()
    for name, text in pipeline_files("default").items():
        assert (target / name).read_text() == text
    assert "/lancedb/" in (target / "data" / ".gitignore").read_text().splitlines()
    assert (target / "data/sample/pool.jsonl").read_bytes() == (
        ROOT / "data/sample/pool.jsonl"
    ).read_bytes()
    assert result.rounds == ["rd_0", "rd_1", "rd_2", "rd_3"]
    # The LanceDB cache is invisible to git.
    (target / "data" / "lancedb").mkdir()
    (target / "data" / "lancedb" / "x").write_text("cache")
    assert "lancedb" not in _git(target, "status", "--porcelain", "--untracked-files=all")

    again = scaffold(target)  # idempotent: nothing to do, nothing initialised twice
    assert (again.written, again.git_initialised, again.dvc_initialised) == ([], False, False)
    assert sorted(again.unchanged) == ["dvc.yaml", "params.yaml"]


def test_scaffold_never_overwrites_without_force(tmp_path):
    scaffold(tmp_path, samples=False)
    params = tmp_path / "params.yaml"
    params.write_text(params.read_text().replace("n_query: 10", "n_query: 7"))
    (tmp_path / "data" / ".gitignore").write_text("/mine\n")
    with pytest.raises(CurateError, match=r"params.yaml already exists .* --force"):
        scaffold(tmp_path, profile="paper")
    assert "n_query: 7" in params.read_text()  # refused before writing anything
    result = scaffold(tmp_path, profile="paper", force=True)
    assert "params.yaml" in result.written and "n_query: 100" in params.read_text()
    assert (tmp_path / "data" / ".gitignore").read_text() == "/mine\n/lancedb/\n"
    assert not (tmp_path / "data" / "sample" / "pool.jsonl").exists()


def test_scaffold_in_a_subfolder_of_a_git_repo_uses_dvc_subdir(tmp_path):
    _git(tmp_path, "init", "-q")
    result = scaffold(tmp_path / "pipelines" / "mine", samples=False)
    assert not result.git_initialised and result.dvc_initialised
    assert not (tmp_path / "pipelines" / "mine" / ".git").exists()
    config = (tmp_path / "pipelines" / "mine" / ".dvc" / "config").read_text()
    assert "no_scm" not in config


def test_init_cli_refuses_with_one_line_and_checks_params(tmp_path):
    curate = str(BIN / "curate")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    done = subprocess.run([curate, "init", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error:") and "--force" in done.stderr
    assert (tmp_path / "dvc.yaml").read_text() == "stages: {}\n"
    assert not (tmp_path / ".dvc").exists()

    (tmp_path / "params.yaml").write_text(
        pipeline_files()["params.yaml"].replace("strategy: kcenter", "strategy: greedy")
    )
    done = subprocess.run(
        [curate, "init", str(tmp_path), "--check"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "`strategy` is 'greedy'" in done.stderr
