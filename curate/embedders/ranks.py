"""This process's place in a data-parallel embedding run: :class:`Ranks`, which lives in
:mod:`curate.launch` (selection uses it too, without importing the embedders)."""

from curate.launch import DIST_TIMEOUT_ENV, Ranks, dist_timeout, launched_world

__all__ = ["DIST_TIMEOUT_ENV", "Ranks", "dist_timeout", "launched_world"]
