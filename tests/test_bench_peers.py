"""experiments/bench_peers.py --quick (tiny models, 2 rounds) against the ports in the parity venv,
and the per-op profile's categories on a hand-built HLO snippet."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from experiments import bench_peers, profile_step

ROOT = Path(__file__).resolve().parents[1]


def test_port_config_mirrors_the_model_shapes():
    m = bench_peers.model_config("gau_alpha_base", {"num_layers": 6}, {})
    kind, cfg = bench_peers.port_config(m)
    assert kind == "gau_alpha" and cfg["num_hidden_layers"] == 6
    assert cfg["attention_key_size"] == 128 and cfg["normalization"] == "softmax_plus"
    assert cfg["hidden_dropout_prob"] == cfg["attention_probs_dropout_prob"] == 0.0
    kind, cfg = bench_peers.port_config(bench_peers.model_config("roformer_v2_small", {}, {}))
    assert kind == "roformer" and cfg["norm_type"] == "rms_norm" and cfg["hidden_act"] == "relu"
    assert cfg["num_attention_heads"] == 6 and cfg["use_bias"] is False


HLO = """HloModule m

FileNames
1 "/x/gau_jax/layers/rope.py"
2 "/x/optax/_src/transform.py"

FunctionNames
1 "f"

FileLocations
1 {file_name_id=1 function_name_id=1 line=40 end_line=40 column=1 end_column=2}
2 {file_name_id=2 function_name_id=1 line=9 end_line=9 column=1 end_column=2}

StackFrames
1 {file_location_id=1 parent_frame_id=1}
2 {file_location_id=2 parent_frame_id=2}

%fused_computation (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %sin.0 = f32[4]{0} sine(%p), metadata={op_name="sin" stack_frame_id=1}
}

ENTRY %main (a: f32[4], b: f32[4,4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %b = f32[4,4]{1,0} parameter(1)
  %fusion = f32[4]{0} fusion(%a), kind=kLoop, calls=%fused_computation
  %dot.1 = f32[4]{0} dot(%b, %fusion), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %add.2 = f32[4]{0} add(%dot.1, %a), metadata={op_name="add" stack_frame_id=2}
  ROOT %copy.3 = f32[4]{0} copy(%add.2)
}
"""


def test_profile_categories_from_hlo_metadata():
    hlo = profile_step.Hlo(HLO)
    profile_step._root_frames(hlo, HLO)
    assert profile_step.categorize(hlo, "fusion")[0] == "rope"
    assert profile_step.categorize(hlo, "dot.1")[0] == "matmul"
    assert profile_step.categorize(hlo, "add.2")[0] == "optimizer"
    assert profile_step.categorize(hlo, "copy.3")[0] == "data movement"


@pytest.mark.slow
@pytest.mark.parity
def test_quick_run_writes_ratios(tmp_path):
    exe = os.environ.get("GAU_JAX_PARITY_PYTHON") or str(ROOT / ".venv-parity" / "bin" / "python")
    if not Path(exe).exists():
        pytest.skip(f"parity venv not found ({exe}): run `make parity-venv`")
    records = bench_peers.main(["--quick", "--results_dir", str(tmp_path), "--python", exe])
    assert [(r["size"], r["block"]) for r in records] == [("quick", "gau"),
                                                           ("quick", "roformer_v2")]
    for r in records:
        x = r["variants"]["default"]
        assert len(x["times"]) == len(r["port_times"]) == 2 and r["port_s"] > 0
        assert x["ratio"] == pytest.approx(
            float(np.median(np.asarray(x["times"]) / np.asarray(r["port_times"]))))
    text = (tmp_path / "peers.md").read_text()
    assert text.startswith("# gau_jax vs the PyTorch ports") and "Commit " in text
    assert "| quick | gau | 2×32 | all | default |" in text
    assert json.loads((tmp_path / "peers.json").read_text())[1]["port"] == "roformer"
