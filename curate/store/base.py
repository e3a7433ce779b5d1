"""The part of :class:`curate.store.Store` every table section stands on: the database
folder, its LanceDB connection (private: opened on first use, never handed out), the
writer lock held re-entrantly, and table listing and reading. Writes reach a table only
through :meth:`StoreBase._create_table` and :meth:`StoreBase._writable`, which refuse to
run outside :meth:`StoreBase.writing`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from curate.files import naming_path
from curate.paths import DEFAULT_DB
from curate.store.lock import WriterLock


class StoreBase:
    """One LanceDB database folder: connection, writer lock, tables."""

    def __init__(self, path: str | Path = DEFAULT_DB, lock_timeout: float | None = None):
        self.path = Path(path)
        self._db: Any = None
        self._lock = WriterLock(self.path, lock_timeout)
        self._lock_depth = 0
        self._covered = False

    @property
    def lock_timeout(self) -> float:
        return self._lock.timeout

    def _connection(self) -> Any:
        """The LanceDB connection, opened on first use (connecting creates the folder)."""
        if self._db is None:
            self._db = lancedb.connect(str(self.path))
        return self._db

    # ------------------------------------------------------------------ writer lock
    @contextmanager
    def writing(self, what: str = "write") -> Iterator[None]:
        """Hold the database's writer lock for the block (re-entrant within this Store).

        Waits up to ``lock_timeout`` seconds for another writer, then raises
        :class:`ConflictError` naming it. ``what`` goes into the lock file for that message."""
        if self._covered or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with naming_path(self.path):
            self._lock.acquire(what)
        self._lock_depth = 1
        try:
            with naming_path(self.path):
                self._on_lock_taken()
                yield
        finally:
            self._lock_depth = 0
            self._lock.release()

    @contextmanager
    def covered(self) -> Iterator[None]:
        """Write without taking the lock, because another process of the same job holds it
        for us (rank 0 of a ``torchrun`` embed run, for the other ranks)."""
        self._covered = True
        try:
            yield
        finally:
            self._covered = False

    def lock_holder(self) -> str | None:
        """Who holds the writer lock, as the conflict message names it; None when free."""
        return self._lock.holder()

    def _on_lock_taken(self) -> None:
        """Finish what a writer killed under the lock left (the pool section overrides it)."""

    def _check_writing(self, name: str) -> None:
        if not self._lock_depth:
            raise RuntimeError(f"write to table {name!r} outside Store.writing()")

    # ------------------------------------------------------------------ tables
    def table_names(self) -> list[str]:
        if not self.path.is_dir():
            return []  # not created yet: readers must not create it
        names, token = [], None
        while True:
            page = self._connection().list_tables(page_token=token)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def _open(self, name: str) -> Any:
        """The LanceDB table ``name``, for reading (see :meth:`_writable` for writing)."""
        return self._connection().open_table(name)

    def _writable(self, name: str) -> Any:
        """The LanceDB table ``name`` for a write; only under :meth:`writing`."""
        self._check_writing(name)
        return self._open(name)

    def _create_table(
        self, name: str, schema: pa.Schema, data: Any = None, mode: str = "create"
    ) -> Any:
        """Create (or with ``mode="overwrite"`` replace) table ``name``; only under
        :meth:`writing`."""
        self._check_writing(name)
        return self._connection().create_table(name, data=data, schema=schema, mode=mode)

    def scan(
        self, name: str, columns: list[str] | None = None, where: str | None = None
    ) -> pa.Table:
        """All rows of a table (optionally some columns, optionally filtered by SQL)."""
        query = self._open(name).search()
        if where is not None:
            query = query.where(where)
        if columns is not None:
            query = query.select(columns)
        return query.to_arrow()
