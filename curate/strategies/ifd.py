"""The model's own difficulty score: Instruction-Following Difficulty (IFD).

Cherry LLM (Li et al. 2024, *From Quantity to Quality*, arXiv:2308.12032) scores a row by
how much its instruction helps the model predict its answer:

    IFD = loss(answer | instruction) / loss(answer alone)

(mean NLL over the answer's tokens). Near 1 the instruction barely helps: the model does
not yet follow it, so the row teaches instruction following; well below 1 the answer is
easy given the prompt. Above 1 the instruction makes the answer *harder* to predict, a
sign the pair is mismatched: Cherry drops those rows. Superfiltering (Li et al. 2024,
arXiv:2402.00530) shows a small scorer's IFD ranks data for a far larger learner, and
"Superfiltering.D" follows the IFD filter with a diversity step. In DiverseEvol's loop
the scorer is the round's own model, so this is the model choosing its own data.

The scores come from the ``lm:`` embedder with scores asked for (``curate embed --scores``
or ``--for-strategy ifd``): ``ifd`` = ``answer_loss`` / ``answer_alone_loss``
(:mod:`curate.embedders.causal_lm`). A row with no answer token left after truncation has
``ifd`` 0 and, like a row with IFD > 1, is never picked.

- ``ifd``: the unchosen rows with 0 < IFD ≤ 1, highest IFD first (ties to the lowest pool
  position); the seed is not used.
- ``ifd-diverse``: the top ``ifd_top`` fraction of those rows by IFD (at least ``k``),
  then greedy K-center (``diverse kcenter``: DiverseEvol's step, the default) or lazy
  greedy facility location (``diverse facility-location``: Superfiltering.D's) among
  them, with the already-chosen rows as the starting centres / covered rows.

Either stops with one line when fewer than ``k`` rows are eligible. ``Selection.scores``
holds each pick's IFD.
"""

from __future__ import annotations

import math

import numpy as np

from curate.devices import DEFAULT_DEVICE
from curate.errors import SelectionError
from curate.plugins import Param
from curate.progress import NO_PROGRESS, Progress
from curate.strategies.base import PoolArrays, Selection, Strategy, unchosen_mask
from curate.strategies.facility import facility_location
from curate.strategies.kcenter import METRIC_PARAM, check_request, kcenter_greedy

SCORE = "ifd"  # the one score column both strategies read (``lm:`` computes it)
DIVERSE = ("kcenter", "facility-location")


def ifd_ranking(ifd: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The unchosen positions with 0 < IFD ≤ 1, highest IFD first, ties to the lowest."""
    keep = unchosen_mask(len(ifd), chosen) & (ifd > 0) & (ifd <= 1)
    rows = np.flatnonzero(keep)
    return rows[np.lexsort((rows, -ifd[rows].astype(np.float64)))].astype(np.int64)


def eligible(ifd: np.ndarray, chosen: np.ndarray, k: int, name: str) -> np.ndarray:
    """:func:`ifd_ranking`, checked to hold at least ``k`` rows."""
    check_request(len(ifd), chosen, k)
    ranked = ifd_ranking(ifd, chosen)
    if len(ranked) < k:
        dropped = int(np.sum(unchosen_mask(len(ifd), chosen))) - len(ranked)
        raise SelectionError(
            f"{name} cannot add {k} rows: only {len(ranked)} unchosen rows have 0 < IFD ≤ 1 "
            f"({dropped} have IFD > 1 or no answer token within the embedding's max length)"
        )
    return ranked


def pool_ifd(pool: PoolArrays, name: str) -> np.ndarray:
    ifd = pool.scores.get(SCORE)
    if ifd is None:
        raise SelectionError(
            f"strategy {name!r} needs the 'ifd' score; embed with an `lm:` embedder and "
            f"--scores (or --for-strategy {name}), which stores it"
        )
    bad = ~np.isfinite(ifd)
    if bad.any():
        raise SelectionError(
            f"{int(bad.sum())} rows have a NaN/inf 'ifd' score; re-run `curate embed` with an "
            "`lm:` embedder"
        )
    return ifd


def ifd_top(ifd: np.ndarray, chosen: np.ndarray, k: int) -> Selection:
    """The ``k`` eligible rows of highest IFD."""
    picks = eligible(ifd, chosen, k, "ifd")[:k]
    return Selection(picks, scores=ifd[picks].astype(np.float64))


def ifd_diverse(
    vectors: np.ndarray,
    ifd: np.ndarray,
    chosen: np.ndarray | None,
    k: int,
    seed: int,
    *,
    top: float = 0.3,
    diverse: str = "kcenter",
    metric: str = "euclidean",
    neighbors: int = 20,
    device: str = DEFAULT_DEVICE,
    progress: Progress = NO_PROGRESS,
) -> Selection:
    """The IFD filter, then a diversity step down to ``k`` (module doc)."""
    chosen = np.asarray(chosen if chosen is not None else [], dtype=np.int64)
    ranked = eligible(ifd, chosen, k, "ifd-diverse")
    candidates = ranked[: max(k, math.ceil(top * len(ranked)))]
    # The diversity step runs on the chosen rows followed by the candidates; its positions
    # map back through `rows`.
    rows = np.concatenate([chosen, candidates])
    start = np.arange(len(chosen), dtype=np.int64)
    if diverse == "kcenter":
        sub = kcenter_greedy(
            vectors[rows], start, k, seed, metric=metric, device=device, progress=progress
        )
    elif diverse == "facility-location":
        sub = facility_location(vectors[rows], start, k, neighbors=neighbors, progress=progress)
    else:
        raise SelectionError(f"unknown diverse step {diverse!r}; choose from {', '.join(DIVERSE)}")
    picks = rows[sub.indices]
    return Selection(picks, distances=sub.distances, scores=ifd[picks].astype(np.float64))


class IFDStrategy(Strategy):
    name = "ifd"
    summary = (
        "highest instruction-following difficulty first, rows with IFD > 1 dropped "
        "(Cherry LLM, Li et al. 2024; needs lm: scores)"
    )
    parameters = ()
    reads_scores = (SCORE,)

    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        selection = ifd_top(pool_ifd(pool, self.name), chosen, k)
        progress.advance(k)
        return selection


class IFDDiverseStrategy(Strategy):
    name = "ifd-diverse"
    summary = (
        "the top IFD fraction, then K-center or facility location down to the budget "
        "(Superfiltering.D, Li et al. 2024; needs lm: scores)"
    )
    parameters = (
        Param("ifd_top", float, 0.3, "fraction of the eligible rows (0 < IFD ≤ 1) kept by IFD",
              minimum=1e-6, maximum=1.0),
        Param("diverse", str, "kcenter", "the diversity step among them", choices=DIVERSE),
        METRIC_PARAM,
        Param("neighbors", int, 20, "facility location: neighbours per row in its graph",
              minimum=1),
    )  # fmt: skip
    needs_vectors = True
    reads_scores = (SCORE,)

    def select(
        self,
        pool: PoolArrays,
        chosen: np.ndarray,
        k: int,
        seed: int,
        progress: Progress = NO_PROGRESS,
    ) -> Selection:
        if pool.vectors is None:
            raise SelectionError(f"{self.name} needs embeddings; run `curate embed` first")
        return ifd_diverse(
            pool.vectors,
            pool_ifd(pool, self.name),
            chosen,
            k,
            seed,
            top=self.options["ifd_top"],
            diverse=self.options["diverse"],
            metric=self.options["metric"],
            neighbors=self.options["neighbors"],
            device=self.device,
            progress=progress,
        )
