"""The subset artifact: ``examples.jsonl`` + ``manifest.json`` in one folder, written atomically.

The manifest is canonical JSON (sorted keys, fixed separators, no timestamps), so the
same inputs and seed give byte-identical files and a stable ``manifest_sha256`` that a
child subset or a trained model can name as its parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import SubsetError

FORMAT_VERSION = 1
EXAMPLES_FILE = "examples.jsonl"
MANIFEST_FILE = "manifest.json"
DEFAULT_SUBSETS_DIR = Path("data/subsets")


def canonical_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Subset:
    path: Path
    manifest: dict[str, Any]
    examples: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def ids(self) -> list[str]:
        return [p["id"] for p in self.manifest["picks"]]

    @property
    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST_FILE)


def examples_blob(examples: list[dict[str, Any]]) -> bytes:
    return "".join(
        json.dumps(e, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n" for e in examples
    ).encode("utf-8")


def write_subset(out_dir: str | Path, manifest: dict[str, Any], examples: list[dict[str, Any]]) -> Subset:
    """Write both files into a temp folder beside ``out_dir`` and swap it into place.

    ``manifest`` gets ``format_version`` and ``examples_sha256`` filled in here.
    """
    out_dir = Path(out_dir)
    blob = examples_blob(examples)
    manifest = {**manifest, "format_version": FORMAT_VERSION, "examples_sha256": hashlib.sha256(blob).hexdigest()}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / EXAMPLES_FILE).write_bytes(blob)
        (tmp / MANIFEST_FILE).write_text(canonical_json(manifest), encoding="utf-8")
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Subset(out_dir, manifest, examples)


def replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing what is there with at most a brief gap in
    which neither the old nor a half-written new folder is visible at ``dst``."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def load_subset(path: str | Path, verify: bool = True) -> Subset:
    """Read a subset folder; with ``verify`` check the examples' sha256 and the pick list."""
    path = Path(path)
    manifest_path, examples_path = path / MANIFEST_FILE, path / EXAMPLES_FILE
    if not manifest_path.is_file() or not examples_path.is_file():
        raise SubsetError(f"{path}: not a subset folder (needs {MANIFEST_FILE} and {EXAMPLES_FILE})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubsetError(f"{manifest_path}: malformed manifest ({err})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SubsetError(f"{manifest_path}: unsupported format_version {manifest.get('format_version')!r}")
    blob = examples_path.read_bytes()
    if verify and hashlib.sha256(blob).hexdigest() != manifest.get("examples_sha256"):
        raise SubsetError(f"{examples_path}: sha256 does not match the manifest (file was modified)")
    examples = []
    for line_no, line in enumerate(blob.decode("utf-8").splitlines(), start=1):
        try:
            examples.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise SubsetError(f"{examples_path}:{line_no}: malformed JSON ({err.msg})") from None
    if verify:
        picked = [(p["id"], p["hash"]) for p in manifest.get("picks", [])]
        if picked != [(e["id"], e["hash"]) for e in examples]:
            raise SubsetError(f"{path}: examples.jsonl does not list the manifest's picks in order")
    return Subset(path, manifest, examples)
