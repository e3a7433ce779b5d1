"""The ``curate`` command line: one module per verb, each a thin call into the library.

The library never prints; commands render with rich. A :class:`CurateError` becomes one
line on stderr and a non-zero exit (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import TYPE_CHECKING, cast

import typer

from curate import __version__
from curate.errors import CurateError

if TYPE_CHECKING:
    from typer._click.exceptions import ClickException

app = typer.Typer(
    name="curate",
    help="Curate instruction-tuning data the DiverseEvol way: ingest, embed, select, train, eval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines ``register(app)``; listed explicitly so `--help` order is deliberate.
COMMAND_MODULES = (
    "ingest", "pool", "embed", "dedup", "decontaminate", "select", "subsets", "train", "eval", "plot", "report", "init",
)  # fmt: skip


def _version(value: bool) -> None:
    if value:
        typer.echo(f"curate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks instead of one-line errors."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    if debug:
        os.environ["CURATE_DEBUG"] = "1"


for _name in COMMAND_MODULES:
    importlib.import_module(f"curate.cli.{_name}").register(app)


def main() -> None:
    """Entry point: usage errors are click's (exit 2); domain errors, OS errors and Ctrl-C
    become one line on stderr (and a JSON object on stdout with ``--json``) and the exit code
    of :mod:`curate.errors`. ``--debug`` anywhere on the line shows tracebacks instead."""
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ["CURATE_DEBUG"] = "1"
    try:
        code = command()(standalone_mode=False)
    except CurateError as err:
        _fail(err, error_line(err), err.exit_code)
    except OSError as err:
        _fail(err, os_error_line(err), 1)
    except KeyboardInterrupt as err:
        _fail(err, "interrupted; nothing half-written was kept, and a rerun resumes", 130)
    except _CLICK_ERROR as err:  # a usage error: one line, as every other error
        where = getattr(getattr(err, "ctx", None), "command_path", None)
        hint = f" (see `{where} --help`)" if where else ""
        _fail(err, err.format_message() + hint, err.exit_code)
    except typer.Abort as err:
        _fail(err, "aborted", 1)
    if code == 130:
        _fail(
            KeyboardInterrupt(),
            "interrupted; nothing half-written was kept, and a rerun resumes",
            130,
        )
    if isinstance(code, int) and code:
        sys.exit(code)


# the flags whose name is not the parameter's with dashes
_FLAGS = {"import_file": "--import", "json_out": "--json"}


def cli_flag(name: str) -> str:
    """The command-line flag of the library parameter ``name``: ``whole_pool`` is
    ``--whole-pool``."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def error_line(err: CurateError) -> str:
    """The one line the command line prints for ``err``: the parameters it names (see
    :func:`curate.errors.param`) as this command line's flags."""
    return err.render(cli_flag)


# click's exception base, as the click that typer runs on (its own copy) defines it
_CLICK_ERROR = cast(
    "type[ClickException]",
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)


def command():
    """The click command tree, its help made to read like the README's reference: a flag
    shows no ``<bool>`` type, an argument its name in capitals (``{SOURCES}...``: required,
    ``[DIRECTORY]``: optional)."""
    root = typer.main.get_command(app)
    for cmd in _walk(root):
        help_option = cmd.get_help_option(typer.Context(cmd))
        for param in [*cmd.params, *([help_option] if help_option else [])]:
            if param.metavar is not None:
                continue
            if param.param_type_name == "option" and getattr(param, "is_flag", False):
                param.metavar = ""
            elif param.param_type_name == "argument":
                param.metavar = param.name.upper()
    return root


def _walk(cmd):
    yield cmd
    if hasattr(cmd, "list_commands"):
        ctx = typer.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name))


def _fail(err: BaseException, line: str, code: int) -> None:
    if os.environ.get("CURATE_DEBUG"):
        raise err
    from curate.cli._render import err_console, print_json

    if "--json" in sys.argv[1:]:
        print_json({"error": line, "exit_code": code})
    from rich.markup import escape

    # The line is data (a path, a record, a torch error) and may hold "[/...]": never markup.
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space and rerun",
    errno.EDQUOT: "the disk quota is exceeded: free space and rerun",
    errno.EACCES: "permission denied: check who owns it, or choose another path",
    errno.EPERM: "operation not permitted: check who owns it, or choose another path",
    errno.EROFS: "the file system is read-only: choose a writable path",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
}


def os_error_line(err: OSError) -> str:
    """One line for an OS error: the path, what happened, what to do. Earlier state is
    intact: every artifact is written to a temp path and renamed into place."""
    from curate.files import errno_of

    where = err.filename or "curate"
    code = errno_of(err)
    advice = _OS_ADVICE.get(code, "") if code is not None else ""
    advice = advice or err.strerror or str(err)
    return f"{where}: {advice} (nothing was changed)"
