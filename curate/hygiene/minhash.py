"""MinHash LSH near-duplicate search, streamed: signatures, bands, verified pairs, groups.

Signatures come from rensa (``RMinHash``, a Rust MinHash): on these CPUs it computed
20,000 documents' 128-permutation signatures about 30x faster than datasketch's
``MinHash.bulk`` (``benchmarks/hygiene.py`` measures both). The banding is ours, as in
datatrove's MinHash stages: per band one 64-bit key per row, a sort per band finds the rows
that share a key (candidate pairs), each candidate pair is kept only when its signatures
agree on at least ``threshold`` of the permutations (the estimated Jaccard similarity of
the two rows' shingle sets), and the kept pairs are joined into groups (connected
components). Memory is O(N · bands) for the keys plus the signatures, which live in a
memory-mapped file on disk, not in RAM; the text is read one batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 65_536  # candidate pairs verified per step


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) whose S-curve 1 - (1 - s^r)^b best separates similarity
    ``threshold``: the least false-positive plus false-negative area, as datasketch's
    ``MinHashLSH`` chooses them (equal weights)."""
    grid = np.linspace(0.0, 1.0, 201)
    best, best_cost = (1, num_perm), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - grid**r) ** b
            fp = np.trapezoid(np.where(grid < threshold, p, 0.0), grid)
            fn = np.trapezoid(np.where(grid >= threshold, 1.0 - p, 0.0), grid)
            if fp + fn < best_cost:
                best, best_cost = (b, r), fp + fn
    return best


def signatures(shingle_sets: list[list[str]], num_perm: int, seed: int) -> np.ndarray:
    """(len(shingle_sets), num_perm) uint32 MinHash signatures."""
    from rensa import RMinHash

    if not shingle_sets:
        return np.zeros((0, num_perm), dtype=np.uint32)
    matrix = RMinHash.digest_matrix_from_token_sets(shingle_sets, num_perm, seed)
    return np.asarray(matrix.to_rows(), dtype=np.uint32)


_MIX = np.uint64(0x9E3779B97F4A7C15)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one key per band, equal whenever the band's values are (and, by
    a 64-bit mix, almost never otherwise; a rare collision is caught by verification)."""
    keys = np.zeros((sigs.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(sigs.shape[0], np.uint64(b + 1), dtype=np.uint64)
            for j in range(b * rows, (b + 1) * rows):
                h = (h ^ sigs[:, j].astype(np.uint64)) * _MIX
                h ^= h >> np.uint64(29)
            keys[:, b] = h
    return keys


def candidate_pairs(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(m, 2) int64 pairs (first row of a bucket, another row of it) over every band,
    deduplicated; rows with ``valid`` False (no words) take part in none."""
    rows = np.flatnonzero(valid)
    pairs = []
    for b in range(keys.shape[1]):
        col = keys[rows, b]
        order = np.argsort(col, kind="stable")
        sorted_keys = col[order]
        same = np.concatenate([[False], sorted_keys[1:] == sorted_keys[:-1]])
        run_start = np.maximum.accumulate(np.where(~same, np.arange(len(same)), 0))
        members = np.flatnonzero(same)
        if members.size:
            pairs.append(np.stack([rows[order[run_start[members]]], rows[order[members]]], 1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    both = np.concatenate(pairs)
    both.sort(axis=1)
    return np.unique(both, axis=0).astype(np.int64)


def agreement(sigs: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of each pair: the fraction of equal signature values."""
    out = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), BLOCK):
        block = pairs[start : start + BLOCK]
        out[start : start + BLOCK] = (sigs[block[:, 0]] == sigs[block[:, 1]]).mean(axis=1)
    return out


@dataclass(frozen=True)
class Groups:
    """Connected components of the kept pairs: ``members[i]`` (pool positions, ascending)
    belongs to group ``labels[i]`` (the group's smallest position)."""

    members: np.ndarray
    labels: np.ndarray


def components(pairs: np.ndarray) -> Groups:
    """Groups of rows joined by ``pairs`` (label propagation with pointer jumping)."""
    if len(pairs) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Groups(empty, empty)
    nodes, inverse = np.unique(pairs, return_inverse=True)
    edges = inverse.reshape(pairs.shape)
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[edges[:, 0]], label[edges[:, 1]])
        new = label.copy()
        np.minimum.at(new, edges[:, 0], low)
        np.minimum.at(new, edges[:, 1], low)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    return Groups(nodes.astype(np.int64), nodes[label].astype(np.int64))
