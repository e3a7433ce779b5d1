"""curate.files: atomic file and folder writes (modes, no leftovers, old content kept on
failure) and block-wise sha256."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from curate.files import (
    BLOCK,
    atomic_dir,
    atomic_file,
    atomic_write_text,
    canonical_json,
    sha256_file,
)


@pytest.fixture(params=[0o022, 0o077], ids=["umask-022", "umask-077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_text_gets_the_usual_mode_and_leaves_nothing_beside(tmp_path, umask):
    target = tmp_path / "sub" / "metrics.json"
    atomic_write_text(target, canonical_json({"b": 1, "a": "é"}))
    assert target.read_text(encoding="utf-8") == '{\n "a": "é",\n "b": 1\n}\n'
    assert mode(target) == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_a_failed_file_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_atomic_dir_swaps_a_folder_in_and_keeps_the_old_one_on_failure(tmp_path, umask):
    target = tmp_path / "subset"
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and not target.exists()
        (tmp / "a.txt").write_text("first")
    assert mode(target) == 0o777 & ~umask  # not mkdtemp's 0700
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert [p.name for p in target.iterdir()] == ["b.txt"]  # replaced, not merged
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("half")
        raise RuntimeError("crash")
    assert [p.name for p in target.iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["subset"]  # no temp or .old folder left


def test_sha256_file_reads_in_blocks_and_matches_hashlib(tmp_path):
    blob = os.urandom(BLOCK + 12345)
    (tmp_path / "w.bin").write_bytes(blob)
    assert sha256_file(tmp_path / "w.bin") == hashlib.sha256(blob).hexdigest()
