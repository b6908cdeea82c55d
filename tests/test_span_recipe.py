"""CMRC2018 as Su trains it (bojone/CLUE-bert4keras src/cmrc2018.py): softmax cross-entropy over
a window's context cells against a NumPy reference, the question cells masked out, the standard
bias-free GlobalPointer, and the recipe that selects them (the multilabel loss stays selectable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import finetune
from gau_jax.data.tasks import get_task
from gau_jax.models.global_pointer import GlobalPointer, span_softmax_loss
from gau_jax.tasks import TaskOptions, kind_of, losses


def np_softmax_cells(logits, labels, cells):
    """Reference: −log(Σ_gold e^s / Σ_allowed e^s) per row, in float64."""
    out = []
    for s, y, m in zip(logits[:, 0].astype(np.float64), labels[:, 0], cells, strict=True):
        allowed = s[m]
        gold = s[m & (y > 0)]
        z = np.log(np.sum(np.exp(allowed - allowed.max()))) + allowed.max()
        g = np.log(np.sum(np.exp(gold - gold.max()))) + gold.max()
        out.append(z - g)
    return np.asarray(out)


def test_softmax_over_cells_matches_numpy():
    rng = np.random.default_rng(0)
    b, n = 5, 7
    logits = rng.normal(size=(b, 1, n, n)).astype(np.float32) * 3
    cells = rng.random((b, n, n)) < 0.6
    cells[:, 0, 0] = True
    labels = np.zeros((b, 1, n, n), np.int8)
    for k in range(b):  # one or two gold cells among the allowed ones
        idx = np.argwhere(cells[k])[rng.choice(cells[k].sum(), size=1 + k % 2, replace=False)]
        labels[k, 0, idx[:, 0], idx[:, 1]] = 1
    got = span_softmax_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(cells))
    np.testing.assert_allclose(np.asarray(got), np_softmax_cells(logits, labels, cells),
                               rtol=1e-5, atol=1e-5)


def test_context_cells_are_cls_and_window_tokens_only():
    # [CLS] q q [SEP] c c c [SEP] pad: segments 0 0 0 0 1 1 1 1 0
    seg = jnp.asarray([[0, 0, 0, 0, 1, 1, 1, 1, 0]])
    mask = jnp.asarray([[1, 1, 1, 1, 1, 1, 1, 1, 0]])
    cells = np.asarray(losses.context_cells(seg, mask))[0]
    ok = {0, 4, 5, 6}
    want = np.array([[i in ok and j in ok and i <= j for j in range(9)] for i in range(9)])
    np.testing.assert_array_equal(cells, want)


class _Fixed:
    """A 'model' returning fixed scores (the sums fn only applies it)."""

    def __init__(self, logits):
        self.logits = logits

    def apply(self, variables, *args, **kwargs):
        return self.logits


def test_question_cells_do_not_move_the_loss_and_the_best_cell_counts():
    seg = np.asarray([[0, 0, 0, 1, 1, 1, 1]], np.int32)   # [CLS] q [SEP] c c c [SEP]
    batch = {"input_ids": np.ones((1, 7), np.int32), "segment_ids": seg,
             "attention_mask": np.ones((1, 7), np.int32), "weights": np.ones(1, np.float32),
             "span_labels": np.zeros((1, 1, 7, 7), np.int8)}
    batch["span_labels"][0, 0, 3, 4] = 1
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 1, 7, 7)).astype(np.float32)
    logits[0, 0, 3, 4] = 9.0  # the gold cell is the best allowed one
    sums = losses.span_softmax_sums_fn(_Fixed(jnp.asarray(logits)))(None, batch, None, None,
                                                                     False)
    noisy = logits.copy()
    noisy[0, 0, 1, :] = 50.0  # question row, and the [SEP] column below
    noisy[0, 0, :, 6] = 50.0
    again = losses.span_softmax_sums_fn(_Fixed(jnp.asarray(noisy)))(None, batch, None, None,
                                                                    False)
    assert float(again["loss"]) == pytest.approx(float(sums["loss"]), rel=1e-6)
    assert float(sums["correct"]) == 1.0 and float(again["correct"]) == 1.0


def test_recipe_selects_su_span_loss_and_the_standard_bias_free_global_pointer():
    spec = get_task("cmrc2018")
    c = finetune.get_config("task=cmrc2018")
    opts = TaskOptions.of(c)
    assert (opts.span_loss, opts.gp_efficient, opts.gp_bias) == ("softmax_cells", False, False)
    assert kind_of(spec).head(spec, 0, opts).use_bias is False
    ner = TaskOptions.of(finetune.get_config("task=cluener"))
    assert (ner.span_loss, ner.gp_efficient, ner.gp_bias) == ("multilabel", False, False)
    fn = kind_of(spec).sums_fn(None, opts)
    assert fn.__qualname__.startswith("span_softmax_sums_fn")
    c.span_loss = "multilabel"  # the GlobalPointer loss stays selectable
    assert kind_of(spec).sums_fn(None, TaskOptions.of(c)).__qualname__.startswith(
        "global_pointer_sums_fn")
    with pytest.raises(ValueError, match="span_loss='softmax'"):
        TaskOptions(span_loss="softmax")
    params = GlobalPointer(1, 8, efficient=False, use_bias=False).init(
        jax.random.PRNGKey(0), jnp.ones((1, 4, 16)))["params"]
    assert set(params["dense"]) == {"kernel"}


def test_best_metric_is_the_tasks_unless_the_config_names_one_it_reports():
    from gau_jax.tasks.kind import best_metric

    ner, qa = get_task("cluener"), get_task("cmrc2018")
    assert best_metric(ner) == "f1" and best_metric(qa) == "em"
    assert best_metric(ner, "f1_leaderboard") == "f1_leaderboard"
    with pytest.raises(ValueError, match="config.best_metric='f1_leaderboard'"):
        best_metric(qa, "f1_leaderboard")
    result = kind_of(ner).score(ner, [{"id": 0, "label": {"game": {"CS": [[0, 1]]}}}],
                                [{"id": 0, "label": {"game": {"CS": [[0, 1]]}}}])
    assert set(kind_of(ner).metrics) <= set(result)
    assert result["f1_span"] == result["f1"] == 100.0


def test_multitask_config_takes_its_tasks_recipe_options():
    from configs import multitask

    c = multitask.get_config("tasks=cmrc2018+cluener+tnews")
    assert (c.span_loss, c.gp_efficient, c.gp_bias) == ("softmax_cells", False, False)
    plain = multitask.get_config("tasks=tnews+afqmc")
    assert (plain.span_loss, plain.gp_efficient, plain.gp_bias) == ("multilabel", True, True)
