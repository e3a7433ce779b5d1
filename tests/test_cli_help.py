"""Every command has help text, and `curate --help` lists every command."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from curate.cli import app


def _commands(group, prefix=()):
    for name, command in sorted(getattr(group, "commands", {}).items()):
        if getattr(command, "hidden", False):
            continue
        yield (*prefix, name), command
        yield from _commands(command, (*prefix, name))


def test_every_command_has_help_text_and_is_listed():
    root = typer.main.get_command(app)
    commands = list(_commands(root))
    names = {path[0] for path, _ in commands}
    assert {"ingest", "pool"} <= names
    listing = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert listing.exit_code == 0
    for path, command in commands:
        assert (command.help or "").strip(), f"`curate {' '.join(path)}` has no help text"
        result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        if len(path) == 1:
            assert path[0] in listing.output
