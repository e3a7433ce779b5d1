"""``curate report``: is the selection better than random on this pool, across seeds?

Reads every DVC experiment of a repository and its workspace (:mod:`.collect`), groups
the runs and computes paired intervals against the baseline (:mod:`.stats`), and writes
the tables and images (:mod:`.render`, :mod:`.plots`); :func:`report_repository`
(:mod:`.workspace`) does all of it from the repository's ``params.yaml``, for the command
line and scripts alike.
"""

from curate.report.collect import collect_runs
from curate.report.model import FULL, WORKSPACE, Report, ReportError, Row, Run, round_number
from curate.report.render import table_rows, write_report
from curate.report.stats import build_report, check
from curate.report.workspace import RepositoryReport, read_params, report_repository

__all__ = [
    "FULL", "WORKSPACE", "Report", "ReportError", "Row", "Run", "build_report", "check",
    "collect_runs", "round_number", "table_rows", "write_report", "RepositoryReport",
    "read_params", "report_repository",
]  # fmt: skip
