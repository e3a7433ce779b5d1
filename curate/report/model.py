"""What `curate report` computes: runs read from experiments, rows of a round's table,
the report."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from curate.errors import CurateError

FULL = "full"
WORKSPACE = "workspace"
# What makes a run of a round (besides the seed); anything else in params.yaml (db, device,
# the rounds map) does not change its result.
ROUND_KEYS = (
    "strategy", "strategy_params", "init_size", "n_query", "base_model", "train",
    "max_length", "eval",
)  # fmt: skip
FULL_KEYS = ("base_model", "train", "max_length", "eval")
_ROUND = re.compile(r"^rd_(\d+)$")
METRIC_TITLES = {"nll": "held-out NLL (lower = better)", "judge_score": "judge win rate"}
BETTER_SIDE = {"nll": "below 0 = better", "judge_score": "above 0 = better"}


class ReportError(CurateError):
    """Experiments that cannot be read or compared."""


@dataclass
class Run:
    """One evaluated model: a round of one experiment (or the whole-pool reference)."""

    rev: str  # commit sha, or "workspace"
    name: str  # experiment name
    round: str  # rd_<r> or "full"
    params: dict[str, Any]  # flattened group params (no seed)
    seed: int
    metrics: dict[str, Any]
    questions: dict[str, dict[str, float]]  # question id -> {"nll": ..., "judge_score": ...}
    details_md5: str


@dataclass
class Row:
    """One group's line of a round's table."""

    group: str
    strategy: str
    seeds: list[int]
    n: float | None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # nll/judge_score
    delta: dict[str, dict[str, Any]] = field(default_factory=dict)  # vs the baseline (+ its label)
    vendi: float | None = None
    coverage_radius: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    baseline: str
    rounds: dict[str, list[Row]]  # "rd_0", ... -> rows (the full reference last)
    experiments: list[str]
    warnings: list[str]
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "n_boot": self.n_boot,
            "experiments": self.experiments,
            "warnings": self.warnings,
            "rounds": {r: [row.to_dict() for row in rows] for r, rows in self.rounds.items()},
        }

    @property
    def last_round(self) -> str | None:
        numbered = [r for r in self.rounds if _ROUND.match(r)]
        return max(numbered, key=round_number) if numbered else None


def group_key(params: Mapping[str, Any]) -> str:
    """One spelling of a group's params, to compare and deduplicate groups."""
    return json.dumps(params, sort_keys=True, default=str)


def round_number(name: str) -> int:
    match = _ROUND.match(name)
    return int(match.group(1)) if match else 10**9
