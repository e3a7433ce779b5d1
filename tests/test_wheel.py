"""`curate init` from an installed wheel: the templates and sample data are package data.

The wheel is built from a copy of the package, installed into a fresh virtual environment
that cannot see this checkout, and its `curate init` must scaffold a folder where `dvc
repro --dry` lists every stage of the default pipeline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_STAGES = {
    "check",
    "ingest",
    "dedup",
    "decontaminate",
    "embed_minilm",
    "select_rd_0",
    "train_rd_0",
    "eval_rd_0",
    "select_full",
    "train_full",
    "eval_full",
    "plots",
    *(f"{stage}@rd_{r}" for stage in ("embed", "select", "train", "eval") for r in (1, 2, 3)),
}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the curate wheel installed; the main environment's site-packages
    (dvc, torch, ...) on its path through a plain path line, which does not run the
    editable install's finder, so `import curate` can only find the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "curate", source / "curate", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."], source, env)
    (wheel,) = dist.glob("curate-*.whl")

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    python = venv / "bin" / "python"
    # Install before the main site-packages is visible: pip sees only the fresh venv.
    _run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], work, env
    )
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env).strip())  # fmt: skip
    (site / "main_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([str(python), "-c", "import curate; print(curate.__file__)"], work, env)
    assert Path(where.strip()).is_relative_to(site), where  # the wheel, not this checkout
    return venv, env


@pytest.mark.slow
def test_curate_init_from_the_wheel_scaffolds_a_pipeline_dvc_can_run(wheel_venv, tmp_path):
    venv, env = wheel_venv
    project = tmp_path / "project"
    project.mkdir()
    _run([str(venv / "bin" / "curate"), "init", "."], project, env)
    for name in ("dvc.yaml", "params.yaml"):
        assert (project / name).read_bytes() == (ROOT / name).read_bytes()
    for name in ("data/sample/pool.jsonl", "data/sample/eval.jsonl"):
        assert (project / name).read_bytes() == (ROOT / name).read_bytes()
        assert not (project / name).is_symlink()
    # `--force`: in a folder that never ran, a plain `--dry` stops at the second stage (DVC
    # 3.x's run-cache lookup hashes the not-yet-built data/lancedb/pool.lance); forcing
    # skips that lookup and still runs nothing.
    dvc = [str(venv / "bin" / "python"), "-m", "dvc"]
    dry = _run([*dvc, "repro", "--dry", "--force"], project, env)
    ran = {line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")}
    assert ran == EXPECTED_STAGES, dry
    paper = tmp_path / "paper"
    _run([str(venv / "bin" / "curate"), "init", str(paper), "--profile", "paper"], tmp_path, env)
    assert "n_query: 100" in (paper / "params.yaml").read_text()
