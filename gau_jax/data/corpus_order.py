"""Which window fills row j of global batch t: a pure function of (seed, t, j), O(1) memory.

Row j of global batch t is stream position k = t·B + j. One corpus of N windows:

    epoch e = k // N,  window = π_e(k mod N)

where π_e is a seeded permutation of [0, N): a 4-round balanced Feistel network on 2h bits
(4^h ≥ N) with splitmix64 round functions, cycle-walked back into [0, N) (Black & Rogaway 2002,
"Ciphers with arbitrary finite domains"). Nothing of size N is ever built, so any process can
compute the window of any position, and a batch is the same whatever the process count.

A mixture of corpora i with weights w_i (normalised) deals the positions of each block of K
rows (K a multiple of B, the smallest up to MAX_BLOCK_BATCHES batches in which every w_i·K is
a whole number; otherwise the largest-remainder split of that many) so that corpus i gets
exactly n_i rows of every block, spread evenly through it. Corpus i's c-th row then takes
window π_{i,e}(c mod N_i) of its own stream, as above. Counts per corpus after any number of
batches are O(1) too (`rows_drawn`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gau_jax.data.masking import mix64

ROUNDS = 4
MAX_BLOCK_BATCHES = 100


def permute(index: np.ndarray, n: int, key: int) -> np.ndarray:
    """π(index) for a seeded bijection π of [0, n) (module docstring)."""
    x = np.asarray(index, np.uint64).copy()
    if n <= 1:
        return np.zeros_like(x).astype(np.int64)
    half = max(1, math.ceil(math.log2(n) / 2))
    mask = np.uint64((1 << half) - 1)
    with np.errstate(over="ignore"):
        keys = [mix64(np.uint64(key) * np.uint64(ROUNDS) + np.uint64(r + 1))
                for r in range(ROUNDS)]

    def rounds(v: np.ndarray) -> np.ndarray:
        left, right = v >> np.uint64(half), v & mask
        with np.errstate(over="ignore"):
            for k in keys:
                left, right = right, left ^ (mix64(right ^ k) & mask)
        return (left << np.uint64(half)) | right

    todo = np.ones(x.shape, bool)
    while todo.any():  # cycle-walking: at most a few rounds since 4^h < 4n
        x[todo] = rounds(x[todo])
        todo = x >= np.uint64(n)
    return x.astype(np.int64)


def epoch_key(seed: int, source: int, epoch: int) -> int:
    with np.errstate(over="ignore"):
        k = mix64(np.uint64(seed) ^ mix64(np.uint64(source) << np.uint64(32) | np.uint64(epoch)))
    return int(k)


def stream_windows(positions: np.ndarray, n: int, seed: int, source: int = 0) -> np.ndarray:
    """Window numbers at `positions` of one corpus's endless stream of shuffled epochs."""
    positions = np.asarray(positions, np.int64)
    epochs, within = np.divmod(positions, n)
    out = np.empty_like(positions)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = permute(within[sel], n, epoch_key(seed, source, int(e)))
    return out


def block_counts(weights: Sequence[float], batch_size: int) -> tuple[int, np.ndarray]:
    """(K, n_i): block size in rows and each corpus's rows per block (module docstring)."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 1 or len(w) == 0 or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"mixture weights must be positive numbers, got {list(weights)}")
    w = w / w.sum()
    for m in range(1, MAX_BLOCK_BATCHES + 1):
        k = m * batch_size
        if np.allclose(w * k, np.round(w * k), rtol=0, atol=1e-6):
            return k, np.round(w * k).astype(np.int64)
    k = MAX_BLOCK_BATCHES * batch_size
    n = np.floor(w * k).astype(np.int64)
    order = np.argsort(-(w * k - n), kind="stable")
    n[order[: k - n.sum()]] += 1
    return k, n


class Mixture:
    """Positions k of the global row stream → (corpus, row number within that corpus)."""

    def __init__(self, weights: Sequence[float], batch_size: int):
        self.block, self.counts = block_counts(weights, batch_size)
        # corpus i's rows sit at the evenly spread fractions (j + 0.5) / n_i of the block
        frac = np.concatenate([(np.arange(n) + 0.5) / n for n in self.counts])
        owner = np.concatenate([np.full(n, i) for i, n in enumerate(self.counts)])
        self.owner = owner[np.argsort(frac, kind="stable")]  # block position → corpus
        onehot = self.owner[None, :] == np.arange(len(self.counts))[:, None]
        self.before = np.concatenate([np.zeros((len(self.counts), 1), np.int64),
                                      np.cumsum(onehot, axis=1)], axis=1)  # [S, K + 1]

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(corpus, row number within it) of each stream position."""
        blocks, q = np.divmod(np.asarray(positions, np.int64), self.block)
        corpus = self.owner[q]
        return corpus, blocks * self.counts[corpus] + self.before[corpus, q]

    def rows_drawn(self, end: int) -> np.ndarray:
        """Rows each corpus has supplied to positions [0, end)."""
        blocks, q = divmod(int(end), self.block)
        return blocks * self.counts + self.before[:, q]
