"""The command line's edges: help for every command, one-line errors with the documented
exit codes, `--json` and `--debug` anywhere."""

from __future__ import annotations

import errno
import json

import pytest
import typer

from curate.cli import app


def _commands(group, prefix=()):
    for name, command in sorted(getattr(group, "commands", {}).items()):
        if getattr(command, "hidden", False):
            continue
        yield (*prefix, name), command
        yield from _commands(command, (*prefix, name))


def test_every_command_has_help_text_and_is_listed(cli):
    root = typer.main.get_command(app)
    commands = list(_commands(root))
    names = {path[0] for path, _ in commands}
    assert {"ingest", "pool"} <= names
    listing = cli("--help")
    assert listing.code == 0
    for path, command in commands:
        assert (command.help or "").strip(), f"`curate {' '.join(path)}` has no help text"
        result = cli(*path, "--help")
        assert result.code == 0, (path, result.out, result.err)
        if len(path) == 1:
            assert path[0] in listing.out


def test_debug_works_after_the_subcommand_and_shows_the_traceback(tmp_path, cli):
    code, _, err = cli("pool", "--db", str(tmp_path / "nodb"))
    assert code == 1 and err.startswith("error: no pool table") and "Traceback" not in err
    from curate.errors import PoolError

    with pytest.raises(PoolError):
        cli("pool", "--db", str(tmp_path / "nodb"), "--debug")


def test_json_errors_are_a_json_object_on_stdout_too(tmp_path, cli):
    code, out, err = cli("select", "--db", str(tmp_path / "nodb"), "--budget", "3", "--json")
    assert code == 1 and json.loads(out)["exit_code"] == 1
    assert json.loads(out)["error"] == err.strip().removeprefix("error: ")


@pytest.mark.parametrize(
    "number, advice",
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
    ],
)
def test_os_errors_are_one_line_naming_the_path(
    tmp_path, cli, monkeypatch, sample_pool, number, advice
):
    import curate.subsets

    def full_disk(*args, **kwargs):
        raise OSError(number, "injected", str(tmp_path / "s" / "examples.jsonl"))

    monkeypatch.setattr(curate.subsets, "write_subset", full_disk)  # what Subset.write calls
    db = str(tmp_path / "db")
    assert cli("ingest", str(sample_pool), "--db", db)[0] == 0
    args = ["select", "--db", db, "--strategy", "random", "--budget", "3", "--out"]
    code, out, err = cli(*args, str(tmp_path / "s"))
    assert code == 1 and out == ""
    line = err.strip()
    assert line.startswith(f"error: {tmp_path / 's' / 'examples.jsonl'}: ") and advice in line
    assert line.endswith("(nothing was changed)") and len(line.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_usage_errors_exit_2_and_bad_data_exits_1(tmp_path, cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    code, _, err = cli("ingest", str(bad), "--db", str(tmp_path / "db"))
    assert code == 1 and err.startswith(f"error: {bad}:1:")
    code, _, err = cli("select", "--budget", "zero")
    assert code == 2
