"""gau_jax: RoFormerV2, GAU-α with softmax_plus, and Ladder Side-Tuning in JAX/Flax.

    model, params, tokenizer = gau_jax.load_pretrained("chinese_GAU-alpha-char_L-24_H-768")
    out = model.apply({"params": params}, input_ids, attention_mask)
    pre = gau_jax.load("runs/ft")   # any format or workdir: pre.config, pre.params, pre.vocab
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_pretrained(path: Any, **overrides: Any):
    """(model, params, tokenizer) from a HF-port, bert4keras or gau_jax folder, or a workdir."""
    from gau_jax.pretrained import load_pretrained as _load

    return _load(path, **overrides)


def load(path: Any):
    """gau_jax.pretrained.Pretrained(config, params, vocab, format, source) of any folder."""
    from gau_jax.pretrained import load as _load

    return _load(path)


def __getattr__(name: str) -> Any:
    if name == "Pretrained":  # imported on first use: `import gau_jax` stays cheap
        from gau_jax.pretrained import Pretrained

        return Pretrained
    raise AttributeError(f"module 'gau_jax' has no attribute {name!r}")


__all__ = ["Pretrained", "__version__", "load", "load_pretrained"]
