"""The pruned-init ablation: its edits do what they say (exact + own_rope + sqrt_scale is the
library's prune_form="side", computed independently in gau_jax/models/lst_init.py), and its
unchanged rows are experiments/lst_clue.py's own runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lst_prune_ablation as ablation_config
from experiments import lst_clue, lst_prune_ablation
from gau_jax.models.lst import build_model
from gau_jax.train.inputs import RunSetup
from tests.test_lst_pruned_rope import pruned


def _fresh(trunk, lst):
    """A fresh LST model's params (the run's own random init of the side)."""
    model = build_model(trunk, 3, lst)
    return model.init(jax.random.PRNGKey(7), jnp.ones((1, 8), jnp.int32))["params"]


def _edit(side, fresh, *edits):
    """The params a run starts from: fresh, the pruned `side` put in by the method's post_init,
    then `edits`."""
    setup = RunSetup(model=None, sums_fn=None, train=None, dev_batches=None,
                     post_init=lambda p: {**p, **side})
    return lst_prune_ablation.edited_init(edits)(setup).post_init(dict(fresh))


def _assert_trees_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_own_rope_and_sqrt_scale_make_exact_the_side_form(block):
    norm = "softmax_plus" if block == "gau" else "softmax"
    trunk, lst, _, _, exact = pruned(block, norm, 4, use_bias=True, form="exact")
    side = pruned(block, norm, 4, use_bias=True, form="side")[-1]
    fresh = _fresh(trunk, lst)
    edited = _edit(exact, fresh, "own_rope", "sqrt_scale")
    _assert_trees_equal({k: edited[k] for k in side}, side)
    with pytest.raises(AssertionError):  # one edit alone is not the side form
        _assert_trees_equal({k: v for k, v in _edit(exact, fresh, "own_rope").items()
                             if k in side}, side)


def test_each_edit_changes_only_its_leaves():
    trunk, lst, _, _, exact = pruned("gau", "softmax_plus", 4, use_bias=True, form="exact")
    fresh = _fresh(trunk, lst)
    base = _edit(exact, fresh)
    _assert_trees_equal(base, {**fresh, **exact})
    down = _edit(exact, fresh, "random_down")
    _assert_trees_equal(down["down_0"], fresh["down_0"])
    _assert_trees_equal(down["side_0"], exact["side_0"])
    blocks = _edit(exact, fresh, "random_blocks")
    _assert_trees_equal(blocks["side_1"], fresh["side_1"])
    _assert_trees_equal(blocks["down_1"], exact["down_1"])
    no_bias = _edit(exact, fresh, "no_bias")["side_0"]["gau"]
    assert not np.any(no_bias["uvz"]["bias"]) and not np.any(no_bias["output"]["bias"])
    assert np.any(np.asarray(exact["side_0"]["gau"]["uvz"]["bias"]))
    _assert_trees_equal(no_bias["q_scale"], exact["side_0"]["gau"]["q_scale"])
    qk = _edit(exact, fresh, "fresh_qk_scale")["side_0"]["gau"]
    _assert_trees_equal(qk["k_scale"], fresh["side_0"]["gau"]["k_scale"])
    _assert_trees_equal(qk["uvz"], exact["side_0"]["gau"]["uvz"])
    with pytest.raises(ValueError, match="'shuffle'"):
        lst_prune_ablation.edited_init(("shuffle",))


def test_unchanged_ablations_are_lst_clues_runs():
    """random / exact / side have lst_clue's run identity (same key, so one run serves both);
    every changed ablation has its own key, which names its changes."""
    c = ablation_config.get_config("full")
    c.data_dir = "clue"
    names = {}
    for name, (base, extra, edits) in ablation_config.ABLATIONS.items():
        o = lst_prune_ablation.ablation_overrides(c, "tnews", name, 1, "trunk-x")
        same = lst_clue.run_overrides(c, "tnews", base, c.learning_rate, 1, "trunk-x")
        assert (o == same) == (not extra and not edits), name
        if edits:
            assert o["edits"] == list(edits)
        names[name] = lst_clue.run_name(o)
    assert len(set(names.values())) == len(names)
    with pytest.raises(ValueError, match="'nope'"):
        lst_prune_ablation.ablation_overrides(c, "tnews", "nope", 0, "trunk-x")


@pytest.mark.slow
def test_lst_prune_ablation_smoke(shared_data, tmp_path):
    c = ablation_config.get_config("smoke")  # afqmc; exact, exact + one edit; 2 steps
    c.update(data_dir=str(shared_data / "clue"), results_dir=str(tmp_path))
    rows = lst_prune_ablation.run(c, tmp_path / "w")
    assert [r["ablation"] for r in rows] == list(c.ablations)
    text = (tmp_path / "lst_prune_ablation.md").read_text()
    for name in c.ablations:
        assert f"| {name} |" in text
    assert "| exact | lst_pruned_exact | – |" in text and "+0.00" in text
    again = lst_prune_ablation.run(c, tmp_path / "w")  # finished runs are read back
    assert [r["run"] for r in again] == [r["run"] for r in rows]
