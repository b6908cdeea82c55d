"""Sharding by parameter name: the mesh, the rule table, FSDP / tensor losses, bytes, restores.

Needs several devices: `make test` runs with 8 simulated CPU devices (XLA_FLAGS).
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import finetune, models
from gau_jax.models import build_encoder
from gau_jax.models.encoder import constrain_activations
from gau_jax.train import methods, partition
from gau_jax.train.loop import Trainer
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from tests.train_helpers import synthetic_inputs, tiny_pretrain_config

needs8 = pytest.mark.skipif(jax.device_count() < 8,
                            reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=8")


def _mesh(**sizes):
    return partition.make_mesh(**sizes)


def _abstract_params(model, n=8):
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.ones((1, n), jnp.int32))
                          )["params"]


def _split(table):
    """{path: spec} of the parameters a rule table splits."""
    return {path: spec for path, _, spec in table if spec != P()}


# ----------------------------------------------------------------------------- mesh
def test_mesh_shape_fills_the_rest_and_names_bad_sizes():
    assert partition.mesh_shape(-1, 2, 1, n_devices=8) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert partition.mesh_shape(2, -1, 2, n_devices=8) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert partition.mesh_shape(1, 8, 1, n_devices=8)["fsdp"] == 8
    with pytest.raises(ValueError, match="does not fit the 8 devices"):
        partition.mesh_shape(3, 1, 1, n_devices=8)
    with pytest.raises(ValueError, match="does not fit the 8 devices"):
        partition.mesh_shape(-1, 3, 1, n_devices=8)
    with pytest.raises(ValueError, match="only one of data, fsdp, tensor may be -1"):
        partition.mesh_shape(-1, -1, 1, n_devices=8)
    with pytest.raises(ValueError, match=r"config.mesh.tensor=0"):
        partition.mesh_shape(-1, 1, 0, n_devices=8)


def test_fsdp_shorthand_and_mesh_fsdp():
    c = tiny_pretrain_config(fsdp=2)
    assert partition.mesh_sizes(c, n_devices=8) == {"data": 4, "fsdp": 2, "tensor": 1}
    c.mesh.fsdp = 4
    with pytest.raises(ValueError, match="config.fsdp=2 and config.mesh.fsdp=4 differ"):
        partition.mesh_sizes(c, n_devices=8)


@needs8
def test_clear_errors_before_compilation(tmp_path):
    c = tiny_pretrain_config(batch_size=12)
    c.mesh.update(data=2, fsdp=2, tensor=2)  # 4 data-parallel devices: 12 rows split, 4 steps
    partition.check_config(c)
    c.batch_size = 6
    with pytest.raises(ValueError, match="batch_size=6 is not divisible by the 4 data-parallel"):
        partition.check_config(c)
    c.update(batch_size=16, grad_accum_steps=8)  # micro-batches of 2 rows over 4 devices
    with pytest.raises(ValueError, match="grad_accum_steps=8 micro-batches"):
        partition.check_config(c)
    bad = tiny_pretrain_config()
    bad.mesh.update(data=3)
    with pytest.raises(ValueError, match="does not fit the 8 devices"):
        Trainer(bad, tmp_path / "mesh", inputs=synthetic_inputs(bad))
    pm = tiny_pretrain_config(parallel="pmap")
    pm.mesh.fsdp = 2
    with pytest.raises(ValueError, match="need config.parallel='jit'"):
        partition.check_config(pm)


def test_every_reader_of_config_parallel_rejects_an_unknown_mode():
    """One check (partition.parallel_mode) behind every function that branches on the mode: a
    typo is an error naming the field, never a silent fall-through to jit."""
    from gau_jax.train.loop import validate_config

    c = tiny_pretrain_config(parallel="pmapp")
    for fn in (partition.parallel_mode, partition.check_config, partition.strategy,
               validate_config, lambda cfg: partition.local_rows(cfg, 8)):
        with pytest.raises(ValueError, match=r"config.parallel='pmapp' must be one of "
                                             r"\('jit', 'pmap'\)"):
            fn(c)
    assert [partition.parallel_mode(tiny_pretrain_config(parallel=m))
            for m in partition.PARALLEL] == ["jit", "pmap"]


# ----------------------------------------------------------------------------- rules
BASE_SPLIT = {  # fsdp = 8, tensor = 1: what the rules split in the two base presets
    "gau_alpha_base": {
        "embeddings/token_embedding/embedding": P(None, "fsdp"),    # [12000, 768]
        "layers/gau/uvz/kernel": P(None, "fsdp"),                   # [24, 768, 3200]
        "layers/gau/output/kernel": P(None, None, "fsdp"),          # [24, 1536, 768]
    },
    "roformer_v2_base": {
        "embeddings/token_embedding/embedding": P(None, "fsdp"),
        **{f"layers/attention/{k}/kernel": P(None, "fsdp") for k in ("query", "key", "value")},
        "layers/attention/output/kernel": P(None, None, "fsdp"),
        "layers/ffn/intermediate/kernel": P(None, "fsdp"),
        "layers/ffn/output/kernel": P(None, None, "fsdp"),
    },
}


@needs8
@pytest.mark.parametrize("preset", sorted(BASE_SPLIT))
def test_rule_table_of_the_base_encoders(preset):
    params = _abstract_params(build_encoder(models.get_config(preset)))
    table = partition.rule_table(params, _mesh(fsdp=8))
    assert _split(table) == BASE_SPLIT[preset]  # norms / scales / segment table replicated
    tensor = {p: s for p, _, s in partition.rule_table(params, _mesh(data=2, fsdp=2, tensor=2))}
    assert tensor["embeddings/token_embedding/embedding"] == P("tensor", "fsdp")
    out = "layers/gau/output/kernel" if preset.startswith("gau") else "layers/ffn/output/kernel"
    assert tensor[out] == P(None, "tensor", "fsdp")


@needs8
def test_rule_table_of_lst_and_lora_trees():
    mesh = _mesh(fsdp=8)
    c = finetune.get_config("model=gau_alpha_base,method=lst")
    lst = _abstract_params(methods.get("lst").build(c, c.model, 3).model)
    split = _split(partition.rule_table(lst, mesh))
    trunk = {f"encoder/{k}": v for k, v in BASE_SPLIT["gau_alpha_base"].items()}
    side = {k: v for k, v in split.items() if not k.startswith("encoder/")}
    assert {k: v for k, v in split.items() if k.startswith("encoder/")} == trunk
    # side network by the same rules: Down_k [768, 96] and the side GAU kernels are split;
    # gates, scales and the small classifier [96, 3] are not.
    assert {k: side[k] for k in ("down_0/kernel", "side_0/gau/uvz/kernel",
                                 "side_0/gau/output/kernel")} == {
        "down_0/kernel": P("fsdp"), "side_0/gau/uvz/kernel": P("fsdp"),
        "side_0/gau/output/kernel": P(None, "fsdp")}
    assert not [k for k in side if "gate" in k or "scale" in k or "classifier" in k]
    c = finetune.get_config("model=gau_alpha_base,method=lora")
    lora = _abstract_params(methods.get("lora").build(c, c.model, 3).model)
    split = _split(partition.rule_table(lora, mesh))
    assert split == {f"base/encoder/{k}": v for k, v in BASE_SPLIT["gau_alpha_base"].items()}
    assert "layers/gau/uvz/A" in {p for p, _, _ in partition.rule_table(lora, mesh)}


@needs8
@pytest.mark.parametrize("optimizer", ["lamb", "adafactor"])
def test_optimizer_state_follows_its_parameter(optimizer):
    """lamb's mu / nu take their parameter's spec; adafactor's factored v_row / v_col (and the
    [1] placeholders of factored v) are replicated, as are step counts."""
    mesh = _mesh(fsdp=8)
    params = _abstract_params(build_encoder(models.get_config("gau_alpha_base")))
    tx = make_optimizer(optimizer, lambda s: 1e-3)
    state = jax.eval_shape(lambda: create_state(
        jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), params), tx, 0))
    specs = partition.state_specs(state, mesh)
    table = {p: (shape, s) for p, shape, s in partition.rule_table(params, mesh)}
    leaves = jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
    spec_leaves = jax.tree_util.tree_leaves(specs.opt_state, is_leaf=lambda x: isinstance(x, P))
    followed, factored = 0, 0
    for (path, leaf), spec in zip(leaves, spec_leaves, strict=True):
        names = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        kind = next((n for n in names if n in ("mu", "nu", "v", "v_row", "v_col")), None)
        if kind is None:  # counts
            assert spec == P(), names
            continue
        shape, param_spec = table["/".join(names[names.index(kind) + 1:])]
        if kind in ("mu", "nu", "v") and tuple(leaf.shape) == shape:
            assert spec == param_spec, names
            followed += param_spec != P()
        else:
            assert spec == P(), names
            factored += kind in ("v_row", "v_col") and len(leaf.shape) > 1
    split = sum(s != P() for _, s in table.values())
    if optimizer == "lamb":
        assert followed == 2 * split
    else:  # every split tensor of the base model is factored
        assert followed == 0 and factored >= 2 * (split - 1)
    assert jax.tree_util.tree_leaves(specs.params, is_leaf=lambda x: isinstance(x, P)) == [
        s for _, s in table.values()]


# ----------------------------------------------------------------------------- activations
@needs8
def test_block_boundary_constraints_only_under_the_jit_rules():
    cfg = tiny_pretrain_config().model
    model = build_encoder(cfg)
    ids = jnp.ones((8, 16), jnp.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids)["params"]  # one compile, not per op
    f = lambda p, x: model.apply({"params": p}, x).last_hidden_state
    mesh = _mesh(fsdp=8)
    count = lambda fn: jax.jit(fn).lower(params, ids).as_text().count("sharding_constraint")
    assert count(f) == 0  # no rules: the identity
    assert count(partition.with_activation_rules(f, mesh)) >= 2  # embeddings + block
    one = lambda p, x: jax.vmap(lambda r: f(p, r[None])[0])(x)  # per-example: no error
    got = jax.jit(partition.with_activation_rules(one, mesh))(params, ids)
    np.testing.assert_allclose(got, jax.jit(f)(params, ids), rtol=1e-5, atol=1e-6)
    with nn.logical_axis_rules(partition.ACTIVATION_RULES):  # rules but no mesh: identity
        x = jnp.ones((8, 4, 2))
        assert constrain_activations(x) is x


# ----------------------------------------------------------------------------- training
MESHES = {"dp": {"data": 8}, "fsdp": {"data": 1, "fsdp": 8},
          "tensor": {"data": 2, "fsdp": 2, "tensor": 2}}


def _config(mesh):
    c = tiny_pretrain_config(total_steps=4, batch_size=16, eval_every_steps=100,
                             checkpoint_every_steps=4)
    c.model.update(hidden_dropout=0.1)  # per-example dropout keys: the same on every mesh
    c.mesh.update(min_split_size=0, **mesh)  # split even the tiny model's kernels
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """4 steps of the tiny model on each mesh of MESHES: losses, trainer (fsdp kept open)."""
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    out = {}
    for name, mesh in MESHES.items():
        workdir = tmp_path_factory.mktemp(name)
        c = _config(mesh)
        trainer = Trainer(c, workdir, inputs=synthetic_inputs(c))
        trainer.evaluate = lambda: {"loss": 0.0, "accuracy": 0.0, "count": 0.0}
        trainer.run()
        rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
        out[name] = {"losses": [r["loss"] for r in rows if r["split"] == "train"],
                     "trainer": trainer, "workdir": workdir}
    yield out
    for r in out.values():
        r["trainer"].close()


@needs8
@pytest.mark.slow
def test_fsdp_and_tensor_meshes_give_the_data_parallel_losses(runs):
    ref = runs["dp"]["losses"]
    assert len(ref) == 4 and ref[-1] < ref[0]
    np.testing.assert_allclose(runs["fsdp"]["losses"], ref, rtol=1e-5)
    np.testing.assert_allclose(runs["tensor"]["losses"], ref, rtol=1e-5)


def _device_bytes(tree):
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree_util.tree_leaves(tree))


@needs8
@pytest.mark.slow
def test_per_device_bytes_shrink_by_the_fsdp_factor(runs):
    state = runs["fsdp"]["trainer"].state
    mesh = runs["fsdp"]["trainer"].par.mesh
    table = partition.rule_table(state.params, mesh, min_size=0)
    split = {p for p, _, s in table if s != P()}
    assert {"embeddings/token_embedding/embedding", "layers/gau/uvz/kernel",
            "layers/gau/output/kernel"} <= split
    for (path, x) in partition._paths(state.params):
        want = x.nbytes // 8 if path in split else x.nbytes
        assert x.addressable_shards[0].data.nbytes == want, path
    expect = sum(x.nbytes // 8 if p in split else x.nbytes
                 for p, x in partition._paths(state.params))
    dp = runs["dp"]["trainer"].state
    assert _device_bytes(state.params) == expect < _device_bytes(dp.params)
    # lamb's mu and nu follow: the optimizer state shrinks by the same factor (+ counts)
    mu = [x for p, x in partition._paths(state.opt_state) if "/mu/" in f"/{p}/"]
    assert len(mu) == len(table)
    assert sum(x.addressable_shards[0].data.nbytes for x in mu) == expect


@needs8
@pytest.mark.slow
def test_checkpoint_restores_on_another_mesh(runs):
    """The fsdp=8 run's checkpoint, restored onto the (2, 2, 2) mesh and pure data parallelism:
    the same parameters, laid out by the target mesh's rules."""
    src = runs["fsdp"]["trainer"]
    want = jax.tree_util.tree_map(np.asarray, jax.device_get(src.state.params))
    for name in ("tensor", "dp"):
        c = _config(MESHES["fsdp"])
        c.mesh.update({"data": -1, "fsdp": 1, "tensor": 1, **MESHES[name]})
        t = Trainer(c, runs["fsdp"]["workdir"], inputs=synthetic_inputs(c))
        try:
            assert t.step() == 4
            got = jax.device_get(t.state.params)
            jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
            emb = t.state.params["embeddings"]["token_embedding"]["embedding"]
            assert emb.sharding.spec == (P("tensor", "fsdp") if name == "tensor" else P())
            assert emb.sharding.mesh.shape == t.par.mesh.shape
        finally:
            t.close()


@needs8
@pytest.mark.slow
def test_bench_fsdp_smoke(tmp_path):
    """experiments/bench_fsdp.py (smoke: a tiny GAU at fsdp 1 and 8): per-device state bytes
    from the shardings shrink about 8x, XLA's argument bytes with them; fsdp.md is written."""
    from configs import bench_fsdp as bench_config
    from experiments import bench_fsdp

    records = bench_fsdp.run(bench_config.get_config("smoke"), tmp_path)
    one, eight = (next(r for r in records if r["fsdp"] == f) for f in (1, 8))
    assert one["state_bytes"] == one["state_bytes_replicated"]
    assert eight["state_bytes"] < one["state_bytes"] / 6  # scalars and scales stay whole
    assert eight["argument_bytes"] < one["argument_bytes"] / 4
    assert "| gau_alpha_tiny | 1 x 8 |" in (tmp_path / "fsdp.md").read_text()
