"""The README's code runs as written: the Python API example and the strategy example."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block under the README section called ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_python_api_example_runs_verbatim(tmp_path, monkeypatch, sample_pool, capsys):
    sample = tmp_path / "data" / "sample"
    sample.mkdir(parents=True)
    shutil.copy(sample_pool, sample / "pool.jsonl")
    shutil.copy(sample_pool.with_name("eval.jsonl"), sample / "eval.jsonl")
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("Python API"), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    summary = eval(printed[0])  # the selection's to_dict(), printed
    assert summary["size"] == 8 and summary["params"]["metric"] == "cosine"
    assert float(printed[1]) > 0  # mean answer NLL of the trained model
    import curate

    subset = curate.load_subset("data/subsets/kc-8")
    assert subset.manifest.strategy == "kcenter" and len(subset.ids) == 8
    assert (tmp_path / "data/models/kc-8/train_metrics.json").is_file()


def test_strategy_example_is_a_working_plugin():
    namespace: dict = {}
    exec(compile(python_block("Writing a strategy"), "README.md", "exec"), namespace)
    strategy_class = namespace["LongestFirst"]
    from curate.progress import NO_PROGRESS
    from curate.strategies import PoolArrays

    vectors = np.array([[1.0, 0], [3, 0], [0, 2], [0, 5], [4, 4]], np.float32)
    strategy = strategy_class({"skip": "1"})
    picks = strategy.select(PoolArrays(5, vectors), np.array([4]), 2, 0, NO_PROGRESS).indices
    assert picks.tolist() == [1, 2]  # norms 5 (row 3) skipped, then 3 and 2
    assert strategy.params() == {"skip": 1}
