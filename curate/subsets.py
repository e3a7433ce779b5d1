"""The subset artifact: ``examples.jsonl`` + ``manifest.json`` in one folder, written atomically.

The manifest (:class:`curate.manifest.Manifest`) is canonical JSON, so the same inputs and
seed give byte-identical files and a stable ``manifest_sha256`` that a child subset or a
trained model can name as its parent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from curate.errors import SubsetError
from curate.files import (
    atomic_dir,
    jsonl_lines,
    sha256_bytes,
    sha256_file,
)
from curate.manifest import MANIFEST_FILE, Manifest
from curate.targets import check_name, check_replaceable, holds_only

EXAMPLES_FILE = "examples.jsonl"
DEFAULT_SUBSETS_DIR = Path("data/subsets")


@dataclass
class Subset:
    """A subset: its manifest and examples, in a folder once written. What ``select``
    returns is one in memory (``location`` None) that also says how it was made;
    :meth:`write` (or :func:`curate.write_subset`) puts it on disk."""

    manifest: Manifest
    examples: list[dict[str, Any]]
    location: Path | None = None  # its folder; None: not written yet
    seconds: float = 0.0  # how long choosing it took (a fresh selection)
    embedded: int = 0  # pool rows embedded first because the pool had no embeddings
    warnings: list[str] = field(default_factory=list)  # e.g. a stale hygiene result
    ranks: int = 1  # processes the vectors were sharded over (torchrun)

    @property
    def path(self) -> Path:
        if self.location is None:
            raise SubsetError(f"subset {self.name} is not written yet; write it first")
        return self.location

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def ids(self) -> list[str]:
        return self.manifest.ids

    @property
    def added(self) -> int:
        return self.manifest.added

    @property
    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST_FILE)

    def write(self, out: str | Path | None = None, force: bool = False) -> Subset:
        """Write the subset folder atomically (default ``data/subsets/<name>``). A folder
        already there is replaced only when it holds these same bytes or with ``force``."""
        out = Path(out) if out is not None else DEFAULT_SUBSETS_DIR / check_name(self.name)
        target = check_replaceable(out, "subset", is_subset_folder, force, self._written_at)
        written = write_subset(target, self.manifest, self.examples)
        return replace(self, manifest=written.manifest, location=out)

    def _written_at(self, folder: Path) -> bool:
        """Whether ``folder`` already holds exactly this subset (a rerun)."""
        try:
            existing = load_subset(folder)
        except SubsetError:  # not a subset, or a damaged one
            return False
        blob_sha = sha256_bytes(examples_blob(self.examples))
        return existing.manifest == self.manifest.replace(
            format_version=existing.manifest.format_version, examples_sha256=blob_sha
        )

    def to_dict(self) -> dict[str, Any]:
        """What ``select`` reports: the manifest's summary and how the subset was made."""
        m = self.manifest.summary()
        return {
            "name": m["name"],
            "strategy": m["strategy"],
            "params": m["params"],
            "size": m["size"],
            "added": self.added,
            "embedded": self.embedded,
            "ranks": self.ranks,
            "parent": m["parent"],
            "embeddings": m["embeddings"],
            "coverage_radius": m["coverage"]["last"],
            "seconds": round(self.seconds, 3),
            "hygiene": m.get("hygiene"),
            "warnings": self.warnings,
        }


def examples_blob(examples: list[dict[str, Any]]) -> bytes:
    return "".join(
        json.dumps(e, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        for e in examples
    ).encode("utf-8")


def write_subset(out_dir: str | Path, manifest: Manifest, examples: list[dict[str, Any]]) -> Subset:
    """Write both files into a temp folder beside ``out_dir`` and swap it into place.

    The manifest is written at its current ``format_version`` with ``examples_sha256``
    filled in here.
    """
    out_dir = Path(out_dir)
    blob = examples_blob(examples)
    manifest = manifest.replace(
        format_version=manifest.current_version, examples_sha256=sha256_bytes(blob)
    )
    with atomic_dir(out_dir) as tmp:
        (tmp / EXAMPLES_FILE).write_bytes(blob)
        manifest.write(tmp / MANIFEST_FILE)
    return Subset(manifest, examples, out_dir)


def load_subset(path: str | Path, verify: bool = True) -> Subset:
    """Read a subset folder; with ``verify`` check the examples' sha256 and the pick list."""
    path = Path(path)
    manifest_path, examples_path = path / MANIFEST_FILE, path / EXAMPLES_FILE
    if not manifest_path.is_file() or not examples_path.is_file():
        raise SubsetError(
            f"{path}: not a subset folder (needs {MANIFEST_FILE} and {EXAMPLES_FILE})"
        )
    manifest = Manifest.read(manifest_path)
    blob = examples_path.read_bytes()
    if verify and sha256_bytes(blob) != manifest.examples_sha256:
        raise SubsetError(
            f"{examples_path}: sha256 does not match the manifest (file was modified)"
        )
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as err:
        bad_line = blob.count(b"\n", 0, err.start) + 1
        raise SubsetError(f"{examples_path}:{bad_line}: invalid UTF-8") from None
    examples = []
    for line_no, line in jsonl_lines(text):
        try:
            examples.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SubsetError(f"{examples_path}:{line_no}: malformed JSON ({err.msg})") from None
    if verify and manifest.keys != [(e["id"], e["hash"]) for e in examples]:
        raise SubsetError(f"{path}: examples.jsonl does not list the manifest's picks in order")
    return Subset(manifest, examples, path)


def is_subset_folder(path: Path) -> bool:
    """A folder holding exactly what :func:`write_subset` writes, and nothing else."""
    return holds_only(Path(path), (MANIFEST_FILE, EXAMPLES_FILE), (MANIFEST_FILE, EXAMPLES_FILE))


# ----------------------------------------------------------------------------- finding


def resolve_subset_dir(ref: str | Path, root: str | Path = DEFAULT_SUBSETS_DIR) -> Path:
    """A subset folder named by path, or by name under ``root``."""
    path = Path(ref)
    if (path / MANIFEST_FILE).is_file():
        return path
    named = Path(root) / str(ref)
    if (named / MANIFEST_FILE).is_file():
        return named
    raise SubsetError(f"{ref}: no subset folder there or under {root} (needs {MANIFEST_FILE})")


def list_subsets(root: str | Path = DEFAULT_SUBSETS_DIR) -> list[dict[str, Any]]:
    """One summary per subset folder directly under ``root``, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    rows = []
    for path in sorted(p for p in root.iterdir() if (p / MANIFEST_FILE).is_file()):
        try:
            subset = load_subset(path, verify=False)
        except SubsetError as err:
            rows.append({"path": str(path), "name": path.name, "error": str(err)})
            continue
        rows.append(summarize(subset))
    return rows


def summarize(subset: Subset) -> dict[str, Any]:
    """What ``subsets list`` / ``show`` print: the manifest without its pick list, plus
    counts and the coverage curve's end points (K-center distances at pick time)."""
    m = subset.manifest.summary()
    categories: dict[str, int] = {}
    for example in subset.examples:
        key = example.get("category") or "-"
        categories[key] = categories.get(key, 0) + 1
    head = ("name", "strategy", "params", "seed", "size", "budget", "parent", "pool")
    return {
        "path": str(subset.path),
        **{key: m[key] for key in (*head, "embeddings", "created_by")},
        "manifest_sha256": subset.manifest_sha256,
        **{key: m[key] for key in ("examples_sha256", "coverage", "inherited")},
        "categories": dict(sorted(categories.items())),
    }


# ----------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    path: str
    name: str
    examples: int
    pool_version: int | None  # the version the subset was built on ...
    pool_version_now: int | None  # ... and the pool's version now
    parent: str  # "ok", "not found" or "none"
    hygiene: str = "none"  # new picks avoid the hygiene results named: "ok", "none", "gone"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_subset(path: str | Path, store) -> VerifyReport:
    """Check a subset against itself and the pool: ``examples.jsonl`` sha256 and pick
    order, every example's content hash, every (id, hash) present in the pool, and, when
    the parent folder sits beside it, the parent's manifest sha256 and prefix."""
    subset = load_subset(path, verify=True)
    parent = verify_examples(subset)
    keys = [(e["id"], e["hash"]) for e in subset.examples]
    found = store.lookup_pool("id", sorted({k[0] for k in keys}), ["id", "hash"])
    in_pool = set(zip(found["id"].to_pylist(), found["hash"].to_pylist(), strict=True))
    missing = [k[0] for k in keys if k not in in_pool]
    if missing:
        raise SubsetError(
            f"{subset.path}: {len(missing)} of {len(keys)} examples (e.g. {missing[0]!r}) are not "
            f"in the pool at {store.path}; wrong --db, or the pool was rebuilt"
        )
    from curate.hygiene.exclusion import verify_hygiene

    return VerifyReport(
        str(subset.path),
        subset.name,
        len(keys),
        subset.manifest.pool.version,
        store.pool_version(),
        parent,
        verify_hygiene(store, subset.manifest, subset.path),
    )


def verify_examples(subset: Subset) -> str:
    """The checks of :func:`verify_subset` that need no pool: every example's content hash,
    no example twice, the budget, and the parent link. Returns the parent's status
    ("ok", "not found" or "none")."""
    from curate.records import content_hash

    examples_path = subset.path / EXAMPLES_FILE
    for line, example in enumerate(subset.examples, start=1):
        try:
            digest = content_hash(
                example["instruction"], example["input"], example["output"], example.get("messages")
            )
        except (KeyError, TypeError) as err:
            raise SubsetError(f"{examples_path}:{line}: not a canonical example ({err})") from None
        if digest != example["hash"]:
            raise SubsetError(f"{examples_path}:{line}: content does not match its hash (edited?)")
    keys = [(e["id"], e["hash"]) for e in subset.examples]
    if len(set(keys)) != len(keys):
        raise SubsetError(f"{subset.path}: an example is listed twice")
    if len(keys) != subset.manifest.budget:
        raise SubsetError(
            f"{subset.path}: {len(keys)} examples but the manifest's budget is "
            f"{subset.manifest.budget}"
        )
    return _verify_parent(subset)


def _verify_parent(subset: Subset) -> str:
    parent = subset.manifest.parent
    if parent is None:
        return "none"
    folder = subset.path.parent / parent.name
    if not (folder / MANIFEST_FILE).is_file():
        return "not found"
    actual = load_subset(folder, verify=False)
    if actual.manifest_sha256 != parent.manifest_sha256:
        raise SubsetError(
            f"{subset.path}: parent {folder} changed after this subset was built "
            "(manifest sha256 differs); re-run `curate select` for it"
        )
    if subset.ids[: len(actual.ids)] != actual.ids:
        raise SubsetError(f"{subset.path}: does not start with its parent's picks ({folder})")
    return "ok"


# ----------------------------------------------------------------------------- diff


def diff_subsets(a: Subset, b: Subset) -> dict[str, Any]:
    """Which ids the two subsets share, and whether ``b`` extends ``a`` (a's picks first)."""
    ids_a, ids_b = a.ids, b.ids
    set_a, set_b = set(ids_a), set(ids_b)
    common = set_a & set_b
    return {
        "a": {"name": a.name, "path": str(a.path), "size": len(ids_a)},
        "b": {"name": b.name, "path": str(b.path), "size": len(ids_b)},
        "common": len(common),
        "only_a": [i for i in ids_a if i not in set_b],
        "only_b": [i for i in ids_b if i not in set_a],
        "jaccard": len(common) / len(set_a | set_b) if set_a | set_b else 1.0,
        "b_extends_a": ids_b[: len(ids_a)] == ids_a,
        "a_extends_b": ids_a[: len(ids_b)] == ids_b,
    }
