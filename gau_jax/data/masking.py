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


def word_units(offsets: list[tuple[int, int]], special: np.ndarray,
               word_spans: list[tuple[int, int]], text_len: int,
               continuation: np.ndarray | None = None) -> np.ndarray:
    """Unit id per token (-1 for special tokens); units are contiguous runs of tokens.

    `continuation[i]` (a `##` WordPiece) glues token i to the unit of token i-1, so a word
    WordPiece split (e.g. `1`, `##9`, `##9`, `##8`) is masked whole even if jieba cut it.
    """
    char_word = np.full(max(text_len, 1), -1, dtype=np.int64)
    for w, (s, e) in enumerate(word_spans):
        char_word[s:e] = w
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
