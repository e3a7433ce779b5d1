"""``curate init``: put the DiverseEvol pipeline (dvc.yaml + params.yaml) into a folder.

The templates ship inside the package (``curate/templates/``, read with
:mod:`importlib.resources`, so an installed wheel scaffolds as well as a source checkout);
the project's own root ``dvc.yaml``/``params.yaml`` are copies of them (a test keeps them
in sync) and its ``data/sample/`` files link to the packaged samples. The folder becomes
a git + DVC repository if it is not one already. Nothing that exists is overwritten unless
``force``; a file already identical to its template counts as done.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from curate.devices import PRECISIONS
from curate.errors import CurateError, UsageError
from curate.files import atomic_write_bytes, atomic_write_text

TEMPLATES = files("curate") / "templates"
PROFILES = {"default": "params.yaml", "paper": "params.paper.yaml"}
PIPELINE_FILE = "dvc.yaml"
PARAMS_FILE = "params.yaml"
# The LanceDB folder is a cache DVC rebuilds; git must not see it either.
DATA_GITIGNORE = ("data/.gitignore", "/lancedb/\n")
# Sample data copied into a new folder so `dvc repro` runs straight away (never overwritten);
# each lies at the same relative path under TEMPLATES.
SAMPLE_FILES = ("data/sample/pool.jsonl", "data/sample/eval.jsonl")

STAMP_TEXT = "params.yaml checked by `curate init --check`\n"  # fixed: no rerun downstream
FIRST_ROUND = "rd_0"
_ROUND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_POSITIVE_INTS = (
    "init_size",
    "n_query",
    "max_length",
    "train.epochs",
    "train.batch_size",
    "train.grad_accum",
    "eval.limit",
    "eval.max_length",
)
_STRINGS = ("pool", "db", "base_model", "device", "eval.set")


class ScaffoldError(CurateError):
    """The target folder or a params file cannot hold the pipeline as asked."""


class SettingError(ScaffoldError, UsageError):
    """A params.yaml setting with a value its option refuses: the same usage error (exit 2)
    the command-line option gives."""

    exit_code = 2


@dataclass
class ScaffoldResult:
    root: Path
    profile: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    copied_samples: list[str] = field(default_factory=list)
    git_initialised: bool = False
    dvc_initialised: bool = False
    rounds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "root": str(self.root)}


def template_text(name: str) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        raise ScaffoldError(
            f"pipeline template {path} is missing from the installed curate package; "
            "reinstall curate"
        )
    return path.read_text(encoding="utf-8")


def pipeline_files(profile: str = "default") -> dict[str, str]:
    """Relative path → text of every file ``curate init`` writes for ``profile``."""
    if profile not in PROFILES:
        raise ScaffoldError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    params_text = template_text(PROFILES[profile])
    validate_params(yaml.safe_load(params_text), f"{TEMPLATES / PROFILES[profile]}")
    return {PIPELINE_FILE: template_text(PIPELINE_FILE), PARAMS_FILE: params_text}


# ---------------------------------------------------------------------------- params
def lookup(params: Mapping[str, Any], dotted: str, missing: Any = None) -> Any:
    """``params["train"]["lr"]`` for ``"train.lr"``; ``missing`` where a part is absent."""
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return missing
        value = value[part]
    return value


def _get(params: Mapping[str, Any], dotted: str) -> Any:
    return lookup(params, dotted, _MISSING)


_MISSING = object()


def round_order(rounds: Mapping[str, Any], source: str = PARAMS_FILE) -> list[str]:
    """Rounds in run order (``rd_0`` first), checking each grows from an earlier round."""
    if not isinstance(rounds, Mapping) or not rounds:
        raise SettingError(f"{source}: `rounds` must map each round to the round it grows from")
    order = [FIRST_ROUND]
    for name, previous in rounds.items():
        if not isinstance(name, str) or not _ROUND_NAME.match(name) or name == FIRST_ROUND:
            raise SettingError(
                f"{source}: rounds.{name} is not a usable round name (letters, digits, _ . -; "
                f"not {FIRST_ROUND}, which is the random start)"
            )
        if previous not in order:
            raise SettingError(
                f"{source}: rounds.{name} grows from {previous!r}, which is not {FIRST_ROUND} "
                "or a round listed above it"
            )
        order.append(name)
    return order


def validate_params(params: Any, source: str = PARAMS_FILE) -> list[str]:
    """Check what the pipeline needs from params.yaml; returns the rounds in run order."""
    if not isinstance(params, Mapping):
        raise SettingError(f"{source}: expected a mapping of settings")
    for key in _STRINGS:
        value = _get(params, key)
        if value is _MISSING:
            raise SettingError(f"{source}: `{key}` is missing")
        if not isinstance(value, str) or not value:
            raise SettingError(f"{source}: `{key}` must be a non-empty string, not {value!r}")
    for key in _POSITIVE_INTS:
        value = _get(params, key)
        if value is _MISSING:
            raise SettingError(f"{source}: `{key}` is missing")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingError(f"{source}: `{key}` must be a positive integer, not {value!r}")
    seed = _get(params, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SettingError(f"{source}: `seed` must be an integer, not {seed!r}")
    if not 0 <= seed < 2**32:  # what `curate select --seed` accepts
        raise SettingError(f"{source}: `seed` must be from 0 to {2**32 - 1}, not {seed!r}")
    lr = _get(params, "train.lr")
    if isinstance(lr, bool) or not isinstance(lr, int | float):
        raise SettingError(f"{source}: `train.lr` must be a positive number, not {lr!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise SettingError(f"{source}: `train.lr` must be a positive number, not {lr!r}")
    precision = _get(params, "precision")  # absent in params files older than the option
    if precision is not _MISSING and precision not in PRECISIONS:
        raise SettingError(
            f"{source}: `precision` is {precision!r}; choose from {', '.join(PRECISIONS)}"
        )
    launcher = _get(params, "launcher")  # absent in params files older than the option
    if launcher is not _MISSING and not isinstance(launcher, str):
        raise ScaffoldError(
            f"{source}: `launcher` must be a string (may be empty), not {launcher!r}"
        )
    _check_strategy(params, source)
    return round_order(_get(params, "rounds"), source)


def _check_strategy(params: Mapping[str, Any], source: str) -> None:
    """`strategy` names a registered strategy (built-in or plugin) and `strategy_params`
    are parameters it declares, with values its declaration accepts."""
    from curate.plugins import ParamError
    from curate.strategies import STRATEGIES

    strategy = _get(params, "strategy")
    if strategy not in STRATEGIES:
        raise SettingError(
            f"{source}: `strategy` is {strategy!r}; choose from {', '.join(STRATEGIES.names())}"
        )
    options = _get(params, "strategy_params")
    if options is _MISSING or options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise SettingError(f"{source}: `strategy_params` must be a mapping, not {options!r}")
    try:
        STRATEGIES.get(strategy).resolve_params(options)
    except ParamError as err:
        raise SettingError(f"{source}: strategy_params: {err}") from None


def check_folder(root: str | Path, stamp: str | Path | None = None) -> list[str]:
    """Validate ``root/params.yaml``; returns the rounds in run order. With ``stamp``, a
    valid file also writes that file (one fixed line): the pipeline's first stage does,
    and every other stage runs after it, so a bad setting stops `dvc repro` in seconds."""
    path = Path(root) / PARAMS_FILE
    if not path.is_file():
        raise ScaffoldError(f"{path}: no params file; run `curate init {root}` first")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ScaffoldError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    rounds = validate_params(params, str(path))
    if stamp is not None:
        atomic_write_text(stamp, STAMP_TEXT)
    return rounds


# ---------------------------------------------------------------------------- scaffold
def scaffold(
    root: str | Path, profile: str = "default", force: bool = False, samples: bool = True
) -> ScaffoldResult:
    """Write the pipeline into ``root`` (created if needed) and make it a git + DVC repo.

    Every conflict is found before anything is written, so a refusal changes nothing.
    """
    root = Path(root)
    files = pipeline_files(profile)
    if root.exists() and not root.is_dir():
        raise ScaffoldError(f"{root}: exists and is not a folder")
    conflicts = [
        rel
        for rel, text in files.items()
        if (root / rel).exists() and (root / rel).read_text(encoding="utf-8") != text
    ]
    if conflicts and not force:
        raise ScaffoldError(
            f"{root / conflicts[0]} already exists and differs from the {profile} template; "
            "pass --force to overwrite it"
        )
    result = ScaffoldResult(root=root, profile=profile)
    result.rounds = round_order(yaml.safe_load(files[PARAMS_FILE])["rounds"])
    root.mkdir(parents=True, exist_ok=True)
    result.git_initialised = _ensure_git(root)
    result.dvc_initialised = _ensure_dvc(root)
    for rel, text in files.items():
        target = root / rel
        if target.exists() and target.read_text(encoding="utf-8") == text:
            result.unchanged.append(rel)
            continue
        atomic_write_text(target, text)
        result.written.append(rel)
    if _ensure_line(root / DATA_GITIGNORE[0], DATA_GITIGNORE[1]):
        result.written.append(DATA_GITIGNORE[0])
    if samples:
        params = yaml.safe_load(files[PARAMS_FILE])
        for rel in SAMPLE_FILES:
            source, target = TEMPLATES / rel, root / rel
            wanted = rel in (params.get("pool"), _get(params, "eval.set"))
            if wanted and source.is_file() and not target.exists():
                atomic_write_bytes(target, source.read_bytes())
                result.copied_samples.append(rel)
    return result


def _ensure_line(path: Path, line: str) -> bool:
    """Add ``line`` to a gitignore-style file unless it is there; True if the file changed."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if line.strip() in existing.splitlines():
        return False
    prefix = "" if not existing or existing.endswith("\n") else "\n"
    atomic_write_text(path, existing + prefix + line)
    return True


def _run(args: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise ScaffoldError(f"{what}: `{args[0]}` is not installed or not on PATH") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ScaffoldError(f"{what} in {cwd} failed: {detail[-1] if detail else done.returncode}")


def _git_toplevel(root: Path) -> Path | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise ScaffoldError("git is not installed or not on PATH; DVC needs it") from None
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def _ensure_git(root: Path) -> bool:
    if _git_toplevel(root) is not None:
        return False
    _run(["git", "init", "--quiet"], root, "git init")
    return True


def _ensure_dvc(root: Path) -> bool:
    """``dvc init`` unless ``root`` already is a DVC repo (``--subdir`` inside a larger git repo)."""
    if (root / ".dvc").is_dir():
        return False
    subdir = ["--subdir"] if _git_toplevel(root) != root.resolve() else []
    _run([sys.executable, "-m", "dvc", "init", "--quiet", *subdir], root, "dvc init")
    return True
