"""Default locations, importable without loading LanceDB (keeps `curate --help` fast)."""

from pathlib import Path

DEFAULT_DB = Path("data/lancedb")
