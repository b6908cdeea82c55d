"""gau_jax: RoFormerV2, GAU-α with softmax_plus, and Ladder Side-Tuning in JAX/Flax.

    model, params, tokenizer = gau_jax.load_pretrained("chinese_GAU-alpha-char_L-24_H-768")
    out = model.apply({"params": params}, input_ids, attention_mask)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_pretrained(path: Any, **overrides: Any):
    """(model, params, tokenizer) from a HF-port, bert4keras or gau_jax folder."""
    from gau_jax.pretrained import load_pretrained as _load

    return _load(path, **overrides)


__all__ = ["__version__", "load_pretrained"]
