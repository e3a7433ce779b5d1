"""The DVC pipeline: templates, `curate init`, and the rounds run by the real `dvc repro`."""

from __future__ import annotations

import json
import math
import os
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
            f"{name} at the project root differs from curate/templates/; copy the template over it"
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
        # the heavy stages run under params.yaml's `launcher` (empty: plain `curate`)
        assert body["cmd"].removeprefix("${launcher} ").startswith("curate "), name
        for dep in body.get("deps", []):
            assert dep.split("/")[0] in ("${pool}", "${db}", "data", "${eval.set}"), (name, dep)
    assert "${item}" in pipeline["select"]["do"]["cmd"]  # grows from the previous round
    assert "--budget" not in pipeline["select"]["do"]["cmd"]
    launched = {
        n for n, st in pipeline.items() if st.get("do", st)["cmd"].startswith("${launcher}")
    }
    assert launched == {"embed", "select", "train", "train_rd_0", "train_full"}


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
        (
            lambda p: p.update(strategy_params={"metrc": "cosine"}),
            "strategy_params: strategy kcenter has no parameter --metrc (its parameters: --metric",
        ),
        (
            lambda p: p.update(strategy_params={"whiten": 0}),
            "strategy_params: strategy kcenter: --whiten 0 is below the minimum 1",
        ),
        (lambda p: p.update(strategy_params=["cosine"]), "`strategy_params` must be a mapping"),
        (lambda p: p.update(seed=None), "`seed` must be an integer"),
        (lambda p: p.update(launcher=["torchrun"]), "`launcher` must be a string"),
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


def test_init_cli_refuses_with_one_line_and_checks_params(tmp_path, cli):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    done = cli("init", tmp_path)
    assert done.code != 0
    assert done.err.strip().startswith("error:") and "--force" in done.err
    assert (tmp_path / "dvc.yaml").read_text() == "stages: {}\n"
    assert not (tmp_path / ".dvc").exists()

    (tmp_path / "params.yaml").write_text(
        pipeline_files()["params.yaml"].replace("strategy: kcenter", "strategy: greedy")
    )
    done = cli("init", tmp_path, "--check")
    assert done.code != 0 and "`strategy` is 'greedy'" in done.err


# ---------------------------------------------------------------------------- dvc repro
# A 30-row pool, the tiny LM as base model and two rounds (rd_0 random, rd_1 K-center)
# through the real `dvc repro`. The tests below share this one repository, in file order.
ROUND_FILES = ("data/subsets", "data/models", "data/metrics")


def _ran(output: str) -> set[str]:
    """Stages a `dvc repro` / `dvc exp run` log says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def _digests(root: Path, folders=ROUND_FILES) -> dict[str, str]:
    from curate.files import sha256_file

    return {
        str(p.relative_to(root)): sha256_file(p)
        for folder in folders
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


def _kill_stage_when_it_starts(proc: subprocess.Popen, needle: list[str], timeout: float = 900):
    """Kill the `curate` process a DVC stage runs (a crash mid-round); True if it was found."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                cmdline = child.cmdline()
            except psutil.Error:
                continue
            if all(part in cmdline for part in needle) and any("curate" in c for c in cmdline):
                child.kill()
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_pipeline) -> Path:
    """`curate init` + the tiny settings (30 conversations in the shapes real chat pools
    come in: leading assistant turns, system prompts, long chats, empty turns, hostile
    text; rounds rd_0 and rd_1), committed; the pipeline not yet run."""
    return tiny_pipeline(tmp_path_factory.mktemp("pipeline") / "repo", chat=True)


@pytest.fixture(scope="module")
def reproduced(repo, dvc_env, sh) -> dict:
    """Run the pipeline, killing it in round 1, then resume it; returns the logs."""
    log = repo.parent / "first-repro.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "dvc"), "repro"], cwd=repo, env=dvc_env, stdout=out, stderr=out
        )
        killed = _kill_stage_when_it_starts(proc, ["embed", "rd_1"])
        proc.wait(timeout=600)
    first = log.read_text()
    assert killed, f"never saw round 1's embed stage start:\n{first[-3000:]}"
    assert proc.returncode != 0
    round0 = _digests(repo)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    resumed = sh(repo, dvc_env, str(BIN / "dvc"), "repro")
    return {"first": first, "round0": round0, "lock_after_crash": lock, "resumed": resumed}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # includes the module's pipeline runs (about 3 minutes unloaded)
def test_a_crash_in_round_1_keeps_round_0_and_repro_resumes_there(repo, reproduced):
    assert {"ingest", "embed_minilm", "select_rd_0", "train_rd_0", "eval_rd_0"} <= set(
        reproduced["lock_after_crash"]
    )
    assert not any(name.endswith("@rd_1") for name in reproduced["lock_after_crash"])
    assert any(path.startswith("data/models/rd_0/") for path in reproduced["round0"])
    assert _ran(reproduced["resumed"]) == {
        "embed@rd_1",
        "select@rd_1",
        "train@rd_1",
        "eval@rd_1",
        "plots",
    }
    now = _digests(repo)
    assert {k: now[k] for k in reproduced["round0"]} == reproduced["round0"]


@pytest.mark.slow
def test_rounds_write_chained_subsets_models_and_metrics(repo, reproduced, dvc_env, sh):
    from curate.subsets import load_subset

    rd_0, rd_1 = (load_subset(repo / "data/subsets" / name) for name in ("rd_0", "rd_1"))
    assert rd_0.manifest.parent is None and rd_0.manifest.strategy == "random"
    assert rd_1.manifest.parent.to_dict() == {
        "name": "rd_0",
        "manifest_sha256": rd_0.manifest_sha256,
    }
    assert rd_1.manifest.strategy == "kcenter"
    assert rd_1.manifest.embeddings.name == "rd_1"
    assert len(rd_0.ids) == 4 and len(rd_1.ids) == 4 + 3
    assert rd_1.ids[:4] == rd_0.ids
    for name, subset in (("rd_0", rd_0), ("rd_1", rd_1)):
        model = repo / "data/models" / name
        assert (model / "config.json").is_file()
        assert subset.manifest_sha256 in (model / "train_metrics.json").read_text()
        metrics = json.loads((repo / "data/metrics" / f"{name}.json").read_text())
        assert metrics["n"] == len(subset.ids)
        assert all(math.isfinite(metrics[k]) for k in ("vendi", "coverage_radius", "nll"))
    rows = (repo / "data/plots/rounds.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["run", "round"] and len(rows) == 3
    assert "lancedb" not in sh(repo, dvc_env, "git", "status", "--porcelain")


@pytest.mark.slow
def test_second_repro_runs_nothing(repo, reproduced, dvc_env, sh):
    before = _digests(repo)
    output = sh(repo, dvc_env, str(BIN / "dvc"), "repro")
    assert _ran(output) == set(), output
    assert "Data and pipelines are up to date" in output
    assert _digests(repo) == before


@pytest.mark.slow
def test_push_pull_clone_and_dvc_get_import_give_identical_subsets(
    repo, reproduced, dvc_env, tmp_path, sh
):
    remote = tmp_path / "remote"
    sh(repo, dvc_env, str(BIN / "dvc"), "remote", "add", "-d", "shared", str(remote))
    sh(repo, dvc_env, "git", "add", "-A")
    sh(repo, dvc_env, "git", "commit", "-q", "-m", "rounds 0-1 and the shared remote")
    sh(repo, dvc_env, str(BIN / "dvc"), "push")
    assert "lancedb" not in sh(repo, dvc_env, "git", "ls-files")

    clone = tmp_path / "clone"
    sh(tmp_path, dvc_env, "git", "clone", "-q", str(repo), str(clone))
    sh(clone, dvc_env, str(BIN / "dvc"), "pull")
    assert _digests(clone) == _digests(repo)
    assert not (clone / "data/lancedb").exists()  # the cache is never pushed: rebuild the pool
    assert _ran(sh(clone, dvc_env, str(BIN / "dvc"), "repro", "ingest")) == {"ingest"}
    # rd_1 against the rebuilt pool, and against its parent rd_0 (sha256 and prefix)
    sh(clone, dvc_env, str(BIN / "curate"), "subsets", "verify", "data/subsets/rd_1")

    got = tmp_path / "got"
    sh(tmp_path, dvc_env, str(BIN / "dvc"), "get", str(repo), "data/subsets/rd_1", "-o", str(got))
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    sh(consumer, dvc_env, "git", "init", "-q")
    sh(consumer, dvc_env, str(BIN / "dvc"), "init", "-q")
    sh(consumer, dvc_env, str(BIN / "dvc"), "import", str(repo), "data/subsets/rd_1", "-o", "rd_1")
    assert (consumer / "rd_1.dvc").is_file()
    original = _digests(repo / "data/subsets/rd_1", ["."])
    assert set(original) == {"manifest.json", "examples.jsonl"}
    assert _digests(got, ["."]) == original
    assert _digests(consumer / "rd_1", ["."]) == original


@pytest.mark.slow
def test_experiment_with_another_n_query_reruns_from_the_first_select(
    repo, reproduced, dvc_env, sh
):
    before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    output = sh(repo, dvc_env, str(BIN / "dvc"), "exp", "run", "-S", "n_query=2")
    # `check` validates every params change (its output is fixed, so nothing reruns for it).
    assert _ran(output) == {"check", "select@rd_1", "train@rd_1", "eval@rd_1", "plots"}, output
    after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for stage in ("ingest", "embed_minilm", "select_rd_0", "train_rd_0", "eval_rd_0", "embed@rd_1"):
        assert after[stage] == before[stage], stage
    manifest = json.loads((repo / "data/subsets/rd_1/manifest.json").read_text())
    assert len(manifest["picks"]) == 4 + 2
    shown = json.loads(sh(repo, dvc_env, str(BIN / "dvc"), "exp", "show", "--json"))
    committed = [row for row in _exp_rows(shown) if row["rev"] != "workspace"]
    assert (2, 4 + 2) in [(r["n_query"], r["rd_1_size"]) for r in committed]  # the experiment


@pytest.mark.slow
def test_a_strategy_from_an_installed_plugin_runs_per_round(
    repo, reproduced, dvc_env, plugin_site, sh
):
    from curate.store import Store

    env = {
        **dvc_env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_site), dvc_env.get("PYTHONPATH")])),
    }
    args = ["exp", "run", "-S", "strategy=stride", "-S", "+strategy_params.step=2"]
    output = sh(repo, env, str(BIN / "dvc"), *args)
    # embed@rd_1 names the strategy (--for-strategy): it reruns, and stride reads no vectors
    assert _ran(output) == {
        "check", "embed@rd_1", "select@rd_1", "train@rd_1", "eval@rd_1", "plots"
    }  # fmt: skip
    assert "skipped (strategy stride reads none)" in output
    rd_1 = json.loads((repo / "data/subsets/rd_1/manifest.json").read_text())
    rd_0 = json.loads((repo / "data/subsets/rd_0/manifest.json").read_text())
    assert rd_1["strategy"] == "stride" and rd_1["params"]["step"] == 2
    ids = Store(repo / "data/lancedb").read_pool(["id"])["id"].to_pylist()
    chosen = {p["id"] for p in rd_0["picks"]}
    added = rd_1["params"]["added"]
    expected = [i for i in ids if i not in chosen][::2][:added]
    assert [p["id"] for p in rd_1["picks"]] == [p["id"] for p in rd_0["picks"]] + expected


def _exp_rows(node) -> list[dict]:
    """(rev, n_query, size of rd_1) for the baseline and every experiment `dvc exp show` lists."""
    rows = []
    if isinstance(node, dict):
        if node.get("params") and node.get("metrics"):
            params = node["params"]["params.yaml"]["data"]
            metrics = node["metrics"]["data/metrics/rd_1.json"]["data"]
            rows.append(
                {"rev": node["rev"], "n_query": params["n_query"], "rd_1_size": metrics["n"]}
            )
        for value in node.values():
            rows += _exp_rows(value)
    elif isinstance(node, list):
        for value in node:
            rows += _exp_rows(value)
    return rows
