"""Full disks, refused permissions and read-only file systems (issue 13, point 2).

Each case must end as one line naming the path, exit code 1, no traceback, and every
earlier table and folder as it was; after the cause is removed, a rerun gives what an
uninterrupted run gives. ENOSPC comes from a small tmpfs where mounting is allowed, and
from errors injected at the write sites (Lance's own RuntimeError text included) always;
EACCES from an unprivileged user (made with useradd when the suite runs as root).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from curate.files import sha256_file
from tests.faults.tools import (
    TALLY,
    fill,
    one_error_line,
    pool_state,
    records,
    run,
    write_jsonl,
)


def _random_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"instruction": rng.bytes(200).hex(), "input": "", "output": str(i)} for i in range(n)]


def _bytes_in(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _base_db(where: Path, rows: int = 100) -> Path:
    from curate.ingest import ingest
    from curate.store import Store

    db = where / "db"
    ingest(Store(db), [str(write_jsonl(where / "first.jsonl", records(0, rows)))])
    return db


@pytest.mark.slow
@pytest.mark.parametrize(
    ("site", "free_per_written"),
    [("staging", 0.05), ("commit", 2.4)],  # staging is ~2x the Lance files it becomes
)
def test_full_disk_during_ingest_is_one_line_and_keeps_the_pool(
    tmp_path, small_disk, fault_check, site, free_per_written
):
    from curate.ingest import ingest
    from curate.store import Store

    base = _base_db(tmp_path)
    source = write_jsonl(tmp_path / "more.jsonl", _random_rows(3000))
    shutil.copytree(base, tmp_path / "ref")
    ingest(Store(tmp_path / "ref"), [str(source)])
    before, after = pool_state(base), pool_state(tmp_path / "ref")
    written = _bytes_in(tmp_path / "ref") - _bytes_in(base)

    disk = small_disk(8)
    db = shutil.copytree(base, disk / "db")
    fill(disk, int(written * free_per_written / 1024))
    done = run("ingest", str(source), "--db", str(db), cwd=tmp_path)
    named = f"{db}/.curate-staging-" if site == "staging" else f"{db}: the disk is full"
    one_error_line(done, named, "the disk is full", "nothing was changed")
    assert fault_check(db, before, after) == "old"
    assert not list(db.glob(".curate-staging-*"))

    (disk / "ballast").unlink()
    rerun = run("ingest", str(source), "--db", str(db), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert pool_state(db) == after
    assert Store(db).ingest_log_totals()["added"] == len(after)


def _db_with_vectors(tmp_path: Path) -> Path:
    from curate.embed import import_vectors
    from curate.store import Store

    db = _base_db(tmp_path, 600)
    ids = Store(db).read_pool(["id"])["id"].to_pylist()
    vectors = np.random.default_rng(1).standard_normal((len(ids), 16)).astype(np.float32)
    np.savez(tmp_path / "v.npz", id=np.array(ids), vector=vectors)
    import_vectors(Store(db), tmp_path / "v.npz", "v")
    return db


@pytest.mark.slow
def test_full_disk_while_select_writes_keeps_the_old_subset(tmp_path, small_disk, fault_check):
    db = _db_with_vectors(tmp_path)
    rows = pool_state(db)
    select = ["select", "--embeddings", "v", "--db", str(db), "--force"]
    disk = small_disk(2)
    out = disk / "s"
    first = run(*select, "--budget", "20", "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    old = {p.name: sha256_file(p) for p in out.iterdir()}
    reference = run(*select, "--budget", "500", "--out", str(tmp_path / "ref" / "s"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    fill(disk, 8)
    done = run(*select, "--budget", "500", "--out", str(out), cwd=tmp_path)
    one_error_line(done, str(disk), "the disk is full")
    fault_check(db, rows, rows, subsets=[out], embeddings=("v",))
    assert {p.name: sha256_file(p) for p in out.iterdir()} == old
    assert sorted(p.name for p in disk.iterdir()) == ["ballast", "s"]  # no temp folder left

    (disk / "ballast").unlink()
    rerun = run(*select, "--budget", "500", "--out", str(out), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    for name in ("examples.jsonl", "manifest.json"):
        assert sha256_file(out / name) == sha256_file(tmp_path / "ref" / "s" / name)


@pytest.mark.slow
def test_full_disk_while_train_saves_leaves_no_model_folder(
    tmp_path, small_disk, fault_check, tiny_lm
):
    db = _base_db(tmp_path, 40)
    rows = pool_state(db)
    subset = tmp_path / "subset"
    _random_subset(db, 12, subset)
    disk = small_disk(8)  # the tiny model's weights alone are about 13 MB
    out = disk / "m"
    done = run(
        "train", str(subset), "--base-model", str(tiny_lm), "--out", str(out), "--epochs", "1",
        "--max-length", "64", "--device", "cpu", cwd=tmp_path,
    )  # fmt: skip
    one_error_line(done, str(out), "the disk is full")
    fault_check(db, rows, rows, subsets=[subset])
    assert not out.exists()
    assert not [p for p in disk.iterdir() if ".old-" in p.name or ".tmp-" in p.name]


@pytest.mark.slow
def test_read_only_file_system_is_one_line(tmp_path, small_disk, fault_check):
    disk = small_disk(4)
    db = _base_db(disk)
    rows = pool_state(db)
    source = write_jsonl(tmp_path / "more.jsonl", records(100, 150))
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    done = run("ingest", str(source), "--db", str(db), cwd=tmp_path)
    one_error_line(done, str(db), "read-only")
    fault_check(db, rows, rows)
    reader = run("pool", "--db", str(db), "--json", cwd=tmp_path)
    assert reader.returncode == 0, reader.stderr


@pytest.mark.slow
def test_another_users_db_and_an_unreadable_source_are_one_line(open_tmp, other_user, fault_check):
    db = _base_db(open_tmp)
    rows = pool_state(db)
    # readable by all, writable by its owner only (not at all when the suite is not root)
    dirs, files = (0o755, 0o644) if other_user else (0o555, 0o444)
    for path in [*db.rglob("*"), db]:
        path.chmod(dirs if path.is_dir() else files)
    public = write_jsonl(open_tmp / "more.jsonl", records(100, 150))
    public.chmod(0o644)
    secret = write_jsonl(open_tmp / "secret.jsonl", records(200, 210))
    secret.chmod(0o600 if other_user else 0o000)
    mine = open_tmp / "mine"
    mine.mkdir(mode=0o777)
    mine.chmod(0o777)

    done = run("ingest", str(public), "--db", str(db), cwd=mine, user=other_user)
    one_error_line(done, str(db), "permission denied")
    fault_check(db, rows, rows)
    reader = run("pool", "--db", str(db), "--json", cwd=mine, user=other_user)
    assert reader.returncode == 0, reader.stderr  # readers need no write access

    done = run("ingest", str(secret), "--db", str(mine / "db"), cwd=mine, user=other_user)
    one_error_line(done, str(secret), "permission denied")
    assert not (mine / "db" / "pool.lance").exists()


# ----------------------------------------------------------------------------- injected errors
# The same sites without a tmpfs: errors raised where the real ones come from, in-process.

LANCE_FULL = (
    "lance error: LanceError(IO): No space left on device (os error 28), "
    "lance-file-13.0.0/src/writer/structural.rs:191:9"
)


def _injected(cli, *args: str) -> str:
    code, _, err = cli(*args)
    TALLY.faults += 1
    TALLY.tracebacks += err.count("Traceback")
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_injected_full_disk_at_each_ingest_site(tmp_path, cli, monkeypatch, fault_check):
    import lancedb.table
    import pyarrow as pa

    db = _base_db(tmp_path)
    rows = pool_state(db)
    source = write_jsonl(tmp_path / "more.jsonl", records(100, 300))

    def lance_full(self, *args, **kwargs):
        raise RuntimeError(LANCE_FULL)

    with monkeypatch.context() as patch:
        patch.setattr(lancedb.table.LanceTable, "add", lance_full)
        line = _injected(cli, "ingest", str(source), "--db", str(db))
    assert f"{db}: the disk is full" in line, line
    fault_check(db, rows, rows)

    def stream_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "Error writing bytes to file")  # Arrow: no file name

    with monkeypatch.context() as patch:
        patch.setattr(pa.ipc, "new_stream", stream_full)
        line = _injected(cli, "ingest", str(source), "--db", str(db))
    assert f"{db}/.curate-staging-" in line and "the disk is full" in line, line
    fault_check(db, rows, rows)
    assert not list(db.glob(".curate-staging-*"))


def test_injected_full_disk_while_select_writes(tmp_path, monkeypatch, fault_check, cli):
    db = _db_with_vectors(tmp_path)
    rows = pool_state(db)
    out = tmp_path / "subsets" / "s"
    args = ["select", "--embeddings", "v", "--db", str(db), "--out", str(out), "--force"]
    code, _, err = cli(*args, "--budget", "10")
    assert code == 0, err
    old = {p.name: sha256_file(p) for p in out.iterdir()}

    real = Path.write_bytes

    def full(self, data):
        if self.name == "examples.jsonl":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_bytes", full)
        line = _injected(cli, *args, "--budget", "30")
    assert f"{out}: the disk is full" in line, line
    fault_check(db, rows, rows, subsets=[out])
    assert {p.name: sha256_file(p) for p in out.iterdir()} == old
    assert sorted(p.name for p in out.parent.iterdir()) == ["s"]


def _random_subset(db: Path, budget: int, out: Path) -> None:
    import curate

    curate.write_subset(curate.Pool(db).select(budget=budget, strategy="random"), out)
