"""Reading vectors computed elsewhere: Parquet, NPZ, or a structured NPY.

Each needs an ``id`` column/array and a ``vector`` column/array (N × d); a ``hash``
column, when present, is checked against the pool by the importer. Problems raise
:class:`InvalidInputError` naming the file and, where it applies, the row.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import InvalidInputError

SUFFIXES = (".parquet", ".npz", ".npy")


@dataclass
class VectorFile:
    ids: list[str]
    matrix: np.ndarray  # (N, d) float32
    hashes: list[str] | None


def read_vector_file(path: str | Path) -> VectorFile:
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(path, None, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        ids, vectors, hashes = _read_parquet(path)
    elif suffix in (".npz", ".npy"):
        ids, vectors, hashes = _read_numpy(path)
    else:
        raise InvalidInputError(
            path, None, f"unsupported file type; use one of {', '.join(SUFFIXES)}"
        )
    return _validated(path, ids, vectors, hashes)


def _read_parquet(path: Path) -> tuple[list, np.ndarray, list | None]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise InvalidInputError(path, None, f"cannot read Parquet ({err})") from None
    _require(path, table.column_names)
    column = table["vector"].combine_chunks()
    _require_real(path, "column 'vector'", column.type)
    try:
        vectors = np.asarray(column.to_pylist(), dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(
            path, None, "column 'vector' must hold lists of numbers of one length"
        ) from None
    hashes = table["hash"].to_pylist() if "hash" in table.column_names else None
    return table["id"].to_pylist(), vectors, hashes


def _read_numpy(path: Path) -> tuple[list, np.ndarray, list | None]:
    if path.stat().st_size == 0:
        raise InvalidInputError(path, None, "the file is empty (0 bytes)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InvalidInputError(path, None, _unreadable(err)) from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            _require(path, names)
            arrays = {}
            for key in ("id", "vector", "hash"):
                if key not in names:
                    continue
                try:
                    arrays[key] = loaded[key]
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                    raise InvalidInputError(
                        path, None, f"array {key!r}: {_unreadable(err)}"
                    ) from None
    else:
        names = list(loaded.dtype.names or ())
        if not names:
            raise InvalidInputError(
                path,
                None,
                "a plain array has no ids; save a structured array with fields "
                "'id' and 'vector', or an .npz with arrays 'id' and 'vector'",
            )
        _require(path, names)
        arrays = {k: loaded[k] for k in ("id", "vector", "hash") if k in names}
    hashes = [str(h) for h in arrays["hash"].tolist()] if "hash" in arrays else None
    _require_real(path, "'vector'", arrays["vector"].dtype)
    try:
        vectors = np.asarray(arrays["vector"], dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(path, None, "'vector' must be a numeric N × d array") from None
    return [str(i) for i in arrays["id"].tolist()], vectors, hashes


def _unreadable(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"cannot read ({text}); object arrays are not accepted"


def _require_real(path: Path, where: str, kind: Any) -> None:
    """Vectors are real floating or integer numbers: strings, booleans, complex numbers and
    objects are refused, not coerced. ``kind`` is a NumPy dtype or an Arrow type."""
    if isinstance(kind, np.dtype):
        ok = kind.kind in "fiu" and kind.names is None
        shown = str(kind)
    else:
        import pyarrow as pa

        value = kind
        while (
            pa.types.is_list(value)
            or pa.types.is_large_list(value)
            or pa.types.is_fixed_size_list(value)
        ):
            value = value.value_type
        ok = (pa.types.is_floating(value) or pa.types.is_integer(value)) and value is not kind
        shown = str(kind)
    if not ok:
        raise InvalidInputError(
            path, None, f"{where} holds {shown}; vectors must be real floating or integer numbers"
        )


def _require(path: Path, names: list[str]) -> None:
    missing = [k for k in ("id", "vector") if k not in names]
    if missing:
        raise InvalidInputError(
            path,
            None,
            f"missing {' and '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(names) or 'nothing'})",
        )


def _validated(path: Path, ids: list, vectors: np.ndarray, hashes: list | None) -> VectorFile:
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise InvalidInputError(
            path, None, f"'vector' must be N × d with d ≥ 1, got shape {vectors.shape}"
        )
    if len(ids) != vectors.shape[0]:
        raise InvalidInputError(path, None, f"{len(ids)} ids but {vectors.shape[0]} vectors")
    if not ids:
        raise InvalidInputError(path, None, "no vectors")
    for row, value in enumerate(ids):
        if value is None or str(value) == "":
            raise InvalidInputError(path, None, f"row {row}: empty id")
    ids = [str(v) for v in ids]
    seen: set[str] = set()
    for row, value in enumerate(ids):
        if value in seen:
            raise InvalidInputError(path, None, f"row {row}: id {value!r} appears twice")
        seen.add(value)
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise InvalidInputError(
            path, None, f"row {row} (id {ids[row]!r}): vector has NaN/inf ({bad.size} rows in all)"
        )
    return VectorFile(ids, np.ascontiguousarray(vectors), hashes)
