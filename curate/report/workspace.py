"""``curate report`` as one library call: a repository's params, runs, report and files.

The command line and any script get the same report from :func:`report_repository`: it
reads the repository's ``params.yaml`` (the strategy to check, the pool database, the eval
set), collects every experiment's runs, builds the paired intervals, warns when the eval
set overlaps the pool, writes the report files and says whether the strategy beats the
baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.paths import DEFAULT_DB
from curate.progress import NO_PROGRESS, Progress
from curate.report.collect import collect_runs
from curate.report.model import Report
from curate.report.render import write_report
from curate.report.stats import build_report, check

DEFAULT_STRATEGY = "kcenter"  # when neither the caller nor params.yaml names one


@dataclass
class RepositoryReport:
    """A written report: the figures, the files, and the check of ``strategy``."""

    report: Report
    written: list[Path]
    strategy: str
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "files": [str(p) for p in self.written],
            "check": self.reason,
        }


def read_params(repo: Path) -> dict[str, Any]:
    """The repository's ``params.yaml`` as a mapping (empty when absent or not a mapping)."""
    import yaml

    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return params if isinstance(params, dict) else {}


def report_repository(
    repo: Path,
    out: Path,
    *,
    baseline: str = "random",
    strategy: str | None = None,
    n_boot: int = 10_000,
    progress: Progress = NO_PROGRESS,
) -> RepositoryReport:
    """Compare every experiment's rounds in ``repo`` against ``baseline`` and write the
    report files to ``out``. ``strategy`` (default: ``params.yaml``'s) is the one checked
    against the baseline and drawn on the pool map."""
    params = read_params(repo)
    strategy = strategy or params.get("strategy") or DEFAULT_STRATEGY
    db = params.get("db") or str(DEFAULT_DB)
    runs, experiments = collect_runs(repo, progress)
    report = build_report(runs, experiments, baseline, n_boot, progress=progress)
    report.warnings.extend(_overlap(repo, db, params))
    written = write_report(report, out, repo, runs, strategy, db)
    passed, reason = check(report, strategy)
    return RepositoryReport(report, written, strategy, passed, reason)


def _overlap(repo: Path, db: str, params: dict[str, Any]) -> list[str]:
    """The eval set's overlap with the pool, as a warning line (none when either is absent)."""
    from curate.hygiene.decontaminate import overlap_warning
    from curate.store import Store

    evaluation = params.get("eval")
    eval_set = evaluation.get("set") if isinstance(evaluation, dict) else None
    if not isinstance(eval_set, str) or not (repo / eval_set).is_file():
        return []
    warning = overlap_warning(Store(repo / db), repo / eval_set)
    return [warning] if warning else []
