"""A plugin's declared parameters as command-line options.

`curate select --strategy kcenter --metric cosine`: options the command does not define
itself are the chosen plugin's parameters, checked against its declaration
(:class:`curate.plugins.Param`). That is also the form DVC's dict unpacking writes, so a
``strategy_params: {metric: cosine}`` mapping in params.yaml reaches the command as
``--metric cosine``. A bool parameter is ``--flag`` / ``--no-flag``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

from curate.errors import CurateError
from curate.plugins import ParamError, Plugin, Registry

if TYPE_CHECKING:  # typer runs on its own copy of click: its base Context (ctx.parent's type)
    from typer._click.core import Context


def command_options(ctx: typer.Context) -> frozenset[str]:
    """Every option name the command of ``ctx`` and the commands above it define
    (``--whole-pool`` → ``whole_pool``, ``--help`` included): read from the commands
    themselves, so a new option is reserved the moment it is declared."""
    names: set[str] = set()
    context: Context | None = ctx
    while context is not None:
        for param in context.command.get_params(context):
            if param.param_type_name == "option":
                for opt in (*param.opts, *param.secondary_opts):
                    names.add(opt.lstrip("-").replace("-", "_"))
        context = context.parent
    return frozenset(names)


def parse_plugin_options(
    args: list[str], plugin: type[Plugin], reserved: Iterable[str] = ()
) -> dict[str, Any]:
    """``["--metric", "cosine", "--flag"]`` → ``{"metric": "cosine", "flag": True}``;
    values stay strings (the plugin's declaration parses them). A parameter named like one
    of the command's own options (``reserved``) could never be given: that is an error."""
    reserved = frozenset(reserved)
    clash = [p.name for p in plugin.parameters if p.name in reserved]
    if clash:
        raise CurateError(
            f"{plugin.kind_label()} {plugin.name!r} declares parameter {clash[0]!r}, which is "
            "a command option of its own; rename it"
        )
    declared = {p.name: p for p in plugin.parameters}
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise ParamError(f"unexpected argument {token!r}")
        name, eq, text = token[2:].partition("=")
        value: str | bool = text
        name = name.replace("-", "_")
        negated = name.removeprefix("no_")
        if not eq and name not in declared and negated in declared:
            if declared[negated].type is bool:
                values[negated] = False
                i += 1
                continue
        if not eq:
            takes_value = name not in declared or declared[name].type is not bool
            following = args[i + 1] if i + 1 < len(args) else None
            if takes_value and following is not None and not following.startswith("--"):
                value, i = following, i + 1
            elif takes_value and name in declared:
                raise ParamError(f"option --{token[2:]} needs a value")
            else:
                value = True
        values[name] = value
        i += 1
    return values


class PluginHelpCommand(TyperCommand):
    """A command whose help ends with every plugin of a registry and its parameters. The
    registry is named by a function, called only when help is shown, so neither the
    registry's modules nor any plugin are imported when the command line starts."""

    registry: Callable[[], Registry]
    title: str

    @classmethod
    def for_registry(cls, registry: Callable[[], Registry], title: str) -> type[PluginHelpCommand]:
        return type("PluginHelp", (cls,), {"registry": staticmethod(registry), "title": title})

    @property
    def epilog(self) -> str:
        registry = self.registry()
        paragraphs = [f"{self.title}:"]
        for name in registry.names():
            try:
                plugin = registry.get(name)
            except Exception as err:  # a broken plugin is listed, not fatal to --help
                paragraphs.append(f"{name}: cannot load ({err})")
                continue
            paragraphs.append(f"{name}: {plugin.summary}")
            paragraphs += [f"    {p.option} ({p.describe()}): {p.help}" for p in plugin.parameters]
        return "\n\n".join(paragraphs)

    @epilog.setter
    def epilog(self, value: str | None) -> None:  # click assigns the static one; ignored
        pass
