"""Reading experiments without checking anything out: ``params.yaml``, ``dvc.lock`` and the
metrics files from each experiment's commit (git), the per-question details from the DVC
cache by the hash ``dvc.lock`` records. A round's result counts for an experiment only
when every stage that produced it recorded the params the experiment's ``params.yaml``
holds (so a result an experiment merely inherited from its baseline is not counted twice).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from curate.evaluation.compare import PER_QUESTION
from curate.progress import NO_PROGRESS, Progress
from curate.report.model import FULL, FULL_KEYS, ROUND_KEYS, WORKSPACE, ReportError, Run, group_key
from curate.scaffold import lookup


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = {} if isinstance(value, Mapping) else value
    return flat


class Source:
    """Files of one revision: git-tracked ones from the commit, DVC outputs from the cache."""

    def __init__(self, root: Path, rev: str, dvc_repo: Any):
        self.root, self.rev, self.dvc_repo = root, rev, dvc_repo

    def text(self, path: str) -> str | None:
        if self.rev == WORKSPACE:
            file = self.root / path
            return file.read_text(encoding="utf-8") if file.is_file() else None
        done = subprocess.run(
            ["git", "show", f"{self.rev}:{path}"], cwd=self.root, capture_output=True, text=True
        )
        return done.stdout if done.returncode == 0 else None

    def output(self, path: str, md5: str | None) -> str:
        """A DVC-tracked file's text: the object its hash names, else through ``dvc.api``."""
        if self.rev == WORKSPACE and (self.root / path).is_file():
            return (self.root / path).read_text(encoding="utf-8")
        if md5 and not md5.endswith(".dir"):
            cached = Path(self.dvc_repo.cache.local.oid_to_path(md5))
            if cached.is_file():
                return cached.read_text(encoding="utf-8")
        import dvc.api

        try:
            with dvc.api.open(
                path, repo=str(self.root), rev=None if self.rev == WORKSPACE else self.rev
            ) as fh:
                return fh.read()
        except Exception as err:  # dvc raises many kinds; one line for the user
            raise ReportError(
                f"{path} of experiment {self.rev[:7]} is not in the DVC cache "
                f"({type(err).__name__}); `dvc exp pull` or `dvc pull` it first"
            ) from None


def _revisions(root: Path) -> list[tuple[str, str]]:
    """(rev, name): the workspace, then every experiment ref, newest first."""
    from dvc.repo.experiments.utils import exp_refs
    from scmrepo.git import Git

    scm = Git(str(root))
    try:
        refs = [(str(ref), ref.name) for ref in exp_refs(scm)]
        found = []
        for ref, name in refs:
            sha = scm.get_ref(ref)
            if sha:
                found.append((sha, name))
    finally:
        scm.close()
    stamps = {}
    if found:
        done = subprocess.run(
            ["git", "show", "-s", "--format=%H %ct", *[sha for sha, _ in found]],
            cwd=root, capture_output=True, text=True, check=True,
        )  # fmt: skip
        stamps = dict(line.split() for line in done.stdout.splitlines() if line.strip())
    found.sort(key=lambda item: (-int(stamps.get(item[0], 0)), item[1]))
    return [(WORKSPACE, WORKSPACE), *found]


def _chain(rounds: Mapping[str, str], name: str) -> list[str]:
    """The rounds ``name`` grows from, rd_0 first."""
    chain = [name]
    while chain[-1] != "rd_0":
        parent = rounds.get(chain[-1])
        if parent is None or parent in chain:
            return []
        chain.append(parent)
    return chain[::-1]


def _stage_names(round_name: str) -> list[str]:
    if round_name == FULL:
        return ["select_full", "train_full", "eval_full"]
    if round_name == "rd_0":
        return ["select_rd_0", "train_rd_0", "eval_rd_0"]
    return [
        f"embed@{round_name}",
        f"select@{round_name}",
        f"train@{round_name}",
        f"eval@{round_name}",
    ]


def _current(lock: Mapping[str, Any], stages: list[str], params: Mapping[str, Any]) -> bool:
    """Every stage ran, with the params this revision's params.yaml holds."""
    for stage in stages:
        entry = lock.get(stage)
        if entry is None:
            return False
        recorded = (entry.get("params") or {}).get("params.yaml") or {}
        for key, value in recorded.items():
            if lookup(params, key) != value:
                return False
    return True


def _metrics_out(entry: Mapping[str, Any], suffix: str) -> tuple[str, str | None] | None:
    for out in entry.get("outs") or []:
        if str(out.get("path", "")).endswith(suffix):
            return str(out["path"]), out.get("md5")
    return None


def _question_values(details: Any, where: str) -> dict[str, dict[str, float]]:
    if not isinstance(details, dict) or not isinstance(details.get("questions"), list):
        raise ReportError(f"{where}: no per-question results")
    values: dict[str, dict[str, float]] = {}
    for question in details["questions"]:
        row = {}
        for metric, (read, _) in PER_QUESTION.items():
            value = read(question)
            if isinstance(value, int | float) and math.isfinite(value):
                row[metric] = float(value)
        values[str(question.get("id"))] = row
    return values


def _read_revision(root: Path, rev: str, name: str, dvc_repo: Any) -> list[Run]:
    source = Source(root, rev, dvc_repo)
    params_text, lock_text = source.text("params.yaml"), source.text("dvc.lock")
    if params_text is None or lock_text is None:
        return []
    params = yaml.safe_load(params_text) or {}
    lock = (yaml.safe_load(lock_text) or {}).get("stages") or {}
    rounds_map = params.get("rounds") or {}
    names = ["rd_0", *rounds_map, FULL]
    runs = []
    for round_name in names:
        if round_name == FULL:
            stages = _stage_names(FULL)
            keys: tuple[str, ...] = FULL_KEYS
        else:
            chain = _chain(rounds_map, round_name)
            stages = [s for r in chain for s in _stage_names(r)]
            keys = ROUND_KEYS
        if not stages or not _current(lock, stages, params):
            continue
        eval_entry = lock[stages[-1]]
        metrics_out = _metrics_out(eval_entry, ".json")
        details_out = _metrics_out(eval_entry, ".details.json")
        if details_out is None:
            continue
        metrics_path = details_out[0].replace(".details.json", ".json")
        metrics_text = source.text(metrics_path)
        if metrics_text is None and metrics_out is not None:
            metrics_text = source.text(metrics_out[0])
        where = f"{details_out[0]} of {name}"
        try:
            metrics = json.loads(metrics_text) if metrics_text else {}
            details = json.loads(source.output(*details_out))
        except json.JSONDecodeError as err:
            raise ReportError(f"{where}: malformed JSON ({err})") from None
        group = flatten({k: params.get(k) for k in keys})
        if round_name == FULL:
            group["strategy"] = FULL
        runs.append(
            Run(
                rev=rev,
                name=name,
                round=round_name,
                params=group,
                seed=int(params.get("seed", 0)),
                metrics=metrics if isinstance(metrics, dict) else {},
                questions=_question_values(details, where),
                details_md5=str(details_out[1]),
            )
        )
    return runs


def collect_runs(root: str | Path, progress: Progress = NO_PROGRESS) -> tuple[list[Run], list[str]]:
    """Every evaluated round of the workspace and the experiments; and the experiment names."""
    from dvc.repo import Repo

    root = Path(root).resolve()
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").is_file():
        raise ReportError(f"{root}: not a DVC pipeline folder (needs .dvc/ and dvc.yaml)")
    revisions = _revisions(root)
    progress.start(len(revisions), "experiments", "read experiments")
    runs: list[Run] = []
    seen: set[tuple] = set()
    with Repo(str(root)) as dvc_repo:
        for rev, name in revisions:
            for run in _read_revision(root, rev, name, dvc_repo):
                key = (run.round, group_key(run.params), run.seed)
                if key not in seen:  # the workspace, then the newest experiment, wins
                    seen.add(key)
                    runs.append(run)
            progress.advance(1)
    return runs, [name for _, name in revisions]
