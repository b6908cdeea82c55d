"""Dropout does not depend on the device layout: with dropout on, jit and pmap, 1, 2 and 8
devices and gradient accumulation give the same losses (each example draws its masks from the
step and its position in the global batch)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

from gau_jax.train.loop import Trainer
from tests.train_helpers import synthetic_inputs, tiny_pretrain_config

ROOT = Path(__file__).resolve().parents[1]


def losses(dropout: float = 0.3, **overrides) -> list[float]:
    c = tiny_pretrain_config(total_steps=4, batch_size=16, checkpoint_every_steps=100,
                             eval_every_steps=100, **overrides)
    c.model.update(hidden_dropout=dropout, attention_dropout=dropout)
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(c, d, inputs=synthetic_inputs(c))
        try:
            t.run()
        finally:
            t.close()
        rows = [json.loads(x) for x in (Path(d) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


@pytest.mark.slow
def test_dropout_is_on_and_deterministic():
    on = losses()
    assert on == losses()  # the same keys on every run
    off = losses(dropout=0.0)
    assert on[0] != off[0]  # the masks really reach the first step


@pytest.mark.slow
def test_jit_pmap_and_grad_accumulation_agree():
    if jax.device_count() < 2:
        pytest.skip("needs several devices (XLA_FLAGS=--xla_force_host_platform_device_count)")
    ref = losses()
    np.testing.assert_allclose(losses(parallel="pmap"), ref, rtol=2e-5)
    np.testing.assert_allclose(losses(grad_accum_steps=2), ref, rtol=2e-5)


@pytest.mark.slow
def test_one_and_two_devices_agree_with_eight():
    code = ("import json; from tests.test_dropout_layout import losses; "
            "print('LOSSES', json.dumps(losses()))")
    out = {}
    for n in (1, 2):
        env = dict(os.environ, PYTHONPATH=str(ROOT),
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=300,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        line = next(x for x in run.stdout.splitlines() if x.startswith("LOSSES"))
        out[n] = json.loads(line.split(" ", 1)[1])
    ref = losses()
    np.testing.assert_allclose(out[1], ref, rtol=2e-5)
    np.testing.assert_allclose(out[2], ref, rtol=2e-5)
