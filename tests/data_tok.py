"""A character vocab built from the first People's Daily documents (shared by data tests)."""

from __future__ import annotations

import functools

from gau_jax.data.corpus import people_daily_texts
from gau_jax.data.tokenizer import ChineseTokenizer, build_char_vocab


@functools.lru_cache(maxsize=1)
def small_tokenizer() -> ChineseTokenizer:
    return build_char_vocab(people_daily_texts()[:3000], 3000)
