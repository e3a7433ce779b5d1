"""Plugins: classes that declare their parameters, chosen by name from a registry.

A strategy or an embedder is one class. Its parameters are declared on the class as
:class:`Param` objects (name, type, default, help); the command line, ``params.yaml``
validation and the subset manifest all read that declaration, so nothing outside the
class names a parameter. A :class:`Registry` holds the built-in classes and, lazily, the
classes other packages register through a Python entry-point group, the way ``llm`` and
``pytest`` plugins do::

    # a third-party package's pyproject.toml
    [project.entry-points."curate.strategies"]
    my-strategy = "my_package.strategy:MyStrategy"

Entry points are read without importing them (``names()`` stays cheap, so ``curate
--help`` does not import every plugin); a plugin's module is imported the first time
its name is asked for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar, cast

from curate.errors import CurateError, UsageError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null", "")


class ParamError(UsageError):
    """A plugin parameter that is unknown or has a bad value (a usage error)."""

    exit_code = 2


@dataclass(frozen=True)
class Param:
    """One declared parameter of a plugin.

    ``type`` is ``int``, ``float``, ``str`` or ``bool``; a ``None`` default makes the
    parameter optional (``none`` on the command line). A number must lie within
    ``minimum``/``maximum``, and a float must be finite (NaN and infinities are refused):
    one declaration checks the command line, ``params.yaml`` and the Python API alike. ``recorded`` parameters change the
    result and are written to the manifest; the others (a device, a chunk size) do not.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    recorded: bool = True

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"parameter name {self.name!r} must match {NAME_PATTERN.pattern}")
        if self.type not in (int, float, str, bool):
            raise ValueError(f"parameter {self.name!r}: type must be int, float, str or bool")
        if self.default is not None:
            self.parse(self.default, "the declaration")

    @property
    def option(self) -> str:
        """The command-line spelling: ``--whiten``, ``--top-fraction``."""
        return "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """``int ≥ 1, default none`` — for help texts."""
        kind = "|".join(str(c) for c in self.choices) if self.choices else self.type.__name__
        bounds = []
        if self.minimum is not None:
            bounds.append(f"≥ {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"≤ {self.maximum:g}")
        default = "none" if self.default is None else str(self.default).lower()
        return f"{kind}{' ' + ', '.join(bounds) if bounds else ''}, default {default}"

    def parse(self, value: Any, owner: str) -> Any:
        """``value`` (from YAML, Python or a command-line string) as this parameter's type."""

        def bad(why: str) -> ParamError:
            return ParamError(f"{owner}: {self.option} {value!r} {why}")

        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if self.default is None:
                return None
            raise bad(f"needs a value ({self.describe()})")
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE + _FALSE:
                return text in _TRUE
            raise bad("is not true or false")
        if self.type in (int, float):
            if isinstance(value, bool):
                raise bad(f"is not a number ({self.describe()})")
            try:
                number = self.type(value) if isinstance(value, str) else value
            except ValueError:
                raise bad(f"is not {'an integer' if self.type is int else 'a number'}") from None
            if self.type is int and (not isinstance(number, int) or isinstance(number, bool)):
                raise bad("is not an integer")
            if self.type is float and not isinstance(number, int | float):
                raise bad("is not a number")
            try:
                number = self.type(number)
            except OverflowError:
                raise bad("is not a finite number") from None
            if self.type is float and not math.isfinite(number):
                raise bad(f"is not a finite number ({self.describe()})")
            if self.minimum is not None and number < self.minimum:
                raise bad(f"is below the minimum {self.minimum:g}")
            if self.maximum is not None and number > self.maximum:
                raise bad(f"is above the maximum {self.maximum:g}")
            value = number
        elif not isinstance(value, str):
            raise bad("is not a string")
        if self.choices and value not in self.choices:
            raise bad(f"is not one of {', '.join(str(c) for c in self.choices)}")
        return value


class Plugin:
    """Base of every pluggable class: a registry name, a one-line summary, parameters."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    parameters: ClassVar[tuple[Param, ...]] = ()

    @classmethod
    def resolve_params(cls, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every declared parameter's value: ``values`` parsed and checked, defaults for the
        rest. An undeclared name is an error that lists the declared ones."""
        owner = f"{cls.kind_label()} {cls.name}"
        declared = {p.name: p for p in cls.parameters}
        values = dict(values or {})
        unknown = [name for name in values if name.replace("-", "_") not in declared]
        if unknown:
            known = ", ".join(p.option for p in cls.parameters) or "none"
            raise ParamError(
                f"{owner} has no parameter --{unknown[0].replace('_', '-')} (its parameters: {known})"
            )
        given = {name.replace("-", "_"): value for name, value in values.items()}
        return {
            p.name: p.parse(given[p.name], owner) if p.name in given else p.default
            for p in cls.parameters
        }

    @classmethod
    def kind_label(cls) -> str:
        return "plugin"


T = TypeVar("T", bound=Plugin)


class Registry(Generic[T]):
    """Plugins of one kind by name: built-ins first, then the entry-point group's."""

    def __init__(self, group: str, what: str, builtins: Iterable[type[T]]):
        self.group, self.what = group, what
        self._builtins: dict[str, type[T]] = {}
        self._loaded: dict[tuple[str, str], type[T]] = {}  # (name, "module:attr") -> class
        for cls in builtins:
            self._builtins[cls.name] = self._checked(cls.name, cls)

    def _checked(self, name: str, cls: Any) -> type[T]:
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise CurateError(f"{self.what} plugin {name!r} is not a curate {self.what} class")
        if getattr(cls, "name", None) != name:
            raise CurateError(
                f"{self.what} plugin {name!r}: its class is named {getattr(cls, 'name', None)!r}; "
                "the entry-point name must equal the class's `name`"
            )
        return cast("type[T]", cls)  # a Plugin class of the name asked for, checked above

    def _entry_points(self) -> dict[str, EntryPoint]:
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=self.group):
            found.setdefault(ep.name, ep)
        return found

    def names(self) -> list[str]:
        """Every name, built-ins first, without importing any plugin module."""
        extra = sorted(n for n in self._entry_points() if n not in self._builtins)
        return [*self._builtins, *extra]

    def get(self, name: str) -> type[T]:
        """The class called ``name`` (imports its plugin module the first time)."""
        if name in self._builtins:
            return self._builtins[name]
        ep = self._entry_points().get(name)
        if ep is None:
            raise ParamError(f"unknown {self.what} {name!r}; choose from {', '.join(self.names())}")
        if (name, ep.value) in self._loaded:
            return self._loaded[name, ep.value]
        try:
            cls = ep.load()
        except Exception as err:  # a broken plugin must not read as a curate bug
            dist = getattr(ep.dist, "name", None) or ep.value
            raise CurateError(
                f"{self.what} plugin {name!r} from {dist} failed to load: {type(err).__name__}: {err}"
            ) from None
        self._loaded[name, ep.value] = self._checked(name, cls)
        return cls

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self):
        return iter(self.names())
