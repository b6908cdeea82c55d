"""Task heads on the encoder's token states (`HeadSpec.layer`), one head or one per task.

    classification   logits = Dense_K(Drop(h_L[:, 0]))                       [b, K]   ([CLS] = 0)
    multiple_choice  score_c = Dense_1(Drop(h_L(x_c)[:, 0])), absent → NEG_INF   [b, C]
                     (gau_jax/models/multiple_choice.py)
    global_pointer   s_α(i, j) from RoPE'd q/k projections of every token     [b, T, n, n]
                     (gau_jax/models/global_pointer.py; CLUENER: T = 10 types, CMRC2018: T = 1,
                     the answer span — Su's CLUE recipe, sliding window + GlobalPointer: one
                     matrix scores every (start, end) pair jointly, so no start/end
                     independence and the same head and loss as NER)

Which head a task needs is its task kind's choice (gau_jax/tasks). `apply_head` builds the head's
layers in the *calling* module's scope, so every model that ends in a head — `TaskModel` (the
encoder: full, LoRA, adapters, BitFit) and the LST side network (gau_jax/models/lst.py) — has its
head params at the same top-level names, HEAD_PARAMS: "classifier" (classification /
multiple-choice Dense) or "global_pointer". `head_inputs` turns multiple-choice [b, C, n] inputs
into the [b·C, n] rows the encoder reads.

Several tasks on one trunk (the multi-task stage): `Heads` = ((task name, HeadSpec), ...); task t's
head lives under the scope t ({t: {"classifier" | "global_pointer": ...}}), the call's static
`task` argument picks the head, and `init` creates every head. A single head has the name "" and
its params stay at the top level, as above.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gau_jax.models.encoder import Encoder
from gau_jax.models.global_pointer import GlobalPointer
from gau_jax.models.multiple_choice import choice_logits, flatten_choices

HEAD_LAYERS = ("classification", "multiple_choice", "global_pointer")
HEAD_PARAMS = ("classifier", "global_pointer")  # top-level param names of the heads
GP_HEAD_SIZE = 64        # GlobalPointer q / k width per type (config.gp_head_size)
GP_EFFICIENT = True      # Efficient GlobalPointer (config.gp_efficient; kexue.fm/archives/8877)
HEAD_DROPOUT = 0.1       # dropout on [CLS] (config.classifier_dropout)


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """Which head layer and its options (hashable: a Flax module field)."""

    layer: str = "classification"
    num_classes: int = 2          # classification: K; global_pointer: number of span types T
    dropout_rate: float = HEAD_DROPOUT  # dropout on [CLS] (classification, multiple choice)
    head_size: int = GP_HEAD_SIZE       # global_pointer: d_h of q / k
    efficient: bool = GP_EFFICIENT      # global_pointer: Efficient GlobalPointer
    use_bias: bool = True               # global_pointer: biases of its projections

    def __post_init__(self):
        if self.layer not in HEAD_LAYERS:
            raise ValueError(f"head layer {self.layer!r} unknown; choose one of {HEAD_LAYERS}")

    @property
    def pools_cls(self) -> bool:
        """True when the head reads only the [CLS] state (so callers may slice it first)."""
        return self.layer != "global_pointer"


Heads = tuple[tuple[str, HeadSpec], ...]  # ((task name, head), ...); one head: (("", head),)


def as_heads(head: HeadSpec | Heads) -> Heads:
    """A HeadSpec as the one-head tuple; a Heads tuple as it is (checked: distinct names)."""
    if isinstance(head, HeadSpec):
        return (("", head),)
    names = [n for n, _ in head]
    if len(set(names)) != len(names) or not names or "" in names and len(names) > 1:
        raise ValueError(f"heads need distinct non-empty task names, got {names}")
    return tuple(head)


def select_head(heads: Heads, task: str | None) -> tuple[str, HeadSpec]:
    """(scope name, spec) of `task`'s head; None picks the first (the only one, usually)."""
    if task is None:
        return heads[0]
    for name, spec in heads:
        if name == task:
            return name, spec
    raise ValueError(f"task {task!r} has no head; heads: {[n for n, _ in heads]}")


def head_inputs(spec: HeadSpec, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None,
                segment_ids: jnp.ndarray | None) -> tuple[Any, Any, Any, int]:
    """(ids, mask, segments, C): multiple choice flattens [b, C, n] → [b·C, n]; else C = 0."""
    if spec.layer == "multiple_choice":
        return flatten_choices(input_ids, attention_mask, segment_ids)
    return input_ids, attention_mask, segment_ids, 0


def apply_head(spec: HeadSpec, h: jnp.ndarray, mask: jnp.ndarray | None, *,
               deterministic: bool, num_choices: int = 0) -> jnp.ndarray:
    """Head logits from token states h [B, n, d] (only h[:, :1] is needed when spec.pools_cls).
    Call inside a compact method: the layers become the caller's (module docstring).
    Multiple choice with num_choices = 0 returns the per-row scores [B, 1] (init)."""
    if spec.layer == "global_pointer":
        return GlobalPointer(spec.num_classes, spec.head_size, spec.efficient, spec.use_bias,
                             name="global_pointer")(h, mask)
    cls = nn.Dropout(spec.dropout_rate)(h[:, 0], deterministic=deterministic)
    width = spec.num_classes if spec.layer == "classification" else 1
    logits = nn.Dense(width, dtype=jnp.float32, name="classifier")(cls)
    if spec.layer == "multiple_choice" and num_choices:
        if mask is None:
            mask = jnp.ones(h.shape[:2], jnp.int32)
        return choice_logits(logits, mask, num_choices)
    return logits


class _ScopedHead(nn.Module):
    """One head of several, its params under the module's name (the task's)."""

    spec: HeadSpec

    @nn.compact
    def __call__(self, h, mask, deterministic: bool, num_choices: int) -> jnp.ndarray:
        return apply_head(self.spec, h, mask, deterministic=deterministic,
                          num_choices=num_choices)


def apply_heads(module: nn.Module, heads: Heads, task: str | None, h: jnp.ndarray,
                mask: jnp.ndarray | None, *, deterministic: bool, num_choices: int = 0
                ) -> jnp.ndarray:
    """The logits of `task`'s head (`apply_head`); while `module` initialises, every head is
    created. Call inside `module`'s compact method."""
    name, spec = select_head(heads, task)
    if name == "":
        return apply_head(spec, h, mask, deterministic=deterministic, num_choices=num_choices)
    out = None
    for other, other_spec in heads:
        if other == name or module.is_initializing():
            logits = _ScopedHead(other_spec, name=other)(
                h, mask, deterministic, num_choices if other == name else 0)
            out = logits if other == name else out
    return out


def reads_cls_only(heads: Heads, task: str | None, initializing: bool) -> bool:
    """Whether the head run now reads only [CLS] (init runs every head)."""
    if initializing:
        return all(spec.pools_cls for _, spec in heads)
    return select_head(heads, task)[1].pools_cls


class TaskModel(nn.Module):
    """Encoder → token states → head(s) (`apply_heads`); multiple choice reads [b, C, n]."""

    encoder: Encoder
    head: HeadSpec | Heads

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 residual_scale: float | jnp.ndarray = 1.0, task: str | None = None
                 ) -> jnp.ndarray:
        heads = as_heads(self.head)
        spec = select_head(heads, task)[1]
        ids, mask, seg, c = head_inputs(spec, input_ids, attention_mask, segment_ids)
        out = self.encoder(ids, mask, seg, deterministic=deterministic, return_logits=False,
                           residual_scale=residual_scale)
        return apply_heads(self, heads, task, out.last_hidden_state, mask,
                           deterministic=deterministic, num_choices=c)


def classifier(encoder: Encoder, num_classes: int,
               dropout_rate: float = HEAD_DROPOUT) -> TaskModel:
    """Sequence classification: encoder → [CLS] → dropout → Dense(num_classes), float32 logits
    (params {"encoder", "classifier"})."""
    return TaskModel(encoder=encoder, head=HeadSpec("classification", num_classes, dropout_rate))
