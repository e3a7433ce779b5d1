"""The README's command reference against the real command line (issue 23 item 11): every
option `--help` lists is in the README's usage lines for that command and every option
those lines name exists; help reads like the README (no `<bool>` on flags, arguments in
capitals); a usage error is one line; `dvc metrics show` in this repository sees only its
own pipeline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Options the README states once for every command ("Every command has `--help` and
# `--json`...; commands that touch the pool take `--db`") instead of on each usage line.
COMMON = ("--help", "--json", "--db")


def _leaf_commands() -> dict[str, object]:
    import typer

    from curate.cli import command

    found: dict[str, object] = {}

    def walk(cmd, path: list[str]) -> None:
        if getattr(cmd, "hidden", False):
            return
        if hasattr(cmd, "list_commands"):
            ctx = typer.Context(cmd)
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(command(), [])
    return found


def _help_options(cmd) -> set[str]:
    return {
        opt
        for param in cmd.params
        if param.param_type_name == "option"
        for opt in [*param.opts, *param.secondary_opts]
        if opt.startswith("--")
    } | {"--help"}


def _readme_usage(commands: list[str]) -> dict[str, set[str]]:
    """Options per command from the README's ``bash`` blocks: a line starting ``curate``
    and the indented lines after it, comments dropped."""
    text = README.read_text(encoding="utf-8")
    usage: dict[str, set[str]] = {}
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        logical: list[str] = []
        for line in block.splitlines():
            code = re.sub(r"\s#\s.*$", "", line)
            if line.startswith((" ", "\t")) and logical:
                logical[-1] += " " + code.strip()
            else:
                logical.append(code.strip())
        for line in logical:
            if not line.startswith("curate "):
                continue
            words = line.split()[1:]
            matches = [c for c in commands if words[: len(c.split())] == c.split()]
            assert matches, f"README names an unknown command: {line}"
            name = max(matches, key=lambda c: len(c.split()))
            usage.setdefault(name, set()).update(re.findall(r"--[a-z][a-z0-9-]*", line))
    return usage


def test_every_commands_options_match_the_readme_reference():
    commands = _leaf_commands()
    usage = _readme_usage(list(commands))
    text = README.read_text(encoding="utf-8")
    assert all(f"`{opt}`" in text for opt in COMMON)
    problems = []
    for name, cmd in sorted(commands.items()):
        if name not in usage:
            problems.append(f"curate {name}: no usage line in the README")
            continue
        options = _help_options(cmd)
        missing = sorted(options - usage[name] - set(COMMON))
        unknown = sorted(usage[name] - options)
        if missing:
            problems.append(f"curate {name}: --help has {missing}, the README does not")
        if unknown:
            problems.append(f"curate {name}: the README names {unknown}, --help does not")
    assert not problems, "\n".join(problems)


def test_help_reads_like_the_readme(cli):
    for name in _leaf_commands():
        done = cli(*name.split(), "--help")
        assert done.code == 0, (name, done.err)
        assert "<bool>" not in done.out, name
        assert not re.search(r"(?<!\$)\{[a-z_]+\}", done.out), name  # {sources}: a raw name
    assert "gguf:" in cli("embed", "--help").out


@pytest.mark.parametrize(
    "args",
    [
        ("select", "--budget", "x"),
        ("select", "--budget", "3", "stray"),
        ("select", "--strategy", "kcenter-robust", "--budget", "3", "--outliers"),
        ("ingest",),
        ("no-such-command",),
    ],
)
def test_a_usage_error_is_one_line_with_exit_2(cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    done = cli(*args)
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert done.code == 2 and len(lines) == 1, done.err
    assert lines[0].startswith("error: ") and "Traceback" not in done.err


def test_dvc_metrics_show_in_this_repository_lists_only_its_own_pipeline():
    """`.dvcignore` keeps the template `curate init` renders out of the repository's view."""
    if not (ROOT / ".dvc").is_dir():
        pytest.skip("not a DVC checkout")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "metrics", "show", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shown = json.dumps(json.loads(done.stdout or "{}"))
    assert "curate/templates" not in shown
    assert "data/metrics/rd_0.json" in shown  # the repository's own pipeline is still read
