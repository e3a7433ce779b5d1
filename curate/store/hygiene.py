"""The pool-hygiene tables of a database: near-duplicate groups (``hyg_dedup``) and eval-set
overlaps (``hyg_decontaminate``).

A section of :class:`curate.store.Store`, so the store stays the only code that opens or
writes LanceDB. Each result is one table, replaced in one commit (``mode="overwrite"``)
under the writer lock: a run killed while computing never reaches the commit, so the
previous result stays as it was. What a result was computed on sits in the table's
schema metadata (key ``curate``): the pool version, the settings and the summary. Lance
keeps every table version, so a subset's manifest can name the result version it was
chosen under and ``subsets verify`` can check out exactly that version later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from curate.store.base import StoreBase

HYGIENE_KINDS = ("dedup", "decontaminate")
HYGIENE_PREFIX = "hyg_"
META_KEY = b"curate"


@dataclass(frozen=True)
class HygieneResult:
    """One stored result: its table version, what it was computed on, and its rows."""

    kind: str
    version: int  # the result table's version
    pool_version: int | None  # the pool version it was computed on
    settings: dict[str, Any]
    summary: dict[str, Any]
    rows: pa.Table

    def ref(self) -> dict[str, Any]:
        """What a subset's manifest records about the result it was chosen under."""
        return {
            "version": self.version,
            "pool_version": self.pool_version,
            "settings": self.settings,
        }


def hygiene_table(kind: str) -> str:
    if kind not in HYGIENE_KINDS:
        raise ValueError(f"unknown hygiene result {kind!r}")
    return f"{HYGIENE_PREFIX}{kind}"


class HygieneTables(StoreBase):
    """Store methods for the hygiene results."""

    def hygiene_result(self, kind: str, version: int | None = None) -> HygieneResult | None:
        """The stored ``kind`` result (at table ``version``, default the latest); None when
        there is none (or that version no longer exists)."""
        name = hygiene_table(kind)
        if not self.has_table(name):
            return None
        table = self._open(name)
        if version is not None:
            try:
                table.checkout(version)
            except Exception:  # noqa: BLE001 - Lance raises several kinds for a missing version
                return None
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        return HygieneResult(
            kind,
            table.version,
            meta.get("pool_version"),
            meta.get("settings", {}),
            meta.get("summary", {}),
            table.to_arrow(),
        )

    def write_hygiene(
        self,
        kind: str,
        rows: pa.Table,
        pool_version: int | None,
        settings: dict[str, Any],
        summary: dict[str, Any],
    ) -> int:
        """Replace the ``kind`` result with ``rows`` in one commit; returns its new version."""
        meta = {"pool_version": pool_version, "settings": settings, "summary": summary}
        schema = rows.schema.with_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
        rows = rows.replace_schema_metadata(schema.metadata)
        name = hygiene_table(kind)
        with self.writing(f"write the {kind} result"):
            mode = "overwrite" if self.has_table(name) else "create"
            table = self._create_table(name, schema, rows, mode)
            return table.version
