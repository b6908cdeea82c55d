"""experiments/arch_clue.py: the full config's GAU-α / RoFormerV2 pair has equal parameters and
equal train FLOPs per token (counted here independently, within 2 %), the table's directions
against Su's, and the smoke run end to end on the CLUE snapshot: in two pieces, then a rerun
that trains nothing."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import arch_clue as config_lib
from experiments import arch_clue, clue_results
from experiments.arch_clue_report import last_quarter_gain, task_line
from gau_jax.models import build_encoder
from gau_jax.models.presets import get_model_config


def _model(c, arch):
    m = get_model_config(c.models[arch].preset)
    m.update(dict(c.models[arch].overrides))
    m.vocab_size = c.vocab_size
    return m


def _params(m) -> int:
    shapes = jax.eval_shape(build_encoder(m).init, jax.random.PRNGKey(0),
                            jnp.ones((1, 8), jnp.int32))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes)))


def _flops_per_token(m, n: int, k: int) -> float:
    """3 x forward matmul FLOPs a token: layers at length n, the tied head over k of n tokens."""
    d, f = m.hidden_size, m.intermediate_size
    if m.block == "gau":  # U, V, Z; output; QK^T and AV
        layer = 2 * d * (2 * f + m.key_size) + 2 * f * d + 2 * n * (m.key_size + f)
    else:  # Q, K, V; output; QK^T and AV; FFN
        hk = m.num_heads * m.key_size
        layer = 6 * d * hk + 2 * hk * d + 4 * n * hk + 4 * d * f
    return 3.0 * (m.num_layers * layer + 2 * k * d * m.vocab_size / n)


def test_full_pair_equal_params_and_flops_per_token():
    c = config_lib.get_config("full")
    gau, rof = _model(c, "gau_alpha"), _model(c, "roformer_v2")
    assert (gau.block, rof.block) == ("gau", "roformer_v2")
    assert gau.num_layers == 2 * rof.num_layers  # two GAU layers per RoFormerV2 block
    assert gau.hidden_size == rof.hidden_size and gau.intermediate_size == 2 * gau.hidden_size
    n, k = c.pretrain.max_length, c.pretrain.max_predictions
    params = {a: _params(m) for a, m in (("gau_alpha", gau), ("roformer_v2", rof))}
    flops = {a: _flops_per_token(m, n, k) for a, m in (("gau_alpha", gau), ("roformer_v2", rof))}
    assert abs(params["gau_alpha"] / params["roformer_v2"] - 1) < 0.02
    assert abs(flops["gau_alpha"] / flops["roformer_v2"] - 1) < 0.02
    # what configs/arch_clue.py says: GAU-α 1.5 % fewer parameters, 1.6 % more FLOPs a token
    assert params["gau_alpha"] / params["roformer_v2"] == pytest.approx(0.985, abs=1e-3)
    assert flops["gau_alpha"] / flops["roformer_v2"] == pytest.approx(1.016, abs=1e-3)
    stated = arch_clue.pair_costs(c)  # the counts the results file states
    for arch in params:
        assert stated[arch]["params"] == params[arch]
        assert stated[arch]["flops_per_token"] == pytest.approx(flops[arch], rel=1e-9)
    arch_clue.check_pair(c, stated)


def test_check_pair_names_the_field():
    c = config_lib.get_config("full")
    c.models.roformer_v2.overrides.intermediate_size = 4 * 256  # the usual 4d: GAU-α +4 % FLOPs
    with pytest.raises(ValueError, match="config.models.*pair_tolerance"):
        arch_clue.check_pair(c, arch_clue.pair_costs(c))
    c = config_lib.get_config("full")
    c.models.gau_alpha.overrides.num_layers = 2
    with pytest.raises(ValueError, match="two GAU layers per RoFormerV2 block"):
        arch_clue.check_pair(c, arch_clue.pair_costs(c))


def test_recipes_and_su_table():
    c = config_lib.get_config("full")
    assert set(c.tasks) == set(c.recipes) and len(c.tasks) == 10 and "cmnli" not in c.tasks
    assert set(clue_results.ROFORMER_V2_STAR_BASE) == set(clue_results.GAU_ALPHA_BASE)


def _runs(task, gau, rof, base=50.0):
    return [{"task": task, "arch": arch, "baseline": base,
             "result": {"metric": "accuracy", "accuracy": v}}
            for arch, values in (("gau_alpha", gau), ("roformer_v2", rof)) for v in values]


def test_task_line_directions():
    recipe = config_lib.get_config("full").recipes.tnews
    # Su: tnews 57.76 (GAU-α) vs 56.54 (RoFormerV2*); afqmc 74.17 vs 72.75; cluener 80.01 vs 81.08
    line = task_line("tnews", _runs("tnews", [60, 61, 62], [55, 56, 57]), recipe)
    assert line[3:6] == ["50.0", "61.0 ± 1.0", "56.0 ± 1.0"]
    assert line[8:] == ["yes / yes", "+5.0", "GAU-α", "57.76 / 56.54 (GAU-α)", "yes"]
    line = task_line("cluener", _runs("cluener", [60, 61, 62], [55, 56, 57]), recipe)
    assert line[8:] == ["yes / yes", "+5.0", "GAU-α", "80.01 / 81.08 (RoFormerV2)", "no"]
    # a RoFormerV2 seed at the baseline (50): the direction is not compared
    line = task_line("cluener", _runs("cluener", [60, 61, 62], [55, 56, 50]), recipe)
    assert line[8:] == ["yes / no", "+7.3", "GAU-α", "80.01 / 81.08 (RoFormerV2)", "–"]
    line = task_line("afqmc", _runs("afqmc", [60, 62], [60, 60]), recipe)
    assert line[-3:] == ["tie", "74.17 / 72.75 (GAU-α)", "–"]  # 1.0 apart, sd 1.4: no direction
    line = task_line("chid_fewclue", _runs("chid_fewclue", [20], [15]), recipe)
    assert line[-2] == "87.91 / 85.09 (GAU-α)"  # set against CLUE's ChID
    curve = [(s, 0.0, a) for s, a in ((1, 0.1), (2, 0.2), (3, 0.3), (4, 0.32))]
    assert last_quarter_gain(curve) == pytest.approx(0.02)
    assert math.isnan(last_quarter_gain(curve[:1]))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_wall_time_counts_a_killed_piece_from_its_train_log(tmp_path):
    """Pieces that wrote their end line count their wall time; one killed before it (a start
    line only) counts (last logged step - its start) / that log's rate, the rate averaged since
    the piece's first update; logs of the next piece and a killed piece that logged nothing
    add nothing."""
    trunk = tmp_path / "trunk-gau_alpha-x"
    trunk.mkdir()
    _jsonl(trunk / "metrics.jsonl", [
        {"split": "train", "step": 1000, "steps_per_s": 2.0},   # piece A
        {"split": "dev", "step": 1000, "accuracy": 0.2},
        {"split": "train", "step": 1500, "steps_per_s": 5.0},   # piece B, killed after 2000
        {"split": "train", "step": 2000, "steps_per_s": 4.0},
        {"split": "train", "step": 2500, "steps_per_s": 1.0},   # piece C, resumed at 2000
        {"split": "dev", "step": 3000, "accuracy": 0.3}])
    a, b, c, d = ({"trunk": trunk.name, "from_step": f, "started": t}
                  for f, t in ((0, 1.0), (1000, 2.0), (2000, 3.0), (3000, 4.0)))
    _jsonl(tmp_path / "pretrain_wall.jsonl", [
        a, {**a, "to_step": 1000, "wall_time_s": 100.0, "load": [2.5, 2, 2]}, b, c,
        {**c, "to_step": 3000, "wall_time_s": 200.0, "load": [1.1, 1, 1]}, d,  # d: killed
        #                                                                       before any log
        {"trunk": "trunk-roformer_v2-y", "from_step": 0, "to_step": 9, "wall_time_s": 7.0}])
    r = arch_clue.trunk_record(trunk, {"flops_per_step": 10.0}, tmp_path)
    assert r["wall_time_s"] == pytest.approx(100 + (2000 - 1000) / 4.0 + 200)
    assert (r["pieces"], r["killed"], r["finished"], r["loads"]) == (3, 1, False, (1.1, 2.5))
    assert r["curve"] == [(1000, 10000.0, 0.2), (3000, 30000.0, 0.3)]


@pytest.mark.slow
def test_smoke_in_pieces_then_rerun_trains_nothing(shared_data, tmp_path, monkeypatch):
    c = config_lib.get_config("smoke")  # tiny trunks, 2 MLM steps; csl, 1 seed, 2 steps
    c.update(data_dir=str(shared_data / "clue"), results_dir=str(tmp_path / "out"),
             pretrain_stop_at=1)
    work = tmp_path / "w"
    assert arch_clue.run(c, work) == []  # piece 1: both trunks to step 1, nothing fine-tuned
    md = (tmp_path / "out" / "arch_clue.md").read_text(encoding="utf-8")
    assert "No fine-tuning yet: pretrain_stop_at=1 pretrains only" in md
    c.pretrain_stop_at = 0
    rows = arch_clue.run(c, work)  # piece 2: resumed to the end, then fine-tuned
    lines = [json.loads(line) for line in (work / "pretrain_wall.jsonl").open()]
    pieces = [p for p in lines if "wall_time_s" in p]  # each piece's end line after its start
    assert sorted((p["trunk"].split("-")[1], p["from_step"], p["to_step"]) for p in pieces) == [
        ("gau_alpha", 0, 1), ("gau_alpha", 1, 2), ("roformer_v2", 0, 1), ("roformer_v2", 1, 2)]
    assert len(lines) == 2 * len(pieces)
    corpus = json.loads(next(work.glob("corpus-*/manifest.json")).read_text())
    assert corpus["lines"] == c.corpus_max_lines and corpus["tokens"]["dev"] > 0
    assert [(r["task"], r["arch"], r["seed"], r["steps"]) for r in rows] == [
        ("csl", "gau_alpha", 0, 2), ("csl", "roformer_v2", 0, 2)]
    assert all(r["result"]["rows"] == c.dev_rows and r["wall_time_s"] > 0 for r in rows)
    md = (tmp_path / "out" / "arch_clue.md").read_text(encoding="utf-8")
    assert md.startswith("# GAU-α vs RoFormerV2") and "Command: `python -m" in md
    assert "| GAU-α | 2 x GAU, d 64" in md and "| RoFormerV2 | 1 x (MHA 2 x 32" in md
    assert f"| csl | accuracy | 32 / 8 / 2 | {rows[0]['baseline']:.1f} |" in md
    assert (tmp_path / "out" / "arch_clue.png").stat().st_size > 1000

    def trains(*args, **kwargs):
        raise AssertionError("a rerun trained")

    monkeypatch.setattr(arch_clue, "Trainer", trains)
    monkeypatch.setattr(clue_results, "finetune_and_score", trains)
    assert arch_clue.run(c, work) == rows  # every trunk and run read back
    assert len((work / "runs.jsonl").read_text().splitlines()) == 2
