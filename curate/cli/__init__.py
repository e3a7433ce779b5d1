"""The ``curate`` command line: one module per verb, each a thin call into the library.

The library never prints; commands render with rich. A :class:`CurateError` becomes one
line on stderr and a non-zero exit (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from curate import __version__
from curate.errors import CurateError

app = typer.Typer(
    name="curate",
    help="Curate instruction-tuning data the DiverseEvol way: ingest, embed, select, train, eval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines ``register(app)``; listed explicitly so `--help` order is deliberate.
COMMAND_MODULES = (
    "ingest", "pool", "embed", "select", "subsets", "train", "eval", "plot", "report", "init",
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
    """Entry point: usage errors are click's; domain errors become one line and an exit code."""
    try:
        app()
    except CurateError as err:
        if os.environ.get("CURATE_DEBUG"):
            raise
        from curate.cli._render import err_console

        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
