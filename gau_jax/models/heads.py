"""Task heads on the encoder's token states, one per task kind (`HeadSpec.kind`).

    classification   logits = Dense_K(Drop(h_L[:, 0]))                       [b, K]   ([CLS] = 0)
    multiple_choice  score_c = Dense_1(Drop(h_L(x_c)[:, 0])), absent → NEG_INF   [b, C]
                     (gau_jax/models/multiple_choice.py)
    global_pointer   s_α(i, j) from RoPE'd q/k projections of every token     [b, T, n, n]
                     (gau_jax/models/global_pointer.py; CLUENER: T = 10 types, CMRC2018: T = 1,
                     the answer span — Su's CLUE recipe, sliding window + GlobalPointer: one
                     matrix scores every (start, end) pair jointly, so no start/end
                     independence and the same head and loss as NER)

`apply_head` builds the head's layers in the *calling* module's scope, so every model that ends in
a head — `TaskModel` (the encoder: full, LoRA, adapters, BitFit) and the LST side network
(gau_jax/models/lst.py) — has its head params at the same top-level names, HEAD_PARAMS:
"classifier" (classification / multiple-choice Dense) or "global_pointer". `head_inputs` turns
multiple-choice [b, C, n] inputs into the [b·C, n] rows the encoder reads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gau_jax.models.encoder import Encoder
from gau_jax.models.global_pointer import GlobalPointer
from gau_jax.models.multiple_choice import choice_logits, flatten_choices

HEAD_KINDS = ("classification", "multiple_choice", "global_pointer")
HEAD_PARAMS = ("classifier", "global_pointer")  # top-level param names of the heads
# TaskSpec.kind (gau_jax/data/tasks.py) → head kind
TASK_HEADS = {"classification": "classification", "multiple_choice": "multiple_choice",
              "span": "global_pointer", "ner": "global_pointer"}


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """Which head and its options (hashable: a Flax module field)."""

    kind: str = "classification"
    num_classes: int = 2          # classification: K; global_pointer: number of span types T
    dropout_rate: float = 0.1     # dropout on [CLS] (classification, multiple choice)
    head_size: int = 64           # global_pointer: d_h of q / k
    efficient: bool = True        # global_pointer: Efficient GlobalPointer (kexue.fm/archives/8877)

    def __post_init__(self):
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind {self.kind!r} unknown; choose one of {HEAD_KINDS}")

    @property
    def pools_cls(self) -> bool:
        """True when the head reads only the [CLS] state (so callers may slice it first)."""
        return self.kind != "global_pointer"


def head_spec(task_kind: str, num_classes: int, *, dropout_rate: float = 0.1,
              head_size: int = 64, efficient: bool = True) -> HeadSpec:
    """The head of a TaskSpec.kind: span → 1 GlobalPointer type, ner → num_classes types."""
    if task_kind not in TASK_HEADS:
        raise ValueError(f"task kind {task_kind!r} has no head; known: {sorted(TASK_HEADS)}")
    kind = TASK_HEADS[task_kind]
    k = 1 if task_kind == "span" else num_classes
    return HeadSpec(kind, int(k), float(dropout_rate), int(head_size), bool(efficient))


def head_inputs(spec: HeadSpec, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None,
                segment_ids: jnp.ndarray | None) -> tuple[Any, Any, Any, int]:
    """(ids, mask, segments, C): multiple choice flattens [b, C, n] → [b·C, n]; else C = 0."""
    if spec.kind == "multiple_choice":
        return flatten_choices(input_ids, attention_mask, segment_ids)
    return input_ids, attention_mask, segment_ids, 0


def apply_head(spec: HeadSpec, h: jnp.ndarray, mask: jnp.ndarray | None, *,
               deterministic: bool, num_choices: int = 0) -> jnp.ndarray:
    """Head logits from token states h [B, n, d] (only h[:, :1] is needed when spec.pools_cls).
    Call inside a compact method: the layers become the caller's (module docstring)."""
    if spec.kind == "global_pointer":
        return GlobalPointer(spec.num_classes, spec.head_size, spec.efficient,
                             name="global_pointer")(h, mask)
    cls = nn.Dropout(spec.dropout_rate)(h[:, 0], deterministic=deterministic)
    width = spec.num_classes if spec.kind == "classification" else 1
    logits = nn.Dense(width, dtype=jnp.float32, name="classifier")(cls)
    if spec.kind == "multiple_choice":
        if mask is None:
            mask = jnp.ones(h.shape[:2], jnp.int32)
        return choice_logits(logits, mask, num_choices)
    return logits


class TaskModel(nn.Module):
    """Encoder → token states → head (`apply_head`); multiple choice reads [b, C, n] inputs."""

    encoder: Encoder
    head: HeadSpec

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 residual_scale: float | jnp.ndarray = 1.0) -> jnp.ndarray:
        ids, mask, seg, c = head_inputs(self.head, input_ids, attention_mask, segment_ids)
        out = self.encoder(ids, mask, seg, deterministic=deterministic, return_logits=False,
                           residual_scale=residual_scale)
        return apply_head(self.head, out.last_hidden_state, mask, deterministic=deterministic,
                          num_choices=c)


class Classifier(nn.Module):
    """Sequence classification: encoder → [CLS] → dropout → Dense(num_classes), float32 logits
    (the classification TaskModel, same params {"encoder", "classifier"})."""

    encoder: Encoder
    num_classes: int
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 residual_scale: float | jnp.ndarray = 1.0) -> jnp.ndarray:
        out = self.encoder(input_ids, attention_mask, segment_ids, deterministic=deterministic,
                           return_logits=False, residual_scale=residual_scale)
        spec = HeadSpec("classification", self.num_classes, self.dropout_rate)
        return apply_head(spec, out.last_hidden_state, attention_mask,
                          deterministic=deterministic)
