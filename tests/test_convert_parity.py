"""Parity with the PyTorch ports (`roformer` RoFormerV2, `gau-alpha`) and with bert4keras names.

The ports live in a separate venv (they need transformers 4.x, which would downgrade this venv's
tokenizers / huggingface_hub): tests/parity_port.py runs there, found via GAU_JAX_PARITY_PYTHON or
.venv-parity/bin/python; without it these tests skip with the reason. Each port model gets
random weights at a tiny size, is saved with save_pretrained, loaded with load_pretrained and
compared on a padded batch at real positions (max abs diff <= 1e-4, float32); then exported
back to HF format and reloaded in the port.

Known port quirk, avoided by the batches (no row has exactly 1 real token): the gau-alpha port
masks with -1e4 *before* softmax_plus multiplies by log(n)/log(512), which is 0 at n = 1, so such
a row attends uniformly to its padding too; gau_jax attends to the one real token.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gau_jax.convert import hf
from gau_jax.pretrained import load, load_pretrained
from tests.convert_fixtures import padded_batch, write_vocab

pytestmark = pytest.mark.parity

ROOT = Path(__file__).resolve().parents[1]
PORT = Path(__file__).with_name("parity_port.py")
V = 64
TOL = 1e-4
_V2 = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64, norm_type="rms_norm", hidden_act="relu",
           max_position_embeddings=64)
_GAU = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            attention_key_size=16, max_position_embeddings=64)
CASES = {
    "roformer_v2": ("roformer", dict(_V2, use_bias=False)),
    "roformer_v2_bias": ("roformer", dict(_V2, use_bias=True)),
    "gau_softmax_plus": ("gau_alpha", dict(_GAU, normalization="softmax_plus")),
    "gau_softmax": ("gau_alpha", dict(_GAU, normalization="softmax")),
    "gau_relu2": ("gau_alpha", dict(_GAU, normalization="squared_relu")),
}
B4K_CASES = ("roformer_v2", "gau_softmax_plus")


def _run_port(jobs: list, tmp: Path, tag: str) -> None:
    exe = os.environ.get("GAU_JAX_PARITY_PYTHON") or str(ROOT / ".venv-parity" / "bin" / "python")
    if not Path(exe).exists():
        pytest.skip(f"parity venv not found ({exe}): run `make parity-venv` or set "
                    "GAU_JAX_PARITY_PYTHON to a python with torch, transformers<4.48, roformer, "
                    "gau-alpha (and tensorflow for the bert4keras case)")
    (tmp / f"{tag}.json").write_text(json.dumps(jobs))
    proc = subprocess.run([exe, str(PORT), str(tmp / f"{tag}.json")], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode and "ModuleNotFoundError" in proc.stderr:
        pytest.skip(f"parity venv {exe} lacks a port package: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    """{case: (HF folder, port outputs)} plus the batch; bert4keras folders under b4k_<case>."""
    tmp = tmp_path_factory.mktemp("ports")
    batch = padded_batch(V)
    np.savez(tmp / "inputs.npz", **batch)
    jobs = []
    for seed, (name, (kind, cfg)) in enumerate(CASES.items()):
        d = str(tmp / name)
        jobs += [{"op": "make", "kind": kind, "config": cfg, "out": d, "seed": seed},
                 {"op": "run", "dir": d, "inputs": str(tmp / "inputs.npz"),
                  "out": str(tmp / f"{name}.npz")}]
    jobs += [{"op": "bert4keras", "dir": str(tmp / n), "out": str(tmp / f"b4k_{n}")}
             for n in B4K_CASES]
    _run_port(jobs, tmp, "make")
    for name in CASES:
        write_vocab(tmp / name, V)
    for name in B4K_CASES:
        write_vocab(tmp / f"b4k_{name}", V)
    return tmp, batch


def _ours(path: Path, batch: dict) -> dict:
    model, params, tok = load_pretrained(path)
    assert tok.vocab_size == V
    out = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                      batch["segment_ids"], output_hidden_states=True)
    return {"last_hidden_state": np.asarray(out.last_hidden_state),
            "logits": np.asarray(out.logits), "hidden_states": np.asarray(out.hidden_states)}


def _max_diffs(ours: dict, ref: dict, mask: np.ndarray) -> dict:
    real = mask.astype(bool)
    return {"last_hidden_state": float(np.abs(ours["last_hidden_state"] -
                                              ref["last_hidden_state"])[real].max()),
            "logits": float(np.abs(ours["logits"] - ref["logits"])[real].max()),
            "hidden_states": float(np.abs(ours["hidden_states"] -
                                          ref["hidden_states"])[:, real].max())}


@pytest.mark.parametrize("name", list(CASES))
def test_load_pretrained_matches_port(ports, name):
    tmp, batch = ports
    ref = dict(np.load(tmp / f"{name}.npz"))
    diffs = _max_diffs(_ours(tmp / name, batch), ref, batch["attention_mask"])
    print(f"\n[parity] {name}: max abs diff {diffs}")
    assert max(diffs.values()) <= TOL, diffs
    # the comparison can fail: the real-position logits are far from zero
    assert np.abs(ref["logits"][batch["attention_mask"].astype(bool)]).max() > 0.1


@pytest.mark.parametrize("name", B4K_CASES)
def test_bert4keras_checkpoint_matches_port(ports, name):
    tmp, batch = ports
    if (tmp / f"b4k_{name}" / "TENSORFLOW_MISSING").exists():
        pytest.skip("tensorflow not importable in the parity venv: cannot write the checkpoint")
    ref = dict(np.load(tmp / f"{name}.npz"))
    diffs = _max_diffs(_ours(tmp / f"b4k_{name}", batch), ref, batch["attention_mask"])
    print(f"\n[parity] bert4keras {name}: max abs diff {diffs}")
    assert max(diffs.values()) <= TOL, diffs


def test_export_back_reloads_in_port(ports):
    tmp, batch = ports
    jobs = []
    for name in CASES:
        pre = load(tmp / name)
        hf.save(tmp / f"back_{name}", pre.config, pre.params, pre.vocab)
        jobs.append({"op": "run", "dir": str(tmp / f"back_{name}"),
                     "inputs": str(tmp / "inputs.npz"), "out": str(tmp / f"back_{name}.npz")})
    _run_port(jobs, tmp, "back")
    for name in CASES:
        ref, back = np.load(tmp / f"{name}.npz"), np.load(tmp / f"back_{name}.npz")
        for key in ("last_hidden_state", "logits", "hidden_states"):
            diff = float(np.abs(ref[key] - back[key]).max())
            print(f"\n[parity] export-back {name} {key}: max abs diff {diff}")
            assert diff <= 1e-6, (name, key, diff)
