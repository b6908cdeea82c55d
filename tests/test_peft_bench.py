"""experiments/bench_peft.py at a toy size: a well-formed report, LST cheaper than full FT."""

import json

from experiments import bench_peft


def test_bench_reduced_writes_wellformed_results(tmp_path):
    out, js = tmp_path / "peft.md", tmp_path / "peft.json"
    bench_peft.main(["--model", "gau_alpha_tiny", "--seq_len", "64", "--batch", "4",
                     "--methods", "lst_cached", "--time_width", "64",
                     "--time_layers", "2", "--time_batch", "2", "--time_seq", "16",
                     "--time_steps", "1", "--out", str(out), "--json", str(js)])
    data = json.loads(js.read_text())["results"]["gau_alpha_tiny@64"]
    assert set(data) == {"full", "lst_cached"}
    for r in data.values():
        assert set(r["compiled_bytes"]) >= {"argument", "output", "temp", "total"}
        assert r["trainable_params"] > 0 and r["flops"] > 0 and r["step_time_ratio"] > 0
    assert data["full"]["step_time_ratio"] == 1.0
    assert data["lst_cached"]["optimizer_state_bytes"] < data["full"]["optimizer_state_bytes"]
    assert data["lst_cached"]["flops"] < data["full"]["flops"]
    text = out.read_text()
    assert "| gau_alpha_tiny | 64 | lst_cached |" in text and "| full |" in text
    assert out.with_suffix(".png").stat().st_size > 1000
