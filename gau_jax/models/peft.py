"""Parameter-efficient fine-tuning baselines beside LST (plugged in by gau_jax/train/methods.py).

    lora     y = x·W + (α/r)·(x·A)·B on the chosen encoder kernels (A [in, r] ~ N(0, 1/in),
             B = 0, so the model is unchanged at step 0), run unmerged: the frozen W only enters
             x·W, so the train step computes no [in, out] weight gradient for it (a merged
             W + (α/r)·A·B would need the full xᵀ·dy to reach A and B). `merge_lora` gives the
             merged kernels (= the same function) for export / inference. Trainable: A, B and
             the classifier. Hu et al., "LoRA", arXiv:2106.09685.
    adapter  Houlsby adapters after each sublayer (model.adapter_size; up-projection = 0, so the
             identity at init). Trainable: adapters and the classifier. arXiv:1902.00751.
    bitfit   Only biases and the classifier train (Ben Zaken et al., arXiv:2106.10199). The
             released RoFormerV2 / GAU-α have NO biases (use_bias=False): `bitfit_config` refuses
             a pretrained bias-free trunk and, from scratch, builds use_bias=True (biases init 0).

Everything here takes explicit arguments; the trainable masks are functions of the params tree.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gau_jax.layers.gau import GatedOutput
from gau_jax.models.heads import HEAD_PARAMS, TaskModel
from gau_jax.models.tree import path_names

ADAPTER_SIZE = 64  # default Houlsby bottleneck width (config.adapter_size)


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Options of method=lora (`config.lora` of configs/finetune.py is made from these)."""

    rank: int = 8                      # r of W + (α/r)·A·B; A [in, r] ~ N(0, 1/in), B [r, out] = 0
    alpha: float = 16.0                # α: the update is scaled by α / r
    targets: tuple[str, ...] = ("query", "value", "uvz")  # encoder Dense names that get LoRA


def _is_target(names: tuple[str, ...], targets: tuple[str, ...]) -> bool:
    return names[-1] == "kernel" and len(names) >= 2 and names[-2] in targets


class LoRA(nn.Module):
    """A TaskModel whose encoder kernels named in `targets` get a low-rank update A·B."""

    classifier: TaskModel  # its params live under "base" (applied unbound, with merged kernels)
    rank: int               # r; defaults of all three: LoRAConfig
    alpha: float            # α (update scaled by α / r)
    targets: tuple[str, ...]  # encoder Dense names that get LoRA

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, segment_ids=None, *,
                 deterministic: bool = True, residual_scale: float | jnp.ndarray = 1.0,
                 task: str | None = None):
        inner = self.classifier.clone(parent=None)
        base = self.param("base", lambda rng: inner.init(rng, input_ids)["params"])
        lora = {"base": base}
        for path, w in jax.tree_util.tree_flatten_with_path(base["encoder"])[0]:
            names = path_names(path)
            if _is_target(names, self.targets):
                *lead, d_in, d_out = w.shape
                key = "/".join(names[:-1])
                lora[f"{key}/A"] = self.param(f"{key}/A", nn.initializers.normal(d_in ** -0.5),
                                              (*lead, d_in, self.rank), jnp.float32)
                lora[f"{key}/B"] = self.param(f"{key}/B", nn.initializers.zeros,
                                              (*lead, self.rank, d_out), jnp.float32)
        if len(lora) == 1:
            raise ValueError(f"config.lora.targets={self.targets} matches no encoder kernel")
        params = dict(base, encoder=_with_factors(base["encoder"], lora))
        rngs = {} if deterministic else {"dropout": self.make_rng("dropout")}
        with nn.intercept_methods(_unmerged_dense(self.alpha / self.rank)):
            return inner.apply({"params": params}, input_ids, attention_mask, segment_ids,
                               deterministic=deterministic, residual_scale=residual_scale,
                               task=task, rngs=rngs)


_A, _B = "lora_A", "lora_B"  # where the factors sit beside a Dense's kernel inside the forward


def _with_factors(encoder: dict, lora: dict) -> dict:
    """The encoder params with A, B of every "<path>/A", "<path>/B" placed beside <path>/kernel
    (as lora_A, lora_B: a scanned stack slices them with its kernel)."""
    def place(tree: dict, names: list[str], a, b) -> dict:
        if not names:
            return dict(tree, **{_A: a, _B: b})
        return dict(tree, **{names[0]: place(tree[names[0]], names[1:], a, b)})

    for key in (k for k in lora if k.endswith("/A")):
        encoder = place(encoder, key[:-2].split("/"), lora[key], lora[key[:-2] + "/B"])
    return encoder


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lora_matmul(x: jax.Array, w: jax.Array, a: jax.Array, b: jax.Array,
                scale: float) -> jax.Array:
    """x·W + scale·(x·A)·B as one matmul, [x, scale·x·A] · [W; B], so that the sum is a matmul's
    output: XLA otherwise fuses the add into its consumers, forward and backward, and keeps both
    x·W and (x·A)·B, two [.., out] activations, alive for the backward pass."""
    return _lora_fwd(x, w, a, b, scale)[0]


def _lora_fwd(x, w, a, b, scale):
    xa = x @ a
    y = jnp.concatenate([x, scale * xa], -1) @ jnp.concatenate([w, b], 0)
    return y, (x, w, a, b, xa)


def _lora_bwd(scale, res, g):
    """dx = g·Wᵀ + scale·(g·Bᵀ)·Aᵀ, dA = xᵀ·(scale·g·Bᵀ), dB = scale·(x·A)ᵀ·g; dW = xᵀ·g is
    returned too (XLA drops it when W is frozen, which is the LoRA train step)."""
    x, w, a, b, xa = res
    gxa = scale * (g @ b.T)
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  (tokens × features)
    return (g @ w.T + gxa @ a.T, flat(x).T @ flat(g), flat(x).T @ flat(gxa),
            scale * flat(xa).T @ flat(g))


lora_matmul.defvjp(_lora_fwd, _lora_bwd)


def _unmerged_dense(scale: float):
    """Flax interceptor: a Dense holding lora_A / lora_B returns x·W + scale·(x·A)·B (+ b); so
    does GAU's GatedOutput, with x = u ⊙ o (its two inputs)."""

    def interceptor(next_fun, args, kwargs, context):
        m = context.module
        if not (isinstance(m, nn.Dense | GatedOutput) and context.method_name == "__call__"
                and m.has_variable("params", _A)):
            return next_fun(*args, **kwargs)
        x = args[0] * args[1] if isinstance(m, GatedOutput) else args[0]
        dt = m.dtype or x.dtype
        w, a, b = (m.get_variable("params", k).astype(dt) for k in ("kernel", _A, _B))
        y = lora_matmul(x.astype(dt), w, a, b, scale)
        return y + m.get_variable("params", "bias").astype(dt) if m.use_bias else y

    return interceptor


def _mask(pred):
    return lambda params: jax.tree_util.tree_map_with_path(lambda p, _: pred(path_names(p)), params)


def is_adapter(names: tuple[str, ...]) -> bool:
    """Adapter leaves: new parameters that a pretrained trunk without adapters lacks."""
    return any(k.startswith("Adapter") for k in names)


def is_head(names: tuple[str, ...]) -> bool:
    """A task head's leaf: "classifier/..." / "global_pointer/...", or under a task's name
    ("<task>/classifier/...": the heads of several tasks, gau_jax/models/heads.py)."""
    return names[0] in HEAD_PARAMS or len(names) > 1 and names[1] in HEAD_PARAMS


# Trainable masks (True = trains). The trunk of LoRA sits at ("base", "encoder").
# The task head(s) always train.
lora_trainable = _mask(lambda n: n[0] != "base" or is_head(n[1:]))
adapter_trainable = _mask(lambda n: is_head(n) or is_adapter(n))
bitfit_trainable = _mask(lambda n: is_head(n) or n[-1] == "bias")


def adapter_config(model_config: Any, adapter_size: int) -> ml_collections.ConfigDict:
    """The encoder config with adapters of `adapter_size` (unless the model already has some)."""
    cfg = ml_collections.ConfigDict(dict(model_config))
    if not cfg.get("adapter_size", 0):
        cfg.adapter_size = int(adapter_size)
    return cfg


def bitfit_config(model_config: Any, pretrained: str = "") -> ml_collections.ConfigDict:
    """The encoder config BitFit trains; raises for a pretrained bias-free trunk (docstring)."""
    cfg = ml_collections.ConfigDict(dict(model_config))
    if not cfg.use_bias:
        if pretrained:
            raise ValueError(f"config.method='bitfit': the pretrained model in "
                             f"config.init_from={pretrained} has no biases "
                             "(model.use_bias=False, as in the RoFormerV2 / GAU-α releases), so "
                             "BitFit would train only the classifier")
        logging.warning("bitfit: model.use_bias=False; building the encoder from scratch with "
                        "use_bias=True (zero-initialised biases)")
        cfg.use_bias = True
    return cfg


def merge_lora(params: dict, alpha: float) -> dict:
    """The plain TaskModel params {"encoder", "classifier"} a trained LoRA computes with: every
    kernel W with top-level leaves "<path>/A", "<path>/B" (optionally "encoder/<path>/…") becomes
    W + (α/r)·A·B, r = A.shape[-1]. Pure; numpy stays numpy, jax stays jax."""
    base = params["base"]
    pairs = {}
    for key in (k for k in params if k.endswith("/A")):
        names = tuple(key[:-2].split("/"))
        names = names[1:] if names[0] == "encoder" else names
        if key[:-2] + "/B" not in params:
            raise ValueError(f"LoRA params: {key} has no {key[:-2]}/B")
        pairs[(*names, "kernel")] = (params[key], params[key[:-2] + "/B"])

    def merge(path, w):
        ab = pairs.get(path_names(path))
        return w if ab is None else w + (alpha / ab[0].shape[-1]) * (ab[0] @ ab[1])

    encoder = jax.tree_util.tree_map_with_path(merge, base["encoder"])
    found = {path_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(base["encoder"])[0]}
    unused = sorted("/".join(n) for n in set(pairs) - found)
    if unused:
        raise ValueError(f"LoRA params: no encoder kernel for the update(s) {unused}")
    return dict(base, encoder=encoder)
