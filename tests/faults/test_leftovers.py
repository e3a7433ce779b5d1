"""What kill -9 leaves behind is removed by the next writer, only when its owner is dead
(issue 13, point 9); readers never create a database folder and rejects land beside their
source (point 10)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from curate.files import atomic_dir, atomic_write_text, clean_leftovers, replace_dir
from tests.faults.tools import records, write_jsonl


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_subset_write_removes_dead_writers_temp_folders_and_keeps_live_ones(
    tmp_path, dead_pid, live_pid
):
    target = tmp_path / "rd_0"
    for name in (f".rd_0.tmp-{dead_pid}-abc", f".rd_0.tmp-{live_pid}-def", f".rd_0.old-{dead_pid}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "examples.jsonl").write_text("half\n")
    (tmp_path / f".rd_0.json.tmp-{dead_pid}-x").write_text("another artifact's")
    target.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "examples.jsonl").write_text("new\n")
    assert _names(tmp_path) == [f".rd_0.json.tmp-{dead_pid}-x", f".rd_0.tmp-{live_pid}-def", "rd_0"]
    assert (target / "examples.jsonl").read_text() == "new\n"


def test_a_file_write_removes_dead_writers_temp_files(tmp_path, dead_pid, live_pid):
    target = tmp_path / "metrics.json"
    (tmp_path / f".metrics.json.tmp-{dead_pid}-q1").write_text("{")
    (tmp_path / f".metrics.json.tmp-{live_pid}-q2").write_text("{")
    atomic_write_text(target, "{}\n")
    assert _names(tmp_path) == [f".metrics.json.tmp-{live_pid}-q2", "metrics.json"]


def test_a_writer_killed_between_the_two_renames_gets_its_old_folder_back(tmp_path, dead_pid):
    """kill -9 after `dst → .dst.old-PID` and before `tmp → dst`: dst is missing; the next
    writer restores the old folder, so the earlier artifact is never lost."""
    old = tmp_path / f".m.old-{dead_pid}"
    old.mkdir()
    (old / "model.safetensors").write_text("old weights")
    assert clean_leftovers(tmp_path / "m") == [old]
    assert (tmp_path / "m" / "model.safetensors").read_text() == "old weights"
    new = tmp_path / "staging"
    new.mkdir()
    (new / "model.safetensors").write_text("new weights")
    replace_dir(new, tmp_path / "m")
    assert _names(tmp_path) == ["m"]
    assert (tmp_path / "m" / "model.safetensors").read_text() == "new weights"


def test_ingest_stages_in_the_db_and_removes_only_dead_ingests_staging(
    tmp_path, store, monkeypatch, dead_pid, live_pid
):
    from curate.ingest import ingest

    db = store.path
    db.mkdir()
    for pid in (dead_pid, live_pid):
        (db / f".curate-staging-{pid}").mkdir()
        (db / f".curate-staging-{pid}" / "rows.arrow").write_bytes(b"\0" * 1000)
    import curate.ingest

    seen = []
    real = curate.ingest._Staging.flush

    def spy(self):
        seen.append(self.path)
        return real(self)

    monkeypatch.setattr(curate.ingest._Staging, "flush", spy)
    report = ingest(store, [str(write_jsonl(tmp_path / "a.jsonl", records(0, 30)))])
    assert report.added == 30
    assert seen and all(p.parent.parent == db for p in seen)  # staged inside the database
    staging = sorted(p.name for p in db.glob(".curate-staging-*"))
    assert staging == [f".curate-staging-{live_pid}"]


@pytest.mark.parametrize("command", [["pool"], ["select", "--budget", "3"]])
def test_readers_never_create_a_mistyped_db_folder(tmp_path, cli, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*command, "--db", "typo")
    assert code == 1 and "no pool table in typo" in err, err
    assert not (tmp_path / "typo").exists()


def test_rejects_land_beside_the_source_as_help_says(tmp_path, cli, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    source = data / "pool.jsonl"
    source.write_text(
        json.dumps(records(0, 1)[0]) + "\n" + json.dumps({"instruction": "no output"}) + "\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = cli("ingest", str(source), "--db", str(tmp_path / "db"), "--skip-invalid")
    assert code == 0, err
    rejects = data / "pool.jsonl.rejects.jsonl"
    assert [json.loads(x)["line"] for x in rejects.read_text().splitlines()] == [2]
    assert list(elsewhere.iterdir()) == []
    code, out, err = cli("ingest", "--help")
    assert "SOURCE.rejects.jsonl" in " ".join(out.split()), out
