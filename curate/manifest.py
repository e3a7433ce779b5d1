"""``manifest.json``: what a subset is, where it came from, and how to check it.

:class:`Manifest` is the only code that reads or writes the file. It is canonical JSON
(sorted keys, fixed separators, no timestamps), so the same inputs and seed give
byte-identical files and a stable ``manifest_sha256`` that a child subset or a trained
model can name as its parent.

Format versions: 1 (curate 0.1) is the current one; 2 adds ``hygiene`` (the dedup and
decontamination results the picks avoided) and is written only by a subset chosen under
such a result, so every other subset keeps its version-1 bytes.
:meth:`Manifest.from_dict` keeps reading every earlier one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from curate.errors import SubsetError
from curate.files import canonical_json
from curate.targets import name_problem

FORMAT_VERSION = 1
READABLE_VERSIONS = (1, 2)
HYGIENE_VERSION = 2  # the format version of a manifest with ``hygiene``
MANIFEST_FILE = "manifest.json"


class Pick(TypedDict):
    """One chosen example. ``distance`` (K-center's distance to the nearest earlier pick,
    null for its first center) and ``score`` (uncertainty strategies) are present only
    when the strategy produced them; a parent's picks carry neither."""

    id: str
    hash: str
    distance: NotRequired[float | None]
    score: NotRequired[float]


@dataclass(frozen=True)
class ParentRef:
    """The subset this one grew from, pinned by the sha256 of its manifest file."""

    name: str
    manifest_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "manifest_sha256": self.manifest_sha256}


@dataclass(frozen=True)
class PoolRef:
    """The pool table the picks came from: its LanceDB version and row count."""

    version: int | None
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "rows": self.rows}


@dataclass(frozen=True)
class EmbeddingsRef:
    """The embeddings table the strategy read, and its embedder's fingerprint."""

    name: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Manifest:
    name: str
    strategy: str
    params: dict[str, Any]  # the strategy's parameters, plus ``added`` (new picks)
    seed: int
    budget: int  # total size, inherited picks included
    parent: ParentRef | None
    pool: PoolRef
    embeddings: EmbeddingsRef | None
    picks: list[Pick]
    created_by: str
    format_version: int = FORMAT_VERSION
    examples_sha256: str = ""  # filled in when the subset is written
    # kind ("dedup", "decontaminate") -> {version, pool_version, settings, flagged} of each
    # hygiene result whose flagged rows the new picks left out (format version 2)
    hygiene: dict[str, Any] | None = None

    @property
    def ids(self) -> list[str]:
        return [p["id"] for p in self.picks]

    @property
    def keys(self) -> list[tuple[str, str]]:
        """(id, content hash) of every pick, in pick order."""
        return [(p["id"], p["hash"]) for p in self.picks]

    @property
    def added(self) -> int:
        """How many picks this subset added to its parent's."""
        return int(self.params.get("added", len(self.picks)))

    @property
    def current_version(self) -> int:
        """The format version this manifest is written at: 2 with ``hygiene``, else 1."""
        return HYGIENE_VERSION if self.hygiene else FORMAT_VERSION

    def replace(self, **changes: Any) -> Manifest:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "strategy": self.strategy,
            "params": self.params,
            "seed": self.seed,
            "budget": self.budget,
            "parent": self.parent.to_dict() if self.parent else None,
            "pool": self.pool.to_dict(),
            "embeddings": self.embeddings.to_dict() if self.embeddings else None,
            "picks": self.picks,
            "created_by": self.created_by,
            "format_version": self.format_version,
            "examples_sha256": self.examples_sha256,
        } | ({"hygiene": self.hygiene} if self.hygiene else {})

    def summary(self) -> dict[str, Any]:
        """:meth:`to_dict` without the pick list, plus the counts and the coverage curve's
        end points (distances at pick time): every view of a subset reads this."""
        data = self.to_dict()
        picks = data.pop("picks")
        distances = [p["distance"] for p in picks if p.get("distance") is not None]
        return data | {
            "size": len(picks),
            "coverage": {
                "first": distances[0] if distances else None,
                "last": distances[-1] if distances else None,
                "picks_with_distance": len(distances),
            },
            "inherited": len(picks) - self.added if self.parent else 0,
        }

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = MANIFEST_FILE) -> Manifest:
        """Read any readable format version; a missing or mistyped field is a
        :class:`SubsetError` naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise SubsetError(f"{source}: a manifest is a JSON object, not {type(data).__name__}")
        version = data.get("format_version")
        if type(version) is not int or version not in READABLE_VERSIONS:
            raise SubsetError(f"{source}: unsupported format_version {version!r}")
        unknown = sorted(set(data) - (_V1_FIELDS | ({"hygiene"} if version >= 2 else set())))
        if unknown:
            raise SubsetError(
                f"{source}: unknown field {unknown[0]!r} for format_version {version}"
            )
        get = _Fields(data, source)
        parent = _ref(ParentRef, get("parent", dict, optional=True), f"{source}: parent")
        for field, name in (("name", get("name", str)), ("parent.name", parent and parent.name)):
            problem = name_problem(name) if name is not None else None
            if problem:  # a received manifest must not steer a path out of its folder
                raise SubsetError(f"{source}: field {field!r} {name!r} {problem}")
        return cls(
            name=get("name", str),
            strategy=get("strategy", str),
            params=get("params", dict),
            seed=get("seed", int),
            budget=get("budget", int),
            parent=parent,
            pool=_ref(PoolRef, get("pool", dict), f"{source}: pool"),
            embeddings=_ref(
                EmbeddingsRef, get("embeddings", dict, optional=True), f"{source}: embeddings"
            ),
            picks=_picks(get("picks", list), source),
            created_by=get("created_by", str),
            format_version=version,
            examples_sha256=get("examples_sha256", str),
            hygiene=get("hygiene", dict, optional=True) if version >= HYGIENE_VERSION else None,
        )

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Load ``path`` (a manifest file or the subset folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SubsetError(f"{path}: malformed manifest ({err})") from None
        return cls.from_dict(data, str(path))

    def write(self, path: str | Path) -> None:
        """Write the canonical text to ``path`` (inside a folder being written atomically)."""
        Path(path).write_text(self.to_json(), encoding="utf-8")


_V1_FIELDS = frozenset(f.name for f in dataclasses.fields(Manifest)) - {"hygiene"}


_KINDS = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


class _Fields:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data, self.source = data, source

    def __call__(self, key: str, kind: type, optional: bool = False) -> Any:
        if key not in self.data:
            raise SubsetError(f"{self.source}: field {key!r} is missing")
        value = self.data[key]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SubsetError(f"{self.source}: field {key!r} must be {_KINDS[kind]}, not {value!r}")
        return value


def _ref(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    if data is None:
        return None
    names = [f.name for f in dataclasses.fields(cls)]
    if sorted(data) != sorted(names):
        raise SubsetError(f"{where} must have exactly the fields {', '.join(names)}")
    return cls(**data)


def _picks(picks: list[Any], source: str) -> list[Pick]:
    for i, pick in enumerate(picks):
        if not isinstance(pick, dict) or not isinstance(pick.get("id"), str):
            raise SubsetError(f"{source}: picks[{i}] has no string id")
        if not isinstance(pick.get("hash"), str):
            raise SubsetError(f"{source}: picks[{i}] has no string hash")
        extra = set(pick) - {"id", "hash", "distance", "score"}
        if extra:
            raise SubsetError(f"{source}: picks[{i}] has an unknown field {sorted(extra)[0]!r}")
    return picks
