"""`curate select` (and `curate embed`) past one process: real torchrun launches, real gloo
process groups, a real LanceDB. Each result is compared with a single-process run of the
same inputs: the subset's examples.jsonl byte for byte, the manifest's picks and distances.

"Two nodes" are two torchrun invocations (`--nnodes 2 --node-rank 0/1`) meeting at a
localhost rendezvous, as two machines would at the first node's address.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.ingest import ingest
from curate.select import SelectRequest, select
from curate.store import Store, embedding_schema

ROOT = Path(__file__).resolve().parents[1]
ENV = {"OMP_NUM_THREADS": "1", "CURATE_DIST_TIMEOUT": "30"}


def _pool(folder: Path, rows: int, dim: int = 8, seed: int = 0) -> tuple[Store, np.ndarray]:
    """A pool of ``rows`` examples whose vectors are stored in a shuffled order (not pool
    order), with two equal vectors (a tie) and one row stored twice (the last one counts)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "pool.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"ex-{i:05d}", "instruction": f"Question {i} on {i * 7 % 13}.",
                        "output": "An answer " + "word " * (i % 9 + 1)}) + "\n"
            for i in range(rows)
        )
    )  # fmt: skip
    store = Store(folder / "db")
    ingest(store, [str(source)])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    x[7] = x[3]  # equal distances to everything: ties go to the lower pool position
    order = np.concatenate([[11], rng.permutation(rows)])  # row 11 stored first with ...
    stored = x[order].copy()
    stored[0] = 100.0  # ... a stale far-away vector that a later row of its own replaces
    pool = store.read_pool(["id", "hash"])
    columns = {
        "id": pool["id"].take(order),
        "hash": pool["hash"].take(order),
        "fingerprint": pa.array(["fp-test"] * len(order)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(stored.ravel(), pa.float32()), dim),
    }
    schema = embedding_schema(dim)
    store.create_embeddings("e", schema, pa.table(columns, schema=schema))
    return store, x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args, *, nproc=1, node=None, port=None, cwd=None, script=None) -> subprocess.Popen:
    """``torchrun ... -m curate ARGS`` (or ``torchrun ... SCRIPT ARGS``): one node of two
    (``node`` 0/1) or standalone."""
    where = (
        ["--standalone"]
        if node is None
        else ["--nnodes", "2", "--node-rank", str(node), "--master-addr", "127.0.0.1",
              "--master-port", str(port)]
    )  # fmt: skip
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={nproc}",
         *([str(script)] if script else ["-m", "curate"]), *map(str, args)],
        cwd=cwd, env={**os.environ, "PYTHONPATH": path, **ENV},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout}s:\n{err[-2000:]}")
    return proc.returncode, out, err


def _two_nodes(args_0, args_1=None) -> list[tuple[int, str, str]]:
    port = _free_port()
    procs = [_launch(a, node=n, port=port) for n, a in enumerate([args_0, args_1 or args_0])]
    return [_finish(p) for p in procs]


def _single(store: Store, tmp: Path, **request) -> Path:
    out = tmp / "single"
    select(store, SelectRequest(**request)).write(out)
    return out


def _assert_same_subset(one: Path, many: Path) -> None:
    assert (many / "examples.jsonl").read_bytes() == (one / "examples.jsonl").read_bytes()
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (one, many))
    assert b["picks"] == a["picks"]  # ids, hashes and exact distances
    for key in ("strategy", "params", "seed", "budget", "pool", "embeddings", "parent"):
        assert b[key] == a[key], key


@pytest.mark.slow
def test_two_ranks_pick_what_one_process_picks(tmp_path):
    store, x = _pool(tmp_path, 400)
    one = _single(store, tmp_path, budget=60, seed=3, name="s")
    out = tmp_path / "two"
    code, stdout, err = _finish(
        _launch(["select", "--db", store.path, "--budget", 60, "--seed", 3, "--name", "s",
                 "--out", out, "--json"], nproc=2)
    )  # fmt: skip
    assert code == 0, err[-3000:]
    summary = json.loads(stdout[stdout.index("{") :])  # only rank 0 prints
    assert summary["size"] == 60 and summary["ranks"] == 2
    _assert_same_subset(one, out)
    picks = [p["id"] for p in json.loads((out / "manifest.json").read_text())["picks"]]
    assert "ex-00011" not in picks[:2]  # its stale stored vector (100, ...) would be far


@pytest.mark.slow
def test_two_nodes_select_with_parent_and_cosine_equals_one_process(tmp_path):
    store, _ = _pool(tmp_path, 300)
    parent = _single(store, tmp_path, budget=20, name="p")
    one = tmp_path / "one"
    request = SelectRequest(budget=50, parent=parent, params={"metric": "cosine"}, name="c")
    select(store, request).write(one)
    out = tmp_path / "nodes"
    args = ["select", "--db", store.path, "--budget", 50, "--parent", parent, "--metric",
            "cosine", "--name", "c", "--out", out, "--json"]  # fmt: skip
    results = _two_nodes(args)
    assert [r[0] for r in results] == [0, 0], results[0][2][-3000:] + results[1][2][-3000:]
    assert json.loads(results[0][1][results[0][1].index("{") :])["ranks"] == 2
    assert "{" not in results[1][1]  # the node without rank 0 prints nothing
    _assert_same_subset(one, out)


@pytest.mark.slow
def test_two_nodes_embed_equals_one_process(tiny_lm, tmp_path):
    from curate.embed import embed
    from curate.embedders import load_embedder

    lines = (ROOT / "data" / "sample" / "pool.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "pool.jsonl").write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    store = Store(tmp_path / "db")
    ingest(store, [str(tmp_path / "pool.jsonl")])
    args = ["embed", "--db", store.path, "--embedder", f"lm:{tiny_lm}", "--name", "nodes",
            "--batch-size", 3, "--max-length", 128, "--device", "cpu", "--precision", "fp32"]  # fmt: skip
    results = _two_nodes(args)
    assert [r[0] for r in results] == [0, 0], results[0][2][-3000:] + results[1][2][-3000:]
    embedder = load_embedder(f"lm:{tiny_lm}", max_length=128, device="cpu", precision="fp32")
    embed(store, embedder, "one", batch_size=3)
    two, one = store.load_vectors("nodes"), store.load_vectors("one")
    assert store.embeddings_count("nodes") == 12 and two.fingerprint == one.fingerprint
    np.testing.assert_allclose(two.matrix, one.matrix, atol=1e-5)


@pytest.mark.slow
def test_a_node_that_cannot_open_the_table_stops_every_rank_with_one_line(tmp_path):
    store, _ = _pool(tmp_path, 50)
    out = tmp_path / "out"
    args = ["select", "--db", store.path, "--budget", 10, "--out", out]
    missing = tmp_path / "not-mounted"
    started = time.monotonic()
    results = _two_nodes(args, [*args[:2], missing, *args[3:]])
    assert time.monotonic() - started < 120
    assert all(code != 0 for code, _, _ in results)
    lines = [ln for ln in results[0][2].splitlines() if ln.startswith("error:")]
    assert lines == [f"error: rank 1: no pool table in {missing}; run `curate ingest SOURCE "
                     f"--db {missing}`"], results[0][2][-2000:]  # fmt: skip
    assert not [ln for ln in results[1][2].splitlines() if ln.startswith("error:")]
    assert not out.exists()


@pytest.mark.slow
def test_sharded_kcenter_refuses_to_ignore_hygiene_results(tmp_path):
    store, _ = _pool(tmp_path, 40)
    source = tmp_path / "twin.jsonl"  # a near duplicate of ex-00001, so dedup flags a row
    twin = {"instruction": "Question 1 on 7.", "output": "An  answer word word"}
    source.write_text(json.dumps(twin) + "\n")
    ingest(store, [str(source)])
    from curate.hygiene.dedup import DedupSettings, dedup

    assert dedup(store, DedupSettings()).flagged == 1
    out = tmp_path / "out"
    code, _, err = _finish(
        _launch(["select", "--db", store.path, "--embeddings", "e", "--budget", 10,
                 "--out", out], nproc=2)
    )  # fmt: skip
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code != 0 and len(lines) == 1 and "sharded K-center does not do yet" in lines[0], err
    assert not out.exists()


# `curate` whose progress bar, on rank 0, also touches $MARK at the first pick after the first
MARKED_CLI = """
import os, pathlib, sys
import curate.cli._render as render
def marking(renderer):  # a bar on a terminal, lines in a log: mark whichever runs
    advance = renderer.advance
    def marked(self, n=1):
        pathlib.Path(os.environ["MARK"]).touch()
        advance(self, n)
    renderer.advance = marked
marking(render.RichProgress)
marking(render.LineProgress)
from curate.cli import main
sys.argv = ["curate", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_a_rank_killed_mid_select_stops_every_rank_and_writes_nothing(tmp_path, monkeypatch):
    store, _ = _pool(tmp_path, 3000)
    out, mark, script = tmp_path / "out", tmp_path / "picking", tmp_path / "marked_cli.py"
    script.write_text(MARKED_CLI)
    monkeypatch.setenv("MARK", str(mark))
    args = ["select", "--db", store.path, "--budget", 2500, "--out", out]
    port = _free_port()
    nodes = [_launch(args, node=n, port=port, script=script) for n in (0, 1)]
    worker = _worker_of(nodes[1])
    deadline = time.monotonic() + 120
    while not mark.exists() and time.monotonic() < deadline and nodes[0].poll() is None:
        time.sleep(0.05)
    assert mark.exists() and nodes[0].poll() is None, "the loop never ran"
    started = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    results = [_finish(p, timeout=90) for p in nodes]
    assert time.monotonic() - started < 45  # every rank gave up within a bounded time
    assert all(code != 0 for code, _, _ in results), [r[0] for r in results]
    assert not out.exists() and not list(tmp_path.glob("out*"))
    lost = [ln for ln in results[0][2].splitlines() if ln.startswith("error:")]
    assert len(lost) == 1 and "a rank was lost during selection" in lost[0], results[0][2][:3000]


def _worker_of(agent: subprocess.Popen, timeout: float = 60) -> int:
    """The pid of the one worker a torchrun agent started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        if pids:
            return int(pids[0])
        time.sleep(0.1)
    pytest.fail("torchrun started no worker")
