"""`curate plot`: metric-per-round PNGs and the pool map, from real files and a real store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from curate.errors import EvalError
from curate.evaluation.plots import first_rounds, pca_2d, plot_rounds, read_rounds

PNG = b"\x89PNG\r\n\x1a\n"


def _write_run(folder, nll, vendi):
    folder.mkdir(parents=True)
    for number, (n, v) in enumerate(zip(nll, vendi, strict=True)):
        metrics = {
            "n": 10 * (number + 1),
            "vendi": v,
            "coverage_radius": 2.0 - 0.3 * number,
            "nll": n,
        }
        (folder / f"rd_{number}.json").write_text(json.dumps(metrics))
        (folder / f"rd_{number}.details.json").write_text(json.dumps({"questions": []}))
    (folder / "notes.json").write_text("{}")  # not a round: ignored
    return folder


def test_rounds_are_read_in_numeric_order(tmp_path):
    run = _write_run(tmp_path / "run", [3.0] * 12, [float(i) for i in range(12)])
    assert [n for n, _ in read_rounds(run)] == list(range(12))  # rd_10 after rd_9
    with pytest.raises(EvalError, match="no round metrics"):
        read_rounds(tmp_path)


def test_metric_per_round_pngs_and_table(tmp_path):
    runs = [
        _write_run(tmp_path / "kcenter", [2.5, 2.2, 2.0], [5.0, 8.0, 11.0]),
        _write_run(tmp_path / "random", [2.5, 2.3, 2.2], [5.0, 7.0, 8.5]),
    ]
    written = plot_rounds(runs, tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == ["coverage_radius.png", "nll.png", "rounds.tsv", "vendi.png"]
    for path in written:
        if path.suffix == ".png":
            blob = path.read_bytes()
            assert blob.startswith(PNG) and len(blob) > 5000
    rows = (tmp_path / "plots" / "rounds.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["run", "round", "n", "vendi"]
    assert len(rows) == 7 and rows[3].split("\t")[1:4] == ["2", "30", "11"]
    first = (tmp_path / "plots" / "nll.png").read_bytes()
    plot_rounds(runs, tmp_path / "plots")
    assert (tmp_path / "plots" / "nll.png").read_bytes() == first  # same inputs, same bytes


def test_pool_map_colours_rows_by_the_round_that_picked_them(
    store, tmp_path, cli, build_pool, write_embeddings, make_subset
):
    build_pool(store, tmp_path / "pool")
    write_embeddings(store, "e", dim=8)
    rd_0 = make_subset(store, tmp_path / "subsets" / "rd_0", [0, 1, 2])
    rd_1 = make_subset(store, tmp_path / "subsets" / "rd_1", [0, 1, 2, 7, 9])
    first = first_rounds(store, store.load_vectors("e"), [rd_0, rd_1])
    assert first[[0, 1, 2]].tolist() == [0, 0, 0] and first[[7, 9]].tolist() == [1, 1]
    assert (first == -1).sum() == 35

    runs = _write_run(tmp_path / "metrics", [2.0, 1.9], [3.0, 4.0])
    args = ["plot", str(runs), "--db", str(store.path), "--embeddings", "e",
            "--subset", str(rd_0), "--subset", str(rd_1), "--out", str(tmp_path / "plots"), "--json"]  # fmt: skip
    result = cli(*args)
    assert result.code == 0, result.err
    written = result.json()["written"]
    assert str(tmp_path / "plots" / "pool_map.png") in written
    blob = (tmp_path / "plots" / "pool_map.png").read_bytes()
    assert blob.startswith(PNG) and len(blob) > 5000
    missing = cli("plot", "--subset", rd_0, "--db", store.path)
    assert missing.code != 0 and "--embeddings" in missing.err


def test_pca_finds_the_axis_of_largest_spread():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 10, 500), rng.normal(0, 1, 500), rng.normal(0, 0.1, 500)]
    projected = pca_2d(x)
    assert abs(np.corrcoef(projected[:, 0], x[:, 0])[0, 1]) > 0.99
    assert abs(np.corrcoef(projected[:, 1], x[:, 1])[0, 1]) > 0.99
    np.testing.assert_array_equal(pca_2d(x), projected)
