"""gau_jax.pretrained.load on every workdir the trainer writes (pretraining; full / lst / lora /
adapter / bitfit fine-tuning), on converted folders, and the pieces it is built from."""

import json
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import finetune
from gau_jax.convert.__main__ import main as convert_main
from gau_jax.convert.common import ConvertError
from gau_jax.models import stack_layers, unstack_layers
from gau_jax.models.peft import merge_lora
from gau_jax.models.tree import tree_shape_diff
from gau_jax.pretrained import (
    Pretrained,
    detect_format,
    encoder_params,
    load,
    load_pretrained,
    trunk_params,
)
from gau_jax.train.loop import Trainer
from tests.train_helpers import synthetic_inputs, tiny_pretrain_config, write_corpus_and_task

TEXTS = ["今天天气很好我们去公园玩", "这本书写得很好我很喜欢", "服务太差了再也不来了",
         "质量不好很失望", "人民日报社论今天发表", "经济发展很快生活水平提高"]
LORA_ALPHA, LORA_RANK = 4.0, 2
STEPS = 2


def _numpy(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _assert_same(got, want):
    g, w = jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves_with_path(want)
    assert [p for p, _ in g] == [p for p, _ in w]
    for (path, x), (_, y) in zip(g, w, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _train(config, workdir):
    """Run to the end; the final params (= the best ones: the only evaluation is the last)."""
    trainer = Trainer(config, workdir)
    try:
        trainer.run()
        return _numpy(trainer.host_state().params)
    finally:
        trainer.close()


def _finetune_config(method, task, init_from=""):
    c = finetune.get_config(f"task=jsonl,model=gau_alpha_tiny,method={method}")
    c.model.update(num_layers=2, hidden_size=32, intermediate_size=64, key_size=16)
    c.update(data_dir=str(task), init_from=str(init_from), total_steps=STEPS, batch_size=8,
             max_length=16, pad_multiple=16, progress_bar=False, tensorboard=False,
             eval_every_steps=STEPS, checkpoint_every_steps=STEPS, log_every_steps=1,
             data_threads=1, async_checkpoints=False, learning_rate=3e-2, optimizer="adamw")
    c.lst.update(reduction=4, side_layers=2)
    c.lora.update(rank=LORA_RANK, alpha=LORA_ALPHA)
    c.adapter_size = 8
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (workdir, final params)}: a 2-layer pretraining run, and a fine-tuning run of
    every method (from the pretraining workdir; bitfit from scratch: the trunk has no biases)."""
    root = tmp_path_factory.mktemp("runs")
    corpus, task = write_corpus_and_task(root, TEXTS)
    pt = tiny_pretrain_config(data_dir=str(corpus), dev_fraction=0.2, eval_batches=1,
                              batch_size=8, pad_multiple=16, data_threads=1, total_steps=STEPS,
                              checkpoint_every_steps=STEPS, eval_every_steps=STEPS)
    pt.model.update(vocab_size=64, num_layers=2)
    out = {"pt": (root / "pt", _train(pt, root / "pt"))}
    for method in ("full", "lst", "lora", "adapter", "bitfit"):
        init = "" if method == "bitfit" else root / "pt"
        out[method] = (root / method, _train(_finetune_config(method, task, init), root / method))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lst", "lora", "adapter"])
def test_every_method_trains_from_a_pretrained_trunk(runs, method):
    """Each method's run (init_from the pretraining workdir) reached its last step and
    evaluated every dev row."""
    path, _ = runs[method]
    assert json.loads((path / "train_config.json").read_text())["init_from"] == str(runs["pt"][0])
    summary = json.loads((path / "summary.json").read_text())
    assert summary["step"] == STEPS and summary["dev"]["count"] == len(TEXTS)


@pytest.mark.slow
def test_pretraining_workdir(runs):
    path, params = runs["pt"]
    pre = load(path)
    assert pre.format == "workdir" == detect_format(path)
    assert f"checkpoint step {STEPS} of {path} (pretraining)" == pre.source
    assert pre.vocab == path / "vocab.txt" and pre.config.scan_layers
    assert (pre.config.num_layers, pre.config.hidden_size) == (2, 32)
    _assert_same(pre.params, params)
    assert all(x.dtype == np.float32 and isinstance(x, np.ndarray)
               for x in jax.tree.leaves(pre.params))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lst", "adapter", "bitfit"])
def test_finetuned_workdir_gives_the_trained_encoder(runs, method):
    path, params = runs[method]
    pre = load(path)
    assert pre.source == f"best step {STEPS} of {path} (method {method})"
    _assert_same(pre.params, params["encoder"])
    trunk = runs["pt"][1]
    if method == "lst":  # the frozen trunk is the pretraining run's encoder, stored in
        _assert_same(pre.params, jax.tree.map(  # lst.trunk_dtype (default bfloat16)
            lambda x: np.asarray(x, jnp.bfloat16).astype(np.float32), trunk))
    if method == "full":  # trained: not the init_from encoder
        assert _differs(pre.params, trunk)
    if method == "adapter":  # trunk frozen, adapters trained (their up-projection starts at 0)
        assert pre.config.adapter_size == 8
        layers = pre.params["layers"]
        _assert_same({"embeddings": pre.params["embeddings"], "layers": {
            k: v for k, v in layers.items() if not k.startswith("Adapter")}}, trunk)
        assert np.abs(layers["Adapter_0"]["up"]["kernel"]).max() > 0
    if method == "bitfit":
        assert pre.config.use_bias
    model, p, tok = load_pretrained(path, scan_layers=False)  # a usable encoder
    ids = np.asarray([tok.encode(TEXTS[0], max_len=16).input_ids])
    assert model.apply({"params": p}, ids).last_hidden_state.shape == (1, ids.shape[1], 32)


@pytest.mark.slow
def test_lora_workdir_is_merged(runs):
    path, params = runs["lora"]
    pre = load(path)
    assert pre.source == f"best step {STEPS} of {path} (method lora)"
    base = params["base"]["encoder"]
    want = jax.tree.map(np.copy, base)
    merged = 0
    for key, a in params.items():
        if key.endswith("/A"):  # "<path below the encoder>/A", e.g. layers/gau/uvz/A
            node = want
            for name in key[:-2].removeprefix("encoder/").split("/"):
                node = node[name]
            b = params[key[:-2] + "/B"]
            assert a.shape[-1] == LORA_RANK
            node["kernel"] = node["kernel"] + LORA_ALPHA / LORA_RANK * np.einsum(
                "lir,lro->lio", a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
            merged += 1
    assert merged == 1  # gau_alpha: the uvz kernel
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
                 pre.params, want)
    assert _differs(pre.params, base)  # B trained away from 0: the update is really there


@pytest.mark.slow
def test_convert_cli_on_a_finetuned_workdir(runs, tmp_path, capsys):
    path, _ = runs["lora"]
    want = load(path).params
    assert convert_main([str(path), str(tmp_path / "conv")]) == 0
    assert "method lora" in capsys.readouterr().out
    assert detect_format(tmp_path / "conv") == "gau_jax"
    pre = load(tmp_path / "conv")
    assert pre.format == "gau_jax" and pre.vocab == tmp_path / "conv" / "vocab.txt"
    _assert_same(pre.params, want)
    assert convert_main([str(runs["full"][0]), str(tmp_path / "hf"), "--to", "hf"]) == 0
    _assert_same(load(tmp_path / "hf").params, runs["full"][1]["encoder"])


@pytest.mark.slow
def test_init_from_a_finetuned_workdir(runs, tmp_path):
    """Intermediate-task transfer: a fine-tuned workdir is an init_from like any other."""
    path, params = runs["full"]
    c = _finetune_config("full", runs["pt"][0].parent / "task", init_from=path)
    trainer = Trainer(c, tmp_path / "again")
    try:
        _assert_same(_numpy(trainer.host_state().params["encoder"]), params["encoder"])
    finally:
        trainer.close()


def test_best_step_is_preferred_over_the_latest(tmp_path):
    config = tiny_pretrain_config(total_steps=3, eval_every_steps=1, checkpoint_every_steps=10)
    config.keep_best = True
    trainer = Trainer(config, tmp_path, inputs=synthetic_inputs(config))
    accs, params_at = iter([0.5, 0.8, 0.6]), {}

    def fake_eval():
        params_at[trainer.step()] = _numpy(trainer.host_state().params)
        return {"loss": 1.0, "accuracy": next(accs), "count": 1.0}

    trainer.evaluate = fake_eval
    trainer.run()
    trainer.close()
    pre = load(tmp_path)
    assert pre.source.startswith(f"best step 2 of {tmp_path}") and pre.vocab is None
    _assert_same(pre.params, params_at[2])
    assert _differs(pre.params, params_at[3])


@pytest.mark.slow
def test_lst_from_cached_features_reads_the_trunk_of_init_from(runs, tmp_path):
    """A cached-feature LST run stores no trunk: its frozen trunk is its init_from's."""
    path, params = runs["lst"]
    fake = tmp_path / "lst_cached"
    shutil.copytree(path, fake)
    shutil.rmtree(fake / "best")
    shutil.rmtree(fake / "checkpoints")
    import orbax.checkpoint as ocp

    side = {k: v for k, v in params.items() if k != "encoder"}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save((fake / "best" / "2" / "params").absolute(), {"params": side})
    pre = load(fake)
    assert "frozen trunk of checkpoint step" in pre.source
    _assert_same(pre.params, runs["pt"][1])
    train_cfg = json.loads((fake / "train_config.json").read_text())
    (fake / "train_config.json").write_text(json.dumps(dict(train_cfg, init_from="")))
    with pytest.raises(ConvertError, match="stores no trunk"):
        load(fake)


# ------------------------------------------------------------------------ building blocks
def test_encoder_params_errors_name_the_problem(tmp_path):
    with pytest.raises(ConvertError, match=r"runs/x: no encoder in the params .*'side_0'"):
        encoder_params({"side_0": {}, "classifier": {}}, "runs/x", {}, tmp_path)
    lora = {"base": {"encoder": {}, "classifier": {}}, "layers/gau/uvz/A": np.ones((2, 1))}
    with pytest.raises(ConvertError, match=r"train_config.json has no lora.alpha"):
        encoder_params(lora, "runs/x", {}, tmp_path / "train_config.json")


def test_merge_lora_either_spelling_and_unrolled():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    a, b = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal((2, 4))
    enc = {"layers_0": {"gau": {"uvz": {"kernel": w}}}, "embeddings": {"e": np.ones(2)}}
    for key in ("layers_0/gau/uvz", "encoder/layers_0/gau/uvz"):
        out = merge_lora({"base": {"encoder": enc, "classifier": {"k": np.zeros(1)}},
                          f"{key}/A": a, f"{key}/B": b}, alpha=3.0)
        np.testing.assert_allclose(out["encoder"]["layers_0"]["gau"]["uvz"]["kernel"],
                                   w + 1.5 * a @ b, rtol=1e-6)
        assert set(out) == {"encoder", "classifier"} and out["encoder"]["embeddings"]["e"][0] == 1
    with pytest.raises(ValueError, match="no encoder kernel.*layers_7"):
        merge_lora({"base": {"encoder": enc}, "layers_7/x/A": a, "layers_7/x/B": b}, 1.0)


def test_stack_unstack_keep_numpy_and_jax():
    per_layer = [{"w": np.full((2,), i, np.float32)} for i in range(3)]
    flat = {"emb": np.ones(1), **{f"layers_{i}": p for i, p in enumerate(per_layer)}}
    scanned = stack_layers(flat)
    assert isinstance(scanned["layers"]["w"], np.ndarray)
    np.testing.assert_array_equal(scanned["layers"]["w"][:, 0], [0, 1, 2])
    assert stack_layers(scanned) is scanned  # no layers_i: nothing to do
    back = unstack_layers(scanned)
    assert isinstance(back["layers_2"]["w"], np.ndarray) and set(back) == set(flat)
    assert unstack_layers(back) is back  # already unrolled
    on_device = stack_layers(jax.tree.map(jnp.asarray, flat))
    assert isinstance(on_device["layers"]["w"], jax.Array)
    with pytest.raises(ValueError, match="layers_0"):
        stack_layers({"layers_1": per_layer[0]})


def test_trunk_params_follow_the_model_configs_layout():
    per_layer = [{"w": np.full((2,), i, np.float32)} for i in range(3)]
    scanned = stack_layers({"emb": np.ones(1), **{f"layers_{i}": p
                                                  for i, p in enumerate(per_layer)}})
    pre = Pretrained(ml_collections.ConfigDict({"scan_layers": True}), scanned, None, "gau_jax",
                     "test")
    assert trunk_params(pre, ml_collections.ConfigDict({"scan_layers": True})) is scanned
    unrolled = trunk_params(pre, ml_collections.ConfigDict({"scan_layers": False}))
    assert set(unrolled) == {"emb", "layers_0", "layers_1", "layers_2"}
    np.testing.assert_array_equal(unrolled["layers_2"]["w"], [2, 2])


def test_tree_shape_diff_names_the_first_difference():
    want = {"a": {"k": np.zeros((2, 3))}, "b": np.zeros(1)}
    assert tree_shape_diff(want, want) is None
    assert tree_shape_diff({"a": {"k": np.zeros((2, 3))}}, want) == \
        "b is missing from the checkpoint"
    assert tree_shape_diff({"a": {"k": np.zeros((3, 2))}, "b": np.zeros(1)}, want, "x", "y") \
        == "a/k has shape (3, 2) in x but (2, 3) in y"
    assert tree_shape_diff({**want, "c": np.zeros(2)}, want) == \
        "c is in the checkpoint but not in the model"
