"""Whole-word masking for MLM pretraining, with jieba word segmentation.

A text is tokenised ([CLS] ... [SEP]) and segmented by jieba; tokens are grouped into word units
(consecutive tokens whose character spans fall in the same jieba word; a token straddling two
words merges them; a `##` continuation joins the token before it). Of the W units,
n = floor(0.15 * W + u), u ~ U(0, 1) (stochastic rounding,
so E[n] = 15% of words exactly) are picked uniformly without replacement. Each picked unit, as a
whole, is replaced by [MASK] with p=0.8, by random ordinary tokens with p=0.1, kept with p=0.1.
Targets are the original ids at the picked positions (weight 1.0) and 0 (weight 0.0) elsewhere,
so unmasked positions never enter the loss. [CLS]/[SEP] are never picked.
With unit="token" every ordinary token is its own unit (BERT's original token-level masking).

Prepared corpora (gau_jax/data/corpus_format.py) store the units as word-start bits per token
(`word_starts`, the vectorised `word_units`); `mask_windows` masks a batch of such windows at
once with the same rule, its randomness a counter-based hash of (seed, window key, position), so
a window's masks depend on its key alone, not on the batch or process that reads it. There the
random draws are per token for the replacement ids and per unit for the pick and the 80/10/10
action, exactly as above.

BERT's 80/10/10 rule: Devlin et al. 2018, arXiv:1810.04805; whole-word masking for Chinese:
Cui et al. 2019, arXiv:1906.08101.
"""

from __future__ import annotations

import logging

import jieba
import numpy as np

from gau_jax.data.tokenizer import ChineseTokenizer

jieba.setLogLevel(logging.WARNING)


def jieba_word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of jieba's words (default mode, HMM on)."""
    return [(start, end) for _, start, end in jieba.tokenize(text)]


def rjieba_word_spans(text: str) -> list[tuple[int, int]]:
    """The same from rjieba (jieba-rs: jieba's dictionary and HMM in Rust, ~20x faster)."""
    import rjieba

    return [(start, end) for _, start, end in rjieba.tokenize(text)]


def _rjieba_cut(text: str) -> list[str]:
    import rjieba

    return rjieba.cut(text)


# Segmenters: text → its words in order (they cover the text: their lengths add up to it).
SEGMENTERS = {"jieba": jieba.lcut, "rjieba": _rjieba_cut}


def segmenter_version(name: str) -> str:
    """`name==version` of a segmenter (part of a prepared corpus's fingerprint)."""
    if name not in SEGMENTERS:
        raise ValueError(f"segmenter={name!r} is not one of {tuple(SEGMENTERS)}")
    from importlib.metadata import version

    return f"{name}=={version(name)}"


def char_words(word_spans: list[tuple[int, int]], text_len: int) -> np.ndarray:
    """Word index of each character (-1 outside every word)."""
    char_word = np.full(max(text_len, 1), -1, np.int64)
    for w, (s, e) in enumerate(word_spans):
        char_word[s:e] = w
    return char_word


def word_starts(offsets: np.ndarray, char_word: np.ndarray,
                continuation: np.ndarray) -> np.ndarray:
    """Bool per token: it starts a unit of `word_units` (vectorised; [CLS]/[SEP] and other
    zero-width tokens are never starts). `offsets` is [n, 2] character spans, `char_word` the
    word index of every character (`char_words`)."""
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    n, text_len = len(offsets), len(char_word)
    if n == 0:
        return np.zeros(0, bool)
    s, e = offsets[:, 0], offsets[:, 1]
    skip = e <= s
    first = np.where(skip, -2, char_word[np.minimum(s, text_len - 1)])
    last = np.where(skip, -2, char_word[np.clip(e - 1, 0, text_len - 1)])
    outside = ~skip & (first < 0)
    pos = np.arange(n)
    first = np.where(outside, -3 - pos, first)
    last = np.where(outside, -3 - pos, last)
    # the largest word index seen since the last skipped token (word_units' last_word)
    segment = np.cumsum(skip)
    big = 4 * (n + text_len + 4)
    run = np.maximum.accumulate(np.where(skip, -1, last + n + 3) + segment * big) - segment * big
    prev_last = np.concatenate([[-2], np.where(skip[:-1], -2, run[:-1] - n - 3)])
    prev_skip = np.concatenate([[True], skip[:-1]])
    glued = np.asarray(continuation, bool) & ~prev_skip
    return ~skip & ~glued & ((first > prev_last) | (first < -2))


def word_units(offsets: list[tuple[int, int]], special: np.ndarray,
               word_spans: list[tuple[int, int]], text_len: int,
               continuation: np.ndarray | None = None) -> np.ndarray:
    """Unit id per token (-1 for special tokens); units are contiguous runs of tokens.

    `continuation[i]` (a `##` WordPiece) glues token i to the unit of token i-1, so a word
    WordPiece split (e.g. `1`, `##9`, `##9`, `##8`) is masked whole even if jieba cut it.
    """
    char_word = char_words(word_spans, text_len)
    units = np.full(len(offsets), -1, dtype=np.int64)
    unit, last_word = -1, -2
    for i, (s, e) in enumerate(offsets):
        if special[i] or e <= s:
            last_word = -2  # a special token always ends the current unit
            continue
        first, last = int(char_word[s]), int(char_word[e - 1])
        if first < 0:  # character outside any jieba word (should not happen): own unit
            first = last = -3 - i
        glued = continuation is not None and continuation[i] and i > 0 and units[i - 1] >= 0
        if not glued and (first > last_word or first < -2):
            unit += 1
        units[i] = unit
        last_word = max(last_word, last)
    return units


def mask_units(input_ids: np.ndarray, units: np.ndarray, rng: np.random.Generator, *,
               mask_id: int, random_ids: np.ndarray, mask_rate: float = 0.15,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masked input_ids, mlm_targets, mlm_weights) for one sequence (module docstring)."""
    input_ids = np.asarray(input_ids, dtype=np.int32)
    n_units = int(units.max()) + 1 if units.size else 0
    masked = input_ids.copy()
    targets = np.zeros_like(input_ids)
    weights = np.zeros(input_ids.shape, dtype=np.float32)
    if n_units == 0:
        return masked, targets, weights
    n_pick = min(n_units, int(np.floor(mask_rate * n_units + rng.random())))
    picked = rng.permutation(n_units)[:n_pick]
    action = rng.random(n_pick)
    for u, a in zip(picked, action, strict=True):
        pos = np.nonzero(units == u)[0]
        targets[pos] = input_ids[pos]
        weights[pos] = 1.0
        if a < 0.8:
            masked[pos] = mask_id
        elif a < 0.9:
            masked[pos] = rng.choice(random_ids, size=len(pos))
    return masked, targets, weights


MASK_UNITS = ("word", "token")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective avalanche hash of uint64 values (wrapping)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(seed: int, keys: np.ndarray, stream: int, width: int) -> np.ndarray:
    """U[0, 1) floats [len(keys), width]: a hash of (seed, key, stream, column), so each
    (key, column) has its own independent draw whatever else is drawn with it."""
    with np.errstate(over="ignore"):
        base = mix64(np.uint64(seed) * _GOLDEN + np.uint64(stream + 1))
        row = mix64(np.asarray(keys, np.uint64) * _GOLDEN ^ base)
        cols = np.arange(width, dtype=np.uint64) + np.uint64(1)
        x = mix64(row[:, None] ^ (cols[None, :] * np.uint64(0xD1B54A32D192ED03)))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def mask_windows(ids: np.ndarray, starts: np.ndarray, keys: np.ndarray, seed: int, *,
                 mask_id: int, special_ids: np.ndarray, random_ids: np.ndarray,
                 mask_rate: float = 0.15, unit: str = "word",
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`mask_units` for a batch of windows [b, L] at once: (masked ids, targets, weights).

    Units are runs of non-special tokens that begin at a start bit (unit="token": every
    non-special token), a run cut by a special token or the window's first token begins a new
    unit. Per window (its randomness keyed by keys[i]): n = floor(rate·W + u) of its W units are
    picked uniformly (the n smallest of a uniform key per unit); a picked unit is [MASK] with
    p=0.8, random ordinary tokens (one draw per token) with p=0.1, kept with p=0.1."""
    ids = np.asarray(ids, np.int32)
    b, length = ids.shape
    if unit not in MASK_UNITS:
        raise ValueError(f"mask_unit={unit!r} is not one of {MASK_UNITS}")
    special = np.isin(ids, special_ids)
    prev_special = np.concatenate([np.ones((b, 1), bool), special[:, :-1]], axis=1)
    begins = ~special & (prev_special | (unit == "token") | np.asarray(starts, bool))
    unit_of = np.cumsum(begins, axis=1) - 1  # unit index of each token (valid where ~special)
    n_units = begins.sum(axis=1)
    u_pick, u_unit, u_act, u_tok = (uniform(seed, keys, s, length) for s in range(4))
    n_pick = np.minimum(n_units, np.floor(mask_rate * n_units + u_pick[:, 0]).astype(np.int64))
    score = np.where(np.arange(length)[None] < n_units[:, None], u_unit, np.inf)
    rank = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
    picked_unit = rank < n_pick[:, None]
    rows = np.arange(b)[:, None]
    unit_idx = np.maximum(unit_of, 0)
    picked = ~special & picked_unit[rows, unit_idx]
    action = u_act[rows, unit_idx]  # one 80/10/10 draw per unit
    random_tok = np.asarray(random_ids, np.int32)[
        np.minimum((u_tok * len(random_ids)).astype(np.int64), len(random_ids) - 1)]
    masked = np.where(picked & (action < 0.8), mask_id, ids)
    masked = np.where(picked & (action >= 0.8) & (action < 0.9), random_tok, masked)
    targets = np.where(picked, ids, 0).astype(np.int32)
    return masked.astype(np.int32), targets, picked.astype(np.float32)


class WholeWordMasker:
    """text -> dict(input_ids, mlm_targets, mlm_weights) of one [CLS] text [SEP] sequence.

    unit "word" masks whole jieba words; "token" masks single tokens."""

    def __init__(self, tokenizer: ChineseTokenizer, max_len: int | None, mask_rate: float = 0.15,
                 unit: str = "word"):
        if unit not in MASK_UNITS:
            raise ValueError(f"mask_unit={unit!r} is not one of {MASK_UNITS}")
        self.tokenizer, self.max_len, self.mask_rate = tokenizer, max_len, mask_rate
        self.unit = unit
        self.random_ids = tokenizer.normal_token_ids()
        self.specials = np.asarray(sorted({tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id,
                                           tokenizer.mask_id}), dtype=np.int32)

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, unit ids) before masking."""
        enc = self.tokenizer.encode(text, max_len=self.max_len)
        ids = np.asarray(enc.input_ids, dtype=np.int32)
        special = np.asarray([s is None for s in enc.sequence_ids])
        if self.unit == "token":
            return ids, np.where(special, -1, np.cumsum(~special) - 1)
        cont = np.asarray([t.startswith("##") for t in enc.tokens])
        units = word_units(enc.offsets, special, jieba_word_spans(text), len(text), cont)
        return ids, units

    def __call__(self, text: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        ids, units = self.encode(text)
        masked, targets, weights = mask_units(ids, units, rng, mask_id=self.tokenizer.mask_id,
                                              random_ids=self.random_ids,
                                              mask_rate=self.mask_rate)
        return {"input_ids": masked, "mlm_targets": targets, "mlm_weights": weights}
