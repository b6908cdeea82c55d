"""Helpers shared by the conversion tests: a vocab.txt of an exact size and padded batches."""

from pathlib import Path

import numpy as np

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(folder: Path, size: int) -> Path:
    """A vocab.txt with the BERT specials then ordinary characters: exactly `size` lines."""
    chars = [chr(0x4E00 + i) for i in range(size - len(SPECIALS))]
    path = Path(folder) / "vocab.txt"
    path.write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    return path


def padded_batch(vocab_size: int, lengths=(24, 17, 9, 2), seed: int = 0) -> dict:
    """input_ids / attention_mask / segment_ids int32 [b, max(lengths)], padding id 0 on the
    right; row 0 has a second segment. Rows with 1 real token are avoided on purpose (see the
    gau-alpha port's quirk in tests/test_convert_parity.py)."""
    rng = np.random.default_rng(seed)
    b, n = len(lengths), max(lengths)
    mask = (np.arange(n)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
    ids = rng.integers(len(SPECIALS), vocab_size, (b, n)).astype(np.int32) * mask
    segments = np.zeros((b, n), np.int32)
    segments[0, lengths[0] // 2:lengths[0]] = 1
    return {"input_ids": ids, "attention_mask": mask, "segment_ids": segments}
