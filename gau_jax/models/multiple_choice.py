"""Multiple choice: each (context, question, choice) sequence scored alone, softmax over choices.

For a question with choices c = 1..C, sequence x_c = [CLS] context [SEP] question + choice [SEP]
(the pipeline builds it); the encoder reads each x_c separately and

    score_c = w·Drop(h_L(x_c)[CLS]) + b,    p(c) = softmax_c(score_c)   over present choices

(BERT's multiple-choice head: Devlin et al. 2019, arXiv:1810.04805, §4.4 SWAG; CLUE's C3 / ChID
baselines, Xu et al. 2020, arXiv:2004.05986). A choice absent from a question (C3 has 2–4 choices,
padded to 4) is an all-padding row (attention_mask all 0): its score is NEG_INF, so it gets zero
probability and cannot be predicted. Because each choice is scored alone, a choice's score does not
depend on its position among the choices, nor on the other choices.

Inputs are [b, C, n] (a [b, n] input is read as one choice per row: the trainer's init dummy).
"""

from __future__ import annotations

import jax.numpy as jnp

from gau_jax.models.global_pointer import NEG_INF


def flatten_choices(input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None,
                    segment_ids: jnp.ndarray | None) -> tuple[jnp.ndarray, jnp.ndarray,
                                                              jnp.ndarray | None, int]:
    """[b, C, n] inputs → [b·C, n] (attention_mask defaults to ones), and C."""
    if input_ids.ndim == 2:
        input_ids = input_ids[:, None]
        attention_mask = None if attention_mask is None else attention_mask[:, None]
        segment_ids = None if segment_ids is None else segment_ids[:, None]
    if input_ids.ndim != 3:
        raise ValueError(f"multiple choice expects input_ids [batch, choices, length], got "
                         f"shape {input_ids.shape}")
    c, n = input_ids.shape[1:]
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    flat = lambda x: None if x is None else x.reshape(-1, n)
    return flat(input_ids), flat(attention_mask), flat(segment_ids), c


def choice_logits(scores: jnp.ndarray, attention_mask: jnp.ndarray, num_choices: int
                  ) -> jnp.ndarray:
    """[b·C] (or [b·C, 1]) scores + [b·C, n] mask → [b, C] float32, absent choices NEG_INF."""
    scores = scores.reshape(-1, num_choices).astype(jnp.float32)
    present = attention_mask.reshape(scores.shape[0], num_choices, -1).any(-1)
    return jnp.where(present, scores, NEG_INF)
