"""Model presets (the released sizes, docs/math.md) as ml_collections configs, and validation.

Every field is documented in `base_config()`. `get_model_config(name)` returns a fresh, mutable
copy; `validate(cfg)` raises ConfigError naming the offending field before anything is built.
"""

from __future__ import annotations

import ml_collections

from gau_jax.layers.attention import NORMALIZATIONS
from gau_jax.layers.fused_attention import FUSED_NORMALIZATIONS, IMPLEMENTATIONS

BLOCKS = ("roformer_v2", "gau")
DTYPES = ("float32", "bfloat16")
REMAT_POLICIES = ("none", "full", "dots")


class ConfigError(ValueError):
    """A model config field holds a value the model cannot be built from."""


def base_config() -> ml_collections.ConfigDict:
    """Fields shared by every preset (values here are RoFormerV2-base-like defaults)."""
    c = ml_collections.ConfigDict()
    c.preset = ""                   # name this config came from (informational)
    c.block = "roformer_v2"         # "roformer_v2" (MHA + ReLU FFN) or "gau" (GAU-α layers)
    c.vocab_size = 12000            # token vocabulary (RoFormerV2 / GAU-α release: 12000)
    c.hidden_size = 768             # d
    c.num_layers = 12               # blocks; for "gau" the number of GAU layers
    c.num_heads = 12                # MHA heads (GAU is single-head: 1)
    c.intermediate_size = 3072      # FFN width (roformer_v2) or GAU expansion e
    c.key_size = 64                 # MHA head size (= hidden/heads) or GAU s
    c.attention_norm = "softmax"    # "softmax" | "softmax_plus" | "relu2"
    c.attention_fixed_n = 0         # 0: n = row's visible keys; > 0: a fixed n for the scale
    c.softmax_plus_min_n = 1        # softmax_plus uses max(n, this): 1 = bert4keras 0.11.3, which
    #                                 trained GAU-α (and the PyTorch port); 16 = bert4keras since
    #                                 March 2023 (layers/attention.py)
    c.hidden_dropout = 0.1          # dropout on embeddings and residual branches
    c.attention_dropout = 0.1       # dropout on attention probabilities
    c.norm_eps = 1e-12              # ε of the parameter-free RMS norm
    c.use_bias = False              # biases in Dense / ScaleOffset (False in both releases)
    c.type_vocab_size = 2           # segment ids
    c.chunk_size = 0                # GAU only: > 0 selects FLASH's mixed chunk attention
    c.rope_base = 10000.0           # RoPE θ base
    c.init_order = 2                # Su's init: std = L^(-1/order)/sqrt(fan); 2 V2, 3 GAU-α
    c.adapter_size = 0              # > 0: Houlsby adapters of this width after each sublayer
    c.dtype = "float32"             # compute dtype; parameters, norms and softmax stay float32
    c.scan_layers = True            # nn.scan over identical layers (params stacked [L, ...])
    c.scan_unroll = 0               # layers per scan iteration: 0 = all (fully unrolled loop:
    #                                 unrolled speed, 10-15 % faster on XLA:CPU), 1 = rolled
    #                                 (compiles one layer: fastest compile, least memory)
    c.remat = "none"                # "none" | "full" | "dots" (save matmul outputs only)
    c.attention_impl = "xla"        # "xla" | "cudnn" (jax.nn.dot_product_attention) | "auto"
    return c


_SIZES = {
    # name: (block, layers, hidden, heads, intermediate, key_size, norm, order)
    "roformer_v2_tiny": ("roformer_v2", 2, 64, 2, 128, 32, "softmax", 2),
    "roformer_v2_small": ("roformer_v2", 6, 384, 6, 1536, 64, "softmax", 2),
    "roformer_v2_base": ("roformer_v2", 12, 768, 12, 3072, 64, "softmax", 2),
    "roformer_v2_large": ("roformer_v2", 24, 1024, 16, 4096, 64, "softmax", 2),
    "gau_alpha_tiny": ("gau", 4, 64, 1, 128, 32, "softmax_plus", 3),
    "gau_alpha_base": ("gau", 24, 768, 1, 1536, 128, "softmax_plus", 3),
}
PRESETS = tuple(_SIZES)


def get_model_config(name: str) -> ml_collections.ConfigDict:
    """A fresh config for preset `name` (one of PRESETS)."""
    if name not in _SIZES:
        raise ConfigError(f"model preset {name!r} unknown; choose one of {', '.join(PRESETS)}")
    block, layers, hidden, heads, inter, key, norm, order = _SIZES[name]
    c = base_config()
    c.update(preset=name, block=block, num_layers=layers, hidden_size=hidden, num_heads=heads,
             intermediate_size=inter, key_size=key, attention_norm=norm, init_order=order)
    if name.endswith("_tiny"):
        c.vocab_size = 1000
    return c


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first field that cannot build a model."""
    for field in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                  "key_size", "type_vocab_size", "init_order"):
        if int(cfg[field]) <= 0:
            raise ConfigError(f"model.{field} must be positive, got {cfg[field]}")
    for field in ("chunk_size", "attention_fixed_n", "adapter_size", "scan_unroll"):
        if int(cfg[field]) < 0:
            raise ConfigError(f"model.{field} must be >= 0, got {cfg[field]}")
    if int(cfg.softmax_plus_min_n) < 1:
        raise ConfigError(f"model.softmax_plus_min_n must be >= 1, got {cfg.softmax_plus_min_n}")
    for field in ("hidden_dropout", "attention_dropout"):
        if not 0.0 <= float(cfg[field]) < 1.0:
            raise ConfigError(f"model.{field} must be in [0, 1), got {cfg[field]}")
    choices = {"block": BLOCKS, "attention_norm": NORMALIZATIONS, "dtype": DTYPES,
               "remat": REMAT_POLICIES, "attention_impl": IMPLEMENTATIONS}
    for field, allowed in choices.items():
        if cfg.get(field, allowed[0]) not in allowed:
            raise ConfigError(f"model.{field}={cfg[field]!r} unknown; choose one of {allowed}")
    if cfg.block == "roformer_v2" and cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"model.hidden_size={cfg.hidden_size} is not divisible by "
                          f"model.num_heads={cfg.num_heads}")
    if cfg.block == "roformer_v2" and cfg.key_size * cfg.num_heads != cfg.hidden_size:
        raise ConfigError(f"model.key_size={cfg.key_size} must equal hidden_size/num_heads="
                          f"{cfg.hidden_size // cfg.num_heads} for roformer_v2")
    if cfg.key_size % 2:
        raise ConfigError(f"model.key_size={cfg.key_size} is odd: RoPE rotates pairs of dims")
    if cfg.chunk_size and cfg.block != "gau":
        raise ConfigError("model.chunk_size > 0 (mixed chunk attention) needs model.block='gau'")
    if cfg.get("attention_impl", "xla") == "cudnn":
        if cfg.attention_norm not in FUSED_NORMALIZATIONS:
            raise ConfigError(f"model.attention_impl='cudnn' computes {FUSED_NORMALIZATIONS} "
                              f"only; model.attention_norm={cfg.attention_norm!r} needs 'xla'")
        if cfg.chunk_size:
            raise ConfigError(f"model.attention_impl='cudnn' cannot run mixed chunk attention "
                              f"(model.chunk_size={cfg.chunk_size}); use 'xla' or 'auto'")
        if cfg.attention_dropout:
            raise ConfigError(f"model.attention_impl='cudnn' has no attention dropout; set "
                              f"model.attention_dropout=0 (is {cfg.attention_dropout}) or use "
                              "'auto'")
    if not cfg.norm_eps > 0:
        raise ConfigError(f"model.norm_eps must be > 0, got {cfg.norm_eps}")


# Fields that change parameter shapes (or the parameter tree): a pretrained checkpoint fixes them.
SHAPE_FIELDS = ("block", "vocab_size", "hidden_size", "num_layers", "num_heads",
                "intermediate_size", "key_size", "type_vocab_size", "use_bias", "adapter_size")


def overrides(cfg: ml_collections.ConfigDict) -> dict:
    """The fields of `cfg` that differ from its preset's defaults (what a user changed)."""
    if cfg.get("preset", "") not in _SIZES:
        return {}
    default = get_model_config(cfg.preset)
    return {k: cfg[k] for k in cfg.keys() if k != "preset" and k in default
            and cfg[k] != default[k]}


def apply_overrides(checkpoint: ml_collections.ConfigDict | dict,
                    requested: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A checkpoint's model config with the user's `overrides(requested)` applied on top.

    Shape-neutral fields (dropout, remat, chunk_size, dtype, attention_norm, ...) are applied;
    a shape field (SHAPE_FIELDS) that differs from the checkpoint's value is a ConfigError."""
    out = ml_collections.ConfigDict(dict(checkpoint))
    for key, value in overrides(requested).items():
        if key in SHAPE_FIELDS and out.get(key) != value:
            raise ConfigError(f"config.model.{key}={value!r} would change the parameter shapes "
                              f"of the init_from checkpoint (it has {key}={out.get(key)!r}); "
                              "drop the override or train from scratch")
        out[key] = value
    return out
