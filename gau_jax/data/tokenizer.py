"""BERT-style WordPiece tokenizer for Chinese, built on the `tokenizers` library.

Pipeline (all inside `tokenizers`, nothing hand-written): BertNormalizer (clean text, put spaces
around CJK characters so every Chinese character is its own word, lowercase, strip accents) ->
BertPreTokenizer (split on whitespace and punctuation) -> WordPiece over a BERT `vocab.txt` ->
template `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with token types 0 / 1.

`build_char_vocab` makes a character-level vocabulary of an exact size from a corpus: the special
tokens `[PAD]=0, [UNK], [CLS], [SEP], [MASK]`, then the most frequent units (a CJK character, the
first character of a non-CJK word, or `##c` for a later character of one), ties broken by the
unit itself so the result is deterministic; `[unusedN]` fills up when the corpus has fewer
distinct units than requested.
"""

from __future__ import annotations

import collections
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from gau_jax.data.readers import DataError, iter_lines

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Spaces that the WordPiece decoder puts between CJK characters/punctuation are removed.
_CJK = r"\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_SPACE_AFTER_CJK = re.compile(rf"(?<=[{_CJK}]) (?=\S)")
_SPACE_BEFORE_CJK = re.compile(rf"(?<=\S) (?=[{_CJK}])")


@dataclass(frozen=True)
class Encoded:
    """One encoded example. `offsets[i]` is the (start, end) character span of token i in the
    sequence it came from (`sequence_ids[i]` 0 or 1; None for [CLS]/[SEP]/[PAD])."""

    input_ids: list[int]
    segment_ids: list[int]
    offsets: list[tuple[int, int]]
    sequence_ids: list[int | None]
    tokens: list[str]


def _wrap(enc) -> Encoded:
    return Encoded(list(enc.ids), list(enc.type_ids), [tuple(o) for o in enc.offsets],
                   list(enc.sequence_ids), list(enc.tokens))


def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """{token: id} of a vocab.txt (UTF-8, one token per line, id = line - 1); DataError names
    the file and line of an empty or duplicate token, invalid UTF-8 or a missing special."""
    vocab: dict[str, int] = {}
    for lineno, token in iter_lines(path):
        if not token:
            raise DataError(path, "empty token in vocab file", line=lineno)
        if token in vocab:
            raise DataError(path, f"duplicate token {token!r} (first on line "
                                  f"{vocab[token] + 1})", line=lineno)
        vocab[token] = len(vocab)
    if not vocab:
        raise DataError(path, "vocab file is empty")
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise DataError(path, f"vocab lacks special tokens {missing}")
    return vocab


def _base_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


class ChineseTokenizer:
    """WordPiece tokenizer over a BERT vocab.txt (see module docstring)."""

    def __init__(self, vocab: dict[str, int]):
        self.vocab = dict(vocab)
        self.inv_vocab = {i: t for t, i in self.vocab.items()}
        self._tok = _base_tokenizer(self.vocab)
        self._by_len: dict[int, Tokenizer] = {}

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike) -> ChineseTokenizer:
        return cls(read_vocab(path))

    def vocab_text(self) -> str:
        """vocab.txt's content: one token per line, in id order."""
        return "".join(self.inv_vocab[i] + "\n" for i in range(len(self.inv_vocab)))

    def save_vocab(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.vocab_text())

    # -- ids -----------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self.vocab["[PAD]"]

    @property
    def unk_id(self) -> int:
        return self.vocab["[UNK]"]

    @property
    def cls_id(self) -> int:
        return self.vocab["[CLS]"]

    @property
    def sep_id(self) -> int:
        return self.vocab["[SEP]"]

    @property
    def mask_id(self) -> int:
        return self.vocab["[MASK]"]

    def normal_token_ids(self) -> np.ndarray:
        """Ids of ordinary tokens (not `[...]` specials/unused): the pool for MLM random swaps."""
        ids = [i for t, i in self.vocab.items() if not (t.startswith("[") and t.endswith("]"))]
        return np.asarray(sorted(ids), dtype=np.int32)

    # -- encode / decode -----------------------------------------------------------------------
    def _truncating(self, max_len: int | None) -> Tokenizer:
        """A private copy per max_len, so encode never mutates shared state (thread-safe)."""
        if max_len is None:
            return self._tok
        tok = self._by_len.get(max_len)
        if tok is None:
            tok = Tokenizer.from_str(self._tok.to_str())
            tok.enable_truncation(max_len, strategy="longest_first")
            self._by_len[max_len] = tok
        return tok

    def encode(
        self, text: str, pair: str | None = None, max_len: int | None = None
    ) -> Encoded:
        """[CLS] text [SEP] (pair [SEP]); with max_len, the longer side is trimmed first."""
        return _wrap(self._truncating(max_len).encode(text, pair))

    def encode_batch(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_len: int | None = None
    ) -> list[Encoded]:
        inputs = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
        return [_wrap(e) for e in self._truncating(max_len).encode_batch(inputs)]

    def encode_raw_batch(self, texts: Sequence[str]) -> list:
        """`tokenizers.Encoding`s of [CLS] text [SEP] (no truncation): `.ids` and `.offsets`
        without building Python lists of tokens (the fast path of corpus preparation)."""
        return self._tok.encode_batch(list(texts))

    def encode_pieces(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of `text` without [CLS]/[SEP] and each token's (start, end) character span
        in the *original* text (normalisation is tracked: lower-casing, full-width forms and
        removed whitespace/control characters do not shift offsets), so that
        `text[offsets[i][0]:offsets[j][1]]` is the exact original substring of tokens i..j."""
        enc = self._tok.encode(text, add_special_tokens=False)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids back to text; the spaces WordPiece leaves between CJK characters are removed."""
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        text = _SPACE_AFTER_CJK.sub("", text)
        return _SPACE_BEFORE_CJK.sub("", text)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.inv_vocab[int(i)] for i in ids]


def load_tokenizer(vocab_path: str | os.PathLike) -> ChineseTokenizer:
    """The tokenizer for a BERT-style vocab.txt (e.g. ../shared/data/vocab/vocab.txt)."""
    return ChineseTokenizer.from_vocab_file(vocab_path)


def _is_punctuation(ch: str) -> bool:
    """BERT's (and BertPreTokenizer's) punctuation test."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _split_punct(word: str) -> list[str]:
    out, cur = [], ""
    for ch in word:
        if _is_punctuation(ch):
            if cur:
                out.append(cur)
            out.append(ch)
            cur = ""
        else:
            cur += ch
    return out + ([cur] if cur else [])


def count_char_units(texts: Iterable[str], chunk_chars: int = 2048,
                     max_words: int = 200_000) -> collections.Counter:
    """Frequencies of character units after BERT normalisation and pre-tokenisation.

    `tokenizers`' BertNormalizer runs on ~2k-character chunks; the whitespace/punctuation split
    of BertPreTokenizer is then applied once per distinct whitespace word (fast on big corpora).
    The word counts are folded into unit counts whenever they reach `max_words` entries, so
    memory is bounded by the number of distinct units (characters), whatever the corpus size.
    """
    norm = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    words: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()

    def fold() -> None:
        for chunk, n in words.items():
            for word in _split_punct(chunk):
                counts[word[0]] += n
                for c in word[1:]:
                    counts["##" + c] += n
        words.clear()

    buf: list[str] = []
    size = 0
    for text in texts:
        buf.append(text)
        size += len(text)
        if size >= chunk_chars:
            words.update(norm.normalize_str("\n".join(buf)).split())
            buf, size = [], 0
            if len(words) >= max_words:
                fold()
    if buf:
        words.update(norm.normalize_str("\n".join(buf)).split())
    fold()
    return counts


def vocab_from_counts(counts: collections.Counter, vocab_size: int) -> ChineseTokenizer:
    """The specials, then the `vocab_size` - 5 most frequent units (ties by the unit), then
    [unusedN] fill (module docstring)."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} must exceed the {len(SPECIAL_TOKENS)} specials")
    counts = collections.Counter(counts)
    for t in SPECIAL_TOKENS:
        counts.pop(t, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    units = [u for u, _ in ranked[: vocab_size - len(SPECIAL_TOKENS)]]
    tokens = list(SPECIAL_TOKENS) + units
    n_unused = 0
    while len(tokens) < vocab_size:
        n_unused += 1
        tokens.append(f"[unused{n_unused}]")
    return ChineseTokenizer({t: i for i, t in enumerate(tokens)})


def build_char_vocab(
    texts: Iterable[str], vocab_size: int, save_path: str | os.PathLike | None = None
) -> ChineseTokenizer:
    """A character-level vocab of exactly `vocab_size` tokens from `texts` (module docstring).

    Later characters of a non-CJK word only get a `##c` entry when their frequency ranks;
    a word that cannot be spelled from the vocab becomes [UNK] as in BERT.
    """
    tok = vocab_from_counts(count_char_units(texts), vocab_size)
    if save_path is not None:
        tok.save_vocab(save_path)
    return tok
