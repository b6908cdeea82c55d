"""Library pieces the experiments share: step costs, parameter counts, synthetic batches, run
logs and results-file helpers (gau_jax/train/compiled_costs.py, gau_jax/models/costs.py,
gau_jax/data/synthetic.py, gau_jax/train/runlog.py)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.data import synthetic
from gau_jax.models import get_model_config
from gau_jax.models.costs import param_count, train_matmul_flops
from gau_jax.train import compiled_costs, runlog


def test_step_costs_of_a_matmul():
    m, k, n = 64, 32, 16
    x, y = jnp.ones((m, k)), jnp.ones((k, n))
    abstract = compiled_costs.abstract
    c = compiled_costs.step_costs(compiled_costs.compile_step(jnp.dot, abstract(x), abstract(y)))
    assert c["flops"] == pytest.approx(2 * m * k * n, rel=0.01)
    assert c["argument_bytes"] == 4 * (m * k + k * n) and c["output_bytes"] == 4 * m * n
    assert c["total_bytes"] == (c["argument_bytes"] + c["output_bytes"] - c["alias_bytes"]
                                + c["temp_bytes"])


def test_donated_state_aliases_its_output():
    step = lambda s, b: (s + b, jnp.sum(b))
    s = jnp.zeros((256,))
    c = compiled_costs.step_costs(compiled_costs.compile_step(step, s, s, donate_argnums=0))
    assert c["alias_bytes"] == 4 * 256


def test_time_step_threads_the_state_and_warms_up():
    calls = []

    def step(state, batch):
        calls.append(int(state))
        return state + batch, None

    t = compiled_costs.time_step(step, 0, 1, reps=3)
    assert t >= 0 and calls == [0, 1, 2, 3]  # one warm-up, then 3 timed calls on the new state
    assert compiled_costs.matmul_rate(64, seconds=0.01) > 0


def test_param_count_and_closed_form_flops_of_a_tiny_gau():
    m = get_model_config("gau_alpha_tiny")
    m.update(num_layers=2, hidden_size=32, intermediate_size=64, key_size=16, vocab_size=40)
    d, e, s, V, L = 32, 64, 16, 40, 2
    # token + segment embeddings; per layer UVZ [d, 2e+s], output [e, d], q/k scales [s]
    assert param_count(m) == V * d + 2 * d + L * (d * (2 * e + s) + e * d + 2 * s)
    per_token = 2 * d * (2 * e + s) + 2 * e * d
    assert train_matmul_flops(m, 2, 8, 3) == 3.0 * (L * (16 * per_token + 2 * 2 * 64 * (s + e))
                                                    + 2 * 2 * 3 * d * V)


def test_synthetic_mlm_and_classification_batches():
    b = synthetic.mlm_batch(4, 16, 100, 3, seed=1)
    assert b["input_ids"].shape == (4, 16) and b["input_ids"].min() >= 5
    np.testing.assert_array_equal(b["mlm_weights"].sum(1), [3, 3, 3, 3])
    w = b["mlm_weights"] > 0
    np.testing.assert_array_equal(b["mlm_targets"][w], b["input_ids"][w])
    assert (b["mlm_targets"][~w] == 0).all() and (b["attention_mask"] == 1).all()
    p = synthetic.mlm_batch(8, 16, 100, 20, seed=2, pad=True)
    lengths = p["attention_mask"].sum(1)
    assert lengths.min() >= 8 and lengths.max() <= 16 and (lengths < 16).any()
    pad = p["attention_mask"] == 0
    assert (p["input_ids"][pad] == 0).all() and (p["mlm_weights"][pad] == 0).all()
    np.testing.assert_array_equal(p["mlm_weights"].sum(1), lengths)  # 20 > n: every real token
    c = synthetic.classification_batch(4, 8, 50, num_classes=3, seed=0)
    np.testing.assert_array_equal(c["labels"], c["input_ids"][:, 0] % 3)
    assert c["weights"].tolist() == [1.0] * 4 and c["labels"].dtype == np.int32


def test_shuffled_rows_order_and_resume():
    rows = {"x": np.arange(5), "y": np.arange(5) * 10}
    it = synthetic.ShuffledRows(rows, batch_size=2, seed=3)
    got = np.concatenate([next(it)["x"] for _ in range(5)])
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(got, np.concatenate([rng.permutation(5) for _ in range(2)]))
    again = synthetic.ShuffledRows(rows, 2, seed=3)
    again.set_state(json.loads(json.dumps(it.get_state())))
    fresh = synthetic.ShuffledRows(rows, 2, seed=3)
    for _ in range(5):
        next(fresh)
    b1, b2 = next(again), next(fresh)
    np.testing.assert_array_equal(b1["x"], b2["x"])
    np.testing.assert_array_equal(b1["y"], 10 * b1["x"])
    with pytest.raises(ValueError, match="batch_size=6"):
        synthetic.ShuffledRows(rows, 6)


def test_run_log_resumes_by_key(tmp_path):
    path = tmp_path / "runs.jsonl"
    log = runlog.RunLog(path, ("task", "seed"))
    assert log.get({"task": "a", "seed": 0}) is None
    log.append({"task": "a", "seed": 0, "acc": 0.5})
    log.append({"task": "a", "seed": 1, "acc": 0.6})
    again = runlog.RunLog(path, ("task", "seed"))
    assert again.get({"task": "a", "seed": 1})["acc"] == 0.6
    assert [r["acc"] for r in again.records] == [0.5, 0.6]
    with pytest.raises(KeyError, match="seed"):
        again.get({"task": "a"})


def test_run_key_changes_with_any_override():
    a = runlog.run_key("afqmc_lst", {"lr": 1e-2, "lst": {"reduction": 4}, "steps": 2})
    assert a.startswith("afqmc_lst-") and len(a) == len("afqmc_lst-") + 8
    assert a == runlog.run_key("afqmc_lst", {"steps": 2, "lst": {"reduction": 4}, "lr": 1e-2})
    assert a != runlog.run_key("afqmc_lst", {"lr": 2e-2, "lst": {"reduction": 4}, "steps": 2})
    assert a != runlog.run_key("afqmc_lst", {"lr": 1e-2, "lst": {"reduction": 8}, "steps": 2})


def test_results_header_and_tables():
    head = runlog.results_header("Title", "python -m experiments.x --workdir w")
    assert head[0] == "# Title" and head[2] == "Command: `python -m experiments.x --workdir w`"
    assert f"jax {jax.__version__}" in head[4] and head[4].startswith("Commit ")
    assert runlog.markdown_table(["n", "acc"], [[64, "43.1"]]) == (
        "| n | acc |\n|---|---|\n| 64 | 43.1 |")
    with pytest.raises(ValueError, match="row 0"):
        runlog.markdown_table(["n"], [[1, 2]])
    assert runlog.mean_spread([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2.0)))
    assert runlog.mean_spread([5.0]) == (5.0, 0.0)
