"""experiments/bench_peft.py at a toy size: a well-formed report, LST cheaper than full FT."""

import json

import jax
import pytest

from configs import bench_peft as peft_config
from experiments import bench_peft
from gau_jax.models import get_model_config
from gau_jax.train import compiled_costs


@pytest.mark.slow
def test_bench_reduced_writes_wellformed_results(tmp_path):
    c = peft_config.get_config("smoke")  # gau_alpha_tiny, n = 64, batch 4, full + lst_cached
    bench_peft.run(c, tmp_path)
    out, js = tmp_path / "peft.md", tmp_path / "peft.json"
    report = json.loads(js.read_text())
    data = report["results"]["gau_alpha_tiny@64"]
    assert set(data) == {"full", "lst_cached"}
    for r in data.values():
        assert set(r["compiled_bytes"]) >= {"argument", "output", "temp", "total"}
        assert r["trainable_params"] > 0 and r["flops"] > 0 and r["step_time_ratio"] > 0
    seconds = report["timing"]["gau_alpha_tiny"]["seconds"]  # measured step times
    assert set(seconds) == {"full", "lst_cached"} and all(t > 0 for t in seconds.values())
    for m, r in data.items():
        assert r["step_time_ratio"] == pytest.approx(seconds[m] / seconds["full"]), m
    assert data["lst_cached"]["optimizer_state_bytes"] < data["full"]["optimizer_state_bytes"]
    assert data["lst_cached"]["flops"] < data["full"]["flops"]
    text = out.read_text()
    assert "| gau_alpha_tiny | 64 | lst_cached |" in text and "| full |" in text
    assert out.with_suffix(".png").stat().st_size > 1000
    cb = data["full"]["compiled_bytes"]
    assert cb["total"] == cb["argument"] + cb["output"] - cb["alias"] + cb["temp"]


def test_merge_keeps_other_trunks_and_checks_the_batch(tmp_path):
    def run(trunk, methods, batch=4):
        return {"batch": batch, "timing": {},
                "results": {f"{trunk}@64": {m: {"flops": float(i + 1)}
                                             for i, m in enumerate(methods)}}}

    old = run("a", ["full", "lora"])
    new = run("b", ["full"])
    new["results"]["a@64"] = {"lora": {"flops": 9.0}}
    merged = bench_peft.merge([old, new], ["old", "new"])
    assert merged["results"] == {"a@64": {"full": {"flops": 1.0}, "lora": {"flops": 9.0}},
                                 "b@64": {"full": {"flops": 1.0}}}
    with pytest.raises(ValueError, match="new: batch 8"):
        bench_peft.merge([old, run("b", ["full"], batch=8)], ["old", "new"])


@pytest.mark.slow
def test_cpu_scheduler_reaches_xla():
    """The memory-optimised XLA:CPU schedule of one step differs from the default one (same
    arguments, other temp memory), and an unknown scheduler is refused by name."""
    if jax.default_backend() != "cpu":
        pytest.skip("cpu_scheduler only applies to the CPU backend")
    cfg = get_model_config("gau_alpha_tiny")
    mem = {s: compiled_costs.step_costs(bench_peft.compile_step("full", cfg, 8, 64, s)[3])
           for s in compiled_costs.CPU_SCHEDULERS}
    assert mem["memory"]["argument_bytes"] == mem["default"]["argument_bytes"]
    assert mem["memory"]["temp_bytes"] != mem["default"]["temp_bytes"]
    with pytest.raises(ValueError, match="cpu_scheduler='fast'"):
        bench_peft.compile_step("full", cfg, 8, 64, "fast")
    c = peft_config.get_config("smoke")
    c.cpu_scheduler = "fast"
    with pytest.raises(ValueError, match="config.cpu_scheduler='fast'"):
        bench_peft.bench(c)
