"""Hostile inputs (issue 23): a name, a received manifest, a target folder, a setting or a
file chosen to make curate write outside what the user named, delete what it did not
write, or fail with a traceback. Each is refused with one line, before any work, and
counted in the fault suite's summary line (``hostile inputs``, ``writes outside``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import curate
from curate.errors import CurateError
from tests.faults.tools import TALLY, refused, snapshot, untouched


@pytest.fixture(scope="module")
def db(tmp_path_factory, build_pool, write_embeddings) -> Path:
    from curate.store import Store

    folder = tmp_path_factory.mktemp("hostile")
    store = Store(folder / "db")
    build_pool(store, folder / "src", rows=40)
    write_embeddings(store, "e", dim=6)
    return folder / "db"


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """The test's own working folder (the default data/subsets, data/exports land in it),
    with a folder curate never wrote: ``victim/`` (nested files) and ``victim-hf/``."""
    work = tmp_path / "work"
    for victim in ("victim", "victim-hf"):
        (work / victim / "nested").mkdir(parents=True)
        (work / victim / "nested" / "thesis.tex").write_text("years of work\n")
        (work / victim / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(work)
    return work


def _subset(cli, db: Path, out: str, *extra: str) -> Path:
    done = cli("select", "--db", db, "--strategy", "random", "--budget", "6", "--out", out, *extra)
    assert done.code == 0, done.err
    return Path(out)


def _edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["../../escaped", "ABSOLUTE", "a/b", "..", ".x"])
def test_a_name_is_one_folder_name_on_the_command_line(cli, db, here, name):
    name = str(here.parent / "absolute-escape") if name == "ABSOLUTE" else name
    before = snapshot(here.parent)  # where both escapes would land
    done = cli("select", "--db", db, "--strategy", "random", "--budget", "3", "--name", name)
    refused(done, "--name", repr(name), code=2)
    untouched(before, here.parent)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (dict(budget=3, name="../x"), "--name '../x'"),
        (dict(budget=True), "budget True"),
        (dict(budget=3.0), "budget 3.0"),
        (dict(budget=3, seed=-5), "seed -5"),
        (dict(budget=3, seed="1"), "seed '1'"),
        (dict(budget=3, params=5), "params 5"),
        (dict(budget=3, parent=7), "parent 7"),
        (
            dict(budget=3, strategy="kcenter-robust", params={"outliers": float("nan")}),
            "--outliers",
        ),
        (dict(budget=3, strategy="kcenter-robust", params={"epsilon": 1e308}), "--epsilon"),
    ],
)
def test_the_api_refuses_wrong_types_and_values_as_curate_errors(db, here, fields, needle):
    with pytest.raises(CurateError) as caught:
        curate.Pool(db).select(**fields)
    TALLY.faults += 1
    TALLY.hostile += 1
    assert needle in str(caught.value) and caught.value.exit_code == 2, caught.value


API_CALLS = [
    (lambda db: curate.Pool(5), "db must be a path"),
    (lambda db: curate.Pool(db).embed(embedder=5), "embedder must be str or None"),
    (lambda db: curate.Pool(db).embed(batch_size="8"), "batch_size must be int or None"),
    (lambda db: curate.write_subset(None, "x"), "write_subset takes what Pool.select returns"),
    (lambda db: curate.load_subset(5), "path must be a path"),
    (lambda db: curate.train(5, "smollm2", "out"), "subset must be a path"),
    (lambda db: curate.train("s", "smollm2", "out", epochs=True), "epochs must be float"),
    (lambda db: curate.train("s", "smollm2", "out", bogus=1), "unknown setting 'bogus'"),
    (lambda db: curate.evaluate("m", "e.jsonl", limit="3"), "limit must be int or None"),
]


@pytest.mark.parametrize(("call", "needle"), API_CALLS, ids=[n for _, n in API_CALLS])
def test_the_api_names_a_wrong_argument_type_in_a_curate_error(db, here, call, needle):
    with pytest.raises(CurateError) as caught:
        call(db)
    TALLY.faults += 1
    TALLY.hostile += 1
    assert needle in str(caught.value) and caught.value.exit_code == 2, caught.value


# ----------------------------------------------------------------------------- manifests


def test_a_received_manifest_cannot_steer_a_path(cli, db, here):
    subset = _subset(cli, db, "data/subsets/shared")
    victim = (here / "victim").resolve()
    _edit_manifest(subset, name=str(victim))  # what a colleague's `dvc pull` could bring
    before = snapshot(here / "victim"), snapshot(here / "victim-hf")
    refused(cli("subsets", "verify", subset, "--db", db), "field 'name'", "separator", code=1)
    refused(cli("subsets", "export", subset, "--format", "hf"), "field 'name'", code=1)
    untouched(before[0], here / "victim")
    untouched(before[1], here / "victim-hf")

    _edit_manifest(subset, name="shared", parent={"name": "../../victim", "manifest_sha256": "0"})
    refused(cli("subsets", "verify", subset, "--db", db), "'parent.name'", code=1)

    # a legal but different name decides nothing either: the export is named after the folder
    _edit_manifest(subset, name="victim", parent=None)
    done = cli("subsets", "export", subset, "--format", "alpaca", "--json")
    assert done.code == 0, done.err
    assert done.json()["path"] == str(Path("data/exports/shared-alpaca.json"))
    assert not Path("data/exports/victim-alpaca.json").exists()


# ----------------------------------------------------------------------------- targets


def test_force_never_replaces_a_folder_curate_did_not_write(cli, db, here):
    before = snapshot(here / "victim")
    for force in ((), ("--force",)):
        done = cli("select", "--db", db, "--strategy", "random", "--budget", "3",
                   "--out", "victim", *force)  # fmt: skip
        line = refused(done, "victim", "nested", "not a subset", code=3)
        assert "--force" not in line  # the refusal does not invite deleting it
    untouched(before, here / "victim")
    refused(
        cli("select", "--db", db, "--strategy", "random", "--budget", "3", "--out", ".", "--force"),
        "current folder",
        code=3,
    )
    # a subset folder someone added files to is not what curate wrote either
    subset = _subset(cli, db, "kept")
    (subset / "README.md").write_text("my notes\n")
    again = cli("select", "--db", db, "--strategy", "random", "--budget", "6", "--out", "kept")
    refused(again, "README.md", code=3)  # even a rerun of the same subset would delete it
    done = cli("select", "--db", db, "--strategy", "random", "--budget", "4", "--out", "kept",
               "--force")  # fmt: skip
    refused(done, "README.md", code=3)
    assert (subset / "README.md").is_file()
    # curate's own subset that differs: replaced only with --force
    _subset(cli, db, "mine")
    done = cli("select", "--db", db, "--strategy", "random", "--budget", "4", "--out", "mine")
    refused(done, "already holds a different subset", "--force", code=3)
    _subset(cli, db, "mine", "--budget", "4", "--force")
    assert len(curate.load_subset("mine").examples) == 4


@pytest.mark.parametrize("fmt", ["hf", "alpaca"])
def test_export_replaces_nothing_without_force_and_never_a_foreign_folder(cli, db, here, fmt):
    subset = _subset(cli, db, "s")
    out = {"hf": "out-hf", "alpaca": "out.json"}[fmt]
    assert cli("subsets", "export", subset, "--format", fmt, "--out", out).code == 0
    first = snapshot(here)
    refused(cli("subsets", "export", subset, "--format", fmt, "--out", out), "--force", code=3)
    untouched(first, here)
    assert cli("subsets", "export", subset, "--format", fmt, "--out", out, "--force").code == 0
    before = snapshot(here / "victim-hf")
    done = cli("subsets", "export", subset, "--format", fmt, "--out", "victim-hf", "--force")
    line = refused(done, "victim-hf", code=3)
    assert "--force" not in line
    untouched(before, here / "victim-hf")


def test_train_never_replaces_a_folder_that_is_not_a_model_it_wrote(cli, db, here):
    subset = _subset(cli, db, "s")
    before = snapshot(here / "victim")
    done = cli("train", subset, "--base-model", here / "no-model", "--out", "victim")
    refused(done, "victim", "not a model folder", code=3)
    untouched(before, here / "victim")


def test_train_verifies_the_subset_as_subsets_verify_does(cli, db, here):
    """An edited row with examples_sha256 recomputed: caught by the rows' content hashes."""
    subset = _subset(cli, db, "s")
    lines = (subset / "examples.jsonl").read_text().splitlines(keepends=True)
    row = json.loads(lines[2])
    row["output"] = "POISONED " + row["output"]
    lines[2] = json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
    blob = "".join(lines).encode()
    (subset / "examples.jsonl").write_bytes(blob)
    import hashlib

    _edit_manifest(subset, examples_sha256=hashlib.sha256(blob).hexdigest())
    verify = refused(
        cli("subsets", "verify", subset, "--db", db), "does not match its hash", code=1
    )
    train = refused(
        cli("train", subset, "--base-model", here / "no-model", "--out", "m"),
        "does not match its hash",
        code=1,
    )
    assert train == verify  # the same check, the same line


# ----------------------------------------------------------------------------- settings

BAD_OPTIONS = [
    ("--seed", "-5"),
    ("--strategy", "kcenter-robust", "--outliers", "nan"),
    ("--strategy", "kcenter-robust", "--epsilon", "inf"),
    ("--strategy", "kcenter-robust", "--epsilon", "1e308"),
    ("--strategy", "kcenter-density", "--density-power", "nan"),
    ("--strategy", "kcenter-density", "--density-power", "inf"),
    ("--strategy", "kcenter", "--embeddings", "e", "--whiten", "9"),  # the vectors are 6-d
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=lambda a: " ".join(a[-2:]))
def test_a_bad_option_value_is_a_usage_error_before_any_work(cli, db, here, args):
    before = snapshot(here)
    done = cli("select", "--db", db, "--budget", "4", *args)
    refused(done, args[-2].lstrip("-"), code=2)
    untouched(before, here)


BAD_SETTINGS = [
    ({"strategy": "kcenter-robust", "strategy_params": {"outliers": float("nan")}}, "--outliers"),
    ({"strategy": "kcenter-robust", "strategy_params": {"epsilon": float("inf")}}, "--epsilon"),
    ({"strategy": "kcenter-density", "strategy_params": {"density_power": 1e308}}, "--density"),
    ({"strategy": "kcenter", "strategy_params": {"whiten": 100000}}, "--whiten"),
    ({"seed": -1}, "`seed`"),
    ({"strategy": "bogus"}, "`strategy` is 'bogus'"),
]


@pytest.mark.parametrize(("change", "needle"), BAD_SETTINGS, ids=lambda c: str(c)[:40])
def test_init_check_refuses_what_the_options_refuse(cli, tmp_path, change, needle):
    from curate.scaffold import pipeline_files

    params = yaml.safe_load(pipeline_files()["params.yaml"])
    params.update(change)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    refused(cli("init", tmp_path, "--check"), "params.yaml", needle, code=2)


def test_dvc_repro_stops_at_a_bad_setting_before_any_stage_works(tmp_path, dvc_env):
    """The pipeline's first stage is `curate init --check`: `strategy: bogus` stops
    `dvc repro` there, before ingest, embedding, selection or training."""
    bin_dir = Path(sys.executable).parent
    repo = tmp_path / "repo"
    run = lambda *a: subprocess.run(a, cwd=repo, env=dvc_env, capture_output=True, text=True)  # noqa: E731
    repo.mkdir()
    assert run(str(bin_dir / "curate"), "init", ".").returncode == 0
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("strategy: kcenter", "strategy: bogus", 1))
    done = run(str(bin_dir / "dvc"), "repro")
    TALLY.faults += 1
    TALLY.hostile += 1
    assert done.returncode != 0
    ran = [line for line in done.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'check':"], done.stdout
    assert "`strategy` is 'bogus'" in done.stdout + done.stderr
    assert not (repo / "data" / "lancedb").exists()


# ----------------------------------------------------------------------------- files


def _vectors(db: Path) -> tuple[list[str], np.ndarray]:
    from curate.store import Store

    ids = Store(db).read_pool(["id"])["id"].to_pylist()
    return ids, np.random.default_rng(0).standard_normal((len(ids), 4)).astype(np.float32)


def _npz_object_ids(path: Path, ids, matrix) -> None:
    np.savez(path, id=np.array(ids, dtype=object), vector=matrix)


def _npy_empty(path: Path, ids, matrix) -> None:
    path.write_bytes(b"")


def _npz_strings(path: Path, ids, matrix) -> None:
    np.savez(path, id=np.array(ids), vector=matrix.astype(str))


def _npz_complex(path: Path, ids, matrix) -> None:
    np.savez(path, id=np.array(ids), vector=matrix.astype(np.complex64))


def _npz_bools(path: Path, ids, matrix) -> None:
    np.savez(path, id=np.array(ids), vector=matrix > 0)


def _parquet_strings(path: Path, ids, matrix) -> None:
    vectors = [[str(v) for v in row] for row in matrix]
    pq.write_table(pa.table({"id": ids, "vector": vectors}), path)


def _parquet_bools(path: Path, ids, matrix) -> None:
    pq.write_table(pa.table({"id": ids, "vector": [list(row > 0) for row in matrix]}), path)


BAD_FILES = [
    ("ids.npz", _npz_object_ids, "object arrays are not accepted"),
    ("empty.npy", _npy_empty, "empty (0 bytes)"),
    ("strings.npz", _npz_strings, "'vector' holds <U"),
    ("complex.npz", _npz_complex, "'vector' holds complex64"),
    ("bools.npz", _npz_bools, "'vector' holds bool"),
    ("strings.parquet", _parquet_strings, "column 'vector' holds list<element: string>"),
    ("bools.parquet", _parquet_bools, "column 'vector' holds list<element: bool>"),
]


@pytest.mark.parametrize(("name", "write", "needle"), BAD_FILES, ids=[f[0] for f in BAD_FILES])
def test_embed_import_takes_only_real_vectors_and_says_which_file(
    cli, db, tmp_path, name, write, needle
):
    from curate.store import Store

    path = tmp_path / name
    write(path, *_vectors(db))
    names = Store(db).embedding_names()
    refused(cli("embed", "--db", db, "--import", path, "--name", "imp"), str(path), needle, code=1)
    assert Store(db).embedding_names() == names


class _Payload:
    def __reduce__(self):
        return (print, ("pickle code ran",))


@pytest.mark.slow  # loads the tiny model's tokenizer
def test_a_model_folder_whose_pickle_torch_refuses_is_one_line(cli, tiny_lm, tmp_path):
    import torch

    folder = tmp_path / "model"
    shutil.copytree(tiny_lm, folder, ignore=shutil.ignore_patterns("*.safetensors*"))
    torch.save({"weights": _Payload()}, folder / "pytorch_model.bin")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"text": "Q?", "answer": "A."}) + "\n")
    done = cli("eval", "model", folder, "--eval-set", questions, "--device", "cpu")
    refused(done, str(folder), "refuses to load safely", code=1)
    assert "pickle code ran" not in done.out  # the payload's print never ran


@pytest.mark.parametrize("args", [("--seed", "-5"), ("--epochs", "inf"), ("--lr", "nan")])
def test_train_refuses_a_bad_seed_or_a_non_finite_number_before_loading(cli, db, here, args):
    subset = _subset(cli, db, "s")
    done = cli("train", subset, "--base-model", here / "no-model", "--out", "m", *args)
    refused(done, args[0], code=1)
