"""Concurrent writers on one database folder: real `curate` processes racing each other.

After every race a checker asserts what issue 13 asks: the tables open, no hash or pool
position is stored twice, positions are 0..n-1, the counts equal a serial run of the
processes that succeeded, the ingest log accounts for every row, and every process either
succeeded or failed with exit code 3 and one line naming the writer-lock holder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from curate.store import LOCK_TIMEOUT_ENV, Store

ROOT = Path(__file__).resolve().parents[2]


def _records(start: int, stop: int) -> list[dict]:
    return [
        {"instruction": f"Question {i}: what is {i} squared?", "input": "", "output": f"{i * i}"}
        for i in range(start, stop)
    ]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _start(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "curate", *args],
        cwd=cwd,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen]) -> list[bool]:
    """Wait for every process; each succeeded, or was refused with exit 3 and one line
    naming the lock holder. Returns which succeeded."""
    ok = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert "Traceback" not in err, err
        if proc.returncode == 0:
            ok.append(True)
            continue
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert proc.returncode == 3, (proc.returncode, err)
        assert len(errors) == 1 and "is being written by pid" in errors[0], err
        assert "running `curate " in errors[0], err  # the holder's command line
        ok.append(False)
    return ok


def _check_pool(db: Path, expected: list[dict]) -> None:
    """The pool holds each of the ``expected`` records once, at positions 0..n-1."""
    store = Store(db)
    pool = store.read_pool(["pos", "hash", "instruction"])
    hashes, positions = pool["hash"].to_pylist(), pool["pos"].to_pylist()
    assert len(set(hashes)) == len(hashes), f"{len(hashes) - len(set(hashes))} duplicate hashes"
    assert positions == list(range(len(positions))), "pool positions repeat or have gaps"
    assert sorted(pool["instruction"].to_pylist()) == sorted({r["instruction"] for r in expected})
    assert store.ingest_log_totals()["added"] == len(hashes)


@pytest.mark.slow
def test_concurrent_ingests_of_one_file_store_each_row_once(tmp_path):
    records = _records(0, 3000)
    source = _write_jsonl(tmp_path / "half.jsonl", records)
    procs = [_start("ingest", str(source), "--db", "db", cwd=tmp_path) for _ in range(4)]
    assert any(_finish(procs))
    _check_pool(tmp_path / "db", records)


@pytest.mark.slow
def test_concurrent_ingests_of_different_files_keep_positions_unique(tmp_path):
    parts = [_records(i * 1500, i * 1500 + 2000) for i in range(3)]  # neighbours share 500
    sources = [_write_jsonl(tmp_path / f"part{i}.jsonl", p) for i, p in enumerate(parts)]
    procs = [_start("ingest", str(s), "--db", "db", cwd=tmp_path) for s in sources]
    ok = _finish(procs)
    assert any(ok)
    expected = [r for p, good in zip(parts, ok, strict=True) if good for r in p]
    _check_pool(tmp_path / "db", expected)


def test_a_held_lock_refuses_writers_by_name_and_never_blocks_readers(tmp_path):
    source = _write_jsonl(tmp_path / "a.jsonl", _records(0, 50))
    assert _finish([_start("ingest", str(source), "--db", "db", cwd=tmp_path)]) == [True]
    store = Store(tmp_path / "db")
    version = store.pool_version()
    more = _write_jsonl(tmp_path / "b.jsonl", _records(50, 80))
    with store.writing("a test that holds the lock"):
        assert f"pid {os.getpid()}" in store.lock_holder()
        env = _env(**{LOCK_TIMEOUT_ENV: "0.5"})
        writer = _start("ingest", str(more), "--db", "db", cwd=tmp_path, env=env)
        reader = _start("pool", "--db", "db", "--json", cwd=tmp_path, env=env)
        _, err = writer.communicate(timeout=120)
        out, _ = reader.communicate(timeout=120)
    assert writer.returncode == 3, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0], err
    assert "(a test that holds the lock, since" in lines[0], lines[0]
    assert reader.returncode == 0 and json.loads(out)["rows"] == 50
    assert store.pool_version() == version and store.pool_count() == 50
    assert store.lock_holder() is None
    _check_pool(tmp_path / "db", _records(0, 50))


def test_an_embed_skipped_for_its_strategy_creates_its_table_under_the_writer_lock(tmp_path):
    """`curate embed --for-strategy random` embeds nothing but creates the empty table its
    pipeline stage declares; that create waits for the writer lock like every other write
    (it went through the raw LanceDB handle, past the lock, before issue 22)."""
    source = _write_jsonl(tmp_path / "a.jsonl", _records(0, 10))
    assert _finish([_start("ingest", str(source), "--db", "db", cwd=tmp_path)]) == [True]
    store = Store(tmp_path / "db")
    skip = ("embed", "--db", "db", "--for-strategy", "random", "--json")
    with store.writing("a test that holds the lock"):
        refused = _start(*skip, cwd=tmp_path, env=_env(**{LOCK_TIMEOUT_ENV: "0.5"}))
        _, err = refused.communicate(timeout=120)
        assert refused.returncode == 3, err
        assert "(a test that holds the lock, since" in err, err
        assert not store.has_embeddings("minilm")
    done = _start(*skip, cwd=tmp_path)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert json.loads(out) == {"name": "minilm", "skipped": True, "strategy": "random"}
    assert store.has_embeddings("minilm") and store.embeddings_count("minilm") == 0


def test_ingest_killed_between_commit_and_log_is_logged_by_the_next_writer(tmp_path):
    """kill -9 right after the pool commit, before the ingest-log write (issue 13, point 9):
    the next writer logs it, so `curate pool` still counts its dropped duplicates."""
    records = _records(0, 40)
    first = _write_jsonl(tmp_path / "a.jsonl", records + records[:7])  # 7 exact duplicates
    killer = textwrap.dedent(
        """
        import os, sys
        import lancedb.db, lancedb.table
        create, add = lancedb.db.LanceDBConnection.create_table, lancedb.table.LanceTable.add
        def create_table(self, name, *a, **k):
            if name == "ingest_log":
                os._exit(137)
            return create(self, name, *a, **k)
        def add_rows(self, *a, **k):
            if self.name == "ingest_log":
                os._exit(137)
            return add(self, *a, **k)
        lancedb.db.LanceDBConnection.create_table = create_table
        lancedb.table.LanceTable.add = add_rows
        from curate.cli import main
        sys.argv = ["curate", "ingest", sys.argv[1], "--db", "db"]
        main()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", killer, str(first)], cwd=tmp_path, env=_env(), timeout=120
    )
    assert proc.returncode == 137
    assert Store(tmp_path / "db").pool_count() == 40  # the append had committed
    second = _write_jsonl(tmp_path / "b.jsonl", _records(40, 45) + records[:3])
    assert _finish([_start("ingest", str(second), "--db", "db", cwd=tmp_path)]) == [True]
    out = subprocess.run(
        [sys.executable, "-m", "curate", "pool", "--db", "db", "--json"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(out.stdout)["duplicates_dropped"] == 7 + 3
    _check_pool(tmp_path / "db", _records(0, 45))


def _vector_file(path: Path, ids: list[str], seed: int) -> Path:
    vectors = np.random.default_rng(seed).standard_normal((len(ids), 8)).astype(np.float32)
    np.savez(path, id=np.array(ids), vector=vectors)
    return path


@pytest.mark.slow
def test_concurrent_imports_under_one_name_leave_one_whole_file(tmp_path):
    source = _write_jsonl(tmp_path / "a.jsonl", _records(0, 500))
    assert _finish([_start("ingest", str(source), "--db", "db", cwd=tmp_path)]) == [True]
    ids = Store(tmp_path / "db").read_pool(["id"])["id"].to_pylist()
    files = [_vector_file(tmp_path / f"v{i}.npz", ids, seed=i) for i in range(3)]
    procs = [
        _start("embed", "--import", str(f), "--name", "v", "--db", "db", cwd=tmp_path)
        for f in files
    ]
    assert any(_finish(procs))
    loaded = Store(tmp_path / "db").load_vectors("v").matrix
    assert Store(tmp_path / "db").embeddings_count("v") == len(ids)
    assert any(np.array_equal(loaded, np.load(f)["vector"]) for f in files)


@pytest.mark.slow
def test_ingest_racing_embed_loses_and_duplicates_nothing(tmp_path):
    first = _records(0, 200)
    source = _write_jsonl(tmp_path / "a.jsonl", first)
    assert _finish([_start("ingest", str(source), "--db", "db", cwd=tmp_path)]) == [True]
    more = _records(200, 2200)
    extra = _write_jsonl(tmp_path / "b.jsonl", more)
    procs = [
        _start("embed", "--db", "db", "--device", "cpu", cwd=tmp_path),
        _start("ingest", str(extra), "--db", "db", cwd=tmp_path),
        _start("embed", "--db", "db", "--device", "cpu", cwd=tmp_path),
    ]
    ok = _finish(procs)
    assert ok[0] or ok[2]
    _check_pool(tmp_path / "db", first + (more if ok[1] else []))
    # a serial rerun completes the embeddings: one current vector per pool row
    assert _finish([_start("embed", "--db", "db", "--device", "cpu", cwd=tmp_path)]) == [True]
    store = Store(tmp_path / "db")
    stored = store.read_embeddings("minilm", ["id", "hash"])
    keys = list(zip(stored["id"].to_pylist(), stored["hash"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == store.pool_count()
    assert store.load_vectors("minilm").matrix.shape == (store.pool_count(), 384)
