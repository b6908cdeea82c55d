"""Multi-process runs on this machine: jax.distributed over 127.0.0.1, CPU collectives via gloo.

Two processes x 2 simulated CPU devices against one process x 4 (and x 1): the same per-step
losses (dropout on: per-example keys), the same dev metrics on every process, checkpoints that
restore under another process count and mesh, a stopped-and-resumed run that equals an
uninterrupted one (each process's data position restored), and the CLI (`experiments.train`
through tools/launch_local.py) on an LST fine-tuning run. Every process runs under a timeout;
tools/launch_local.py kills the ones a launch started, by PID, however it ends.

This file is also the worker: `python -m tests.test_multiprocess SPEC --coordinator_address ...`.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 480  # one launch (a loaded 2-core machine compiles slowly)


def _launcher():
    spec = importlib.util.spec_from_file_location("launch_local", ROOT / "tools/launch_local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


def _launch(command: list[str], n: int, devices: int, log: Path) -> str:
    """Runs `command` as n processes (launch_local); its output; fails with it on an error."""
    out = io.StringIO()
    code = _launcher().launch(command, n, devices, timeout=LAUNCH_TIMEOUT_S, env=_env(),
                              cwd=str(ROOT), out=out)
    log.write_text(out.getvalue())
    assert code == 0, f"launch of {n} process(es) failed ({code}):\n{out.getvalue()[-4000:]}"
    return out.getvalue()


# ----------------------------------------------------------------------------- worker
def _config(mesh: dict):
    from tests.train_helpers import tiny_pretrain_config

    c = tiny_pretrain_config(total_steps=4, batch_size=8, eval_every_steps=2, eval_batches=2,
                             checkpoint_every_steps=2)
    c.model.hidden_dropout = 0.1  # per-example dropout keys: the same whatever the split
    c.mesh.update({"min_split_size": 0, **mesh})  # tiny kernels are split too
    return c


def _inputs(config, rows: slice):
    """synthetic_inputs' batches, this process's rows of each global batch."""
    from gau_jax.models import build_encoder
    from gau_jax.train.inputs import RunSetup
    from gau_jax.train.step import mlm_sums_fn
    from tests.train_helpers import SyntheticMLM

    class LocalRows(SyntheticMLM):
        def batch(self, i):
            return {k: v[rows] for k, v in super().batch(i).items()}

    model = build_encoder(config.model)
    dev = LocalRows(config.batch_size, config.max_length, seed=10_000)
    return RunSetup(model=model, sums_fn=mlm_sums_fn(model),
                  train=LocalRows(config.batch_size, config.max_length, config.seed),
                  dev_batches=lambda: (dev.batch(i) for i in range(2)),
                  model_config=config.model)


def _local_rows(mesh, batch_size: int) -> slice:
    """The rows of a global batch that this process's devices hold."""
    import jax

    from gau_jax.train import partition

    index = partition.batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    start = min(s[0].start or 0 for s in index.values())
    stop = max(s[0].stop or batch_size for s in index.values())
    assert (stop - start) * jax.process_count() == batch_size
    return slice(start, stop)


def worker(spec: dict) -> None:
    """Runs spec["phases"]: build a Trainer on a workdir (resuming it if it has checkpoints),
    optionally train, then write per-process facts and (process 0) the gathered params."""
    import jax
    from jax.experimental import multihost_utils

    from gau_jax.models.tree import path_names
    from gau_jax.train import partition
    from gau_jax.train.loop import Trainer

    out = Path(spec["out"])
    for phase in spec["phases"]:
        c = _config(phase["mesh"])
        inputs = _inputs(c, _local_rows(partition.make_mesh(**partition.mesh_sizes(c)),
                                        c.batch_size))
        trainer = Trainer(c, phase["workdir"], inputs=inputs)
        try:
            facts = {"process": jax.process_index(), "processes": jax.process_count(),
                     "devices": jax.device_count(), "resumed_at": inputs.train.index}
            if phase.get("train", True):
                summary = trainer.run(stop_at=phase.get("stop_at"))
                facts["dev"] = summary["dev"]
            facts["index"], facts["step"] = inputs.train.index, trainer.step()
            facts["mesh"] = dict(trainer.par.mesh.shape)
            params = multihost_utils.process_allgather(trainer.host_state().params, tiled=True)
            name = phase["name"]
            (out / f"{name}.p{jax.process_index()}.json").write_text(json.dumps(facts))
            if jax.process_index() == 0:
                flat = jax.tree_util.tree_flatten_with_path(params)[0]
                np.savez(out / f"{name}.npz",
                         **{"/".join(path_names(p)): np.asarray(x) for p, x in flat})
        finally:
            trainer.close()


def _worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--coordinator_address")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    args = parser.parse_args(argv)
    from gau_jax.train import distributed

    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    worker(json.loads(args.spec))


# ----------------------------------------------------------------------------- fixtures
def _params(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _facts(out: Path, name: str, n: int) -> list[dict]:
    return [json.loads((out / f"{name}.p{i}.json").read_text()) for i in range(n)]


def _train_losses(workdir: Path) -> list[float]:
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    return [r["loss"] for r in rows if r["split"] == "train"]


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
    """Three launches: 1 x 4 devices trains W1 (mesh 1 x 4); 2 x 2 trains W2 (2 x 2), trains
    W3 to step 2 and resumes it to 4, restores W1; 1 x 1 restores W2."""
    tmp = tmp_path_factory.mktemp("mp")
    w = {k: str(tmp / k) for k in ("w1", "w2", "w3")}

    def run(n, devices, phases, tag):
        spec = json.dumps({"out": str(tmp), "phases": phases})
        _launch([sys.executable, "-m", "tests.test_multiprocess", spec], n, devices,
                tmp / f"{tag}.log")

    run(1, 4, [{"name": "one", "workdir": w["w1"], "mesh": {"data": 1, "fsdp": 4}}], "one")
    mesh2 = {"data": 2, "fsdp": 2}
    run(2, 2, [{"name": "two", "workdir": w["w2"], "mesh": mesh2},
               {"name": "stopped", "workdir": w["w3"], "mesh": mesh2, "stop_at": 2},
               {"name": "resumed", "workdir": w["w3"], "mesh": mesh2},
               {"name": "one_on_two", "workdir": w["w1"], "mesh": mesh2, "train": False}], "two")
    run(1, 1, [{"name": "two_on_one", "workdir": w["w2"], "mesh": {}, "train": False}], "back")
    return tmp


@pytest.mark.slow
def test_two_processes_give_the_losses_of_one(pretrain):
    one, two = _train_losses(pretrain / "w1"), _train_losses(pretrain / "w2")
    assert len(one) == 4 and one[-1] < one[0]
    np.testing.assert_allclose(two, one, rtol=1e-5)
    facts = _facts(pretrain, "two", 2)
    assert [f["processes"] for f in facts] == [2, 2] and facts[0]["devices"] == 4
    assert facts[0]["mesh"] == {"data": 2, "fsdp": 2, "tensor": 1}
    want = _params(pretrain / "one.npz")
    for k, v in _params(pretrain / "two.npz").items():
        np.testing.assert_allclose(v, want[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_dev_metrics_are_the_same_on_every_process(pretrain):
    facts = _facts(pretrain, "two", 2)
    assert facts[0]["dev"] == facts[1]["dev"] and facts[0]["dev"]["count"] > 0
    one = _facts(pretrain, "one", 1)[0]["dev"]
    np.testing.assert_allclose([facts[0]["dev"][k] for k in ("loss", "accuracy", "count")],
                               [one[k] for k in ("loss", "accuracy", "count")], rtol=1e-5)


def _same_params(pretrain: Path, written: str, restored: str, processes: int, devices: int):
    f = _facts(pretrain, restored, processes)[0]
    assert (f["processes"], f["devices"], f["step"]) == (processes, devices, 4)
    want, got = _params(pretrain / f"{written}.npz"), _params(pretrain / f"{restored}.npz")
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.slow
def test_one_process_checkpoint_restores_in_two(pretrain):
    """W1 (1 process, mesh 1 x 4) restored by 2 processes on a 2 x 2 mesh: identical params."""
    _same_params(pretrain, "one", "one_on_two", 2, 4)


@pytest.mark.slow
def test_two_process_checkpoint_restores_in_one(pretrain):
    """W2 (2 processes, mesh 2 x 2) restored by 1 process on 1 device: identical params."""
    _same_params(pretrain, "two", "two_on_one", 1, 1)


@pytest.mark.slow
def test_stopped_and_resumed_two_process_run_equals_uninterrupted(pretrain):
    stopped, resumed = _facts(pretrain, "stopped", 2), _facts(pretrain, "resumed", 2)
    assert [f["index"] for f in stopped] == [2, 2]
    assert [f["resumed_at"] for f in resumed] == [2, 2]  # each process's data position
    assert [f["index"] for f in resumed] == [4, 4]
    np.testing.assert_allclose(_train_losses(pretrain / "w3"), _train_losses(pretrain / "w2"),
                               rtol=1e-6)
    want = _params(pretrain / "two.npz")
    for k, v in _params(pretrain / "resumed.npz").items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)


# ----------------------------------------------------------------------------- CLI, LST
def _lst_task(folder: Path) -> Path:
    """16 train / 12 dev rows; train row 0 is much longer, so the processes pad differently."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    chars = list("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得")
    for split, n in (("train", 16), ("dev", 12)):
        rows = []
        for i in range(n):
            size = 28 if (split, i) == ("train", 0) else int(rng.integers(3, 12))
            rows.append({"sentence": "".join(rng.choice(chars, size)), "label": str(i % 2)})
        (folder / f"{split}.json").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


def _lst_args(workdir: Path, data: Path, stage: str = "finetune") -> list[str]:
    """Batch = the whole train split (every step sees all 16 rows, in any order), dropout off.
    stage="multitask": the same rows as two tasks, one step's task drawn by the mixture."""
    config = ("--config=configs/finetune.py:task=jsonl,model=gau_alpha_tiny,method=lst"
              if stage == "finetune" else "--config=configs/multitask.py:tasks="
              f"a@{data}+b@{data},model=gau_alpha_tiny,method=lst")
    return [sys.executable, "-m", "experiments.train", config,
            f"--workdir={workdir}", f"--config.data_dir={data}", "--config.model.num_layers=2",
            "--config.model.hidden_size=32", "--config.model.intermediate_size=64",
            "--config.model.key_size=16", "--config.lst.reduction=4", "--config.lst.dropout=0",
            "--config.classifier_dropout=0", "--config.batch_size=16", "--config.max_length=32",
            "--config.pad_multiple=8", "--config.total_steps=3", "--config.log_every_steps=1",
            "--config.eval_every_steps=3", "--config.checkpoint_every_steps=3",
            "--config.progress_bar=False", "--config.tensorboard=False",
            "--config.async_checkpoints=False", "--config.data_threads=1",
            "--config.optimizer=adamw", "--config.learning_rate=1e-2"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["finetune", "multitask"])
def test_cli_lst_two_processes_match_one(tmp_path, stage):
    data = _lst_task(tmp_path / "task")
    env = _env() | {"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                    "JAX_PLATFORMS": "cpu"}
    one = subprocess.run(_lst_args(tmp_path / "one", data, stage), cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=LAUNCH_TIMEOUT_S)
    assert one.returncode == 0, one.stdout[-2000:] + one.stderr[-3000:]
    log = _launch(_lst_args(tmp_path / "two", data, stage), 2, 2, tmp_path / "two.log")
    ref, got = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert len(ref) == 3 and ref[-1] < ref[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    dev = [json.loads((tmp_path / k / "summary.json").read_text())["dev"] for k in ("one", "two")]
    assert dev[0]["count"] == dev[1]["count"] == 12 * (1 if stage == "finetune" else 2)
    np.testing.assert_allclose(dev[1]["loss"], dev[0]["loss"], rtol=1e-5)
    # only process 0 prints the start block and the summary
    lines = log.splitlines()
    assert any(x.startswith(f"[0] run: {stage}") for x in lines)
    assert any(x.startswith('[0]   "train_loss"') for x in lines)
    assert not [x for x in lines if x.startswith("[1] ") and ("run: " in x or "train_loss" in x)]


# ----------------------------------------------------------------------------- launcher, start
def test_launcher_kills_the_others_and_returns_the_worst_status():
    code = ("import sys, time; i = int(sys.argv[sys.argv.index('--process_id') + 1]); "
            "print('up', i, flush=True); time.sleep(0.5 if i == 1 else 120); sys.exit(3)")
    out = io.StringIO()
    launcher = _launcher()
    assert launcher.launch([sys.executable, "-c", code], 3, timeout=60, out=out) == 3
    assert "[1] up 1" in out.getvalue()
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    assert launcher.launch(sleep, 2, timeout=1, out=io.StringIO()) == launcher.TIMEOUT
    count = "--xla_force_host_platform_device_count"
    env = launcher.process_env(3, {"XLA_FLAGS": f"--xla_foo {count}=8"})
    assert env["XLA_FLAGS"] == f"--xla_foo {count}=3" and env["JAX_PLATFORMS"] == "cpu"


def test_detected_cluster():
    from gau_jax.train.distributed import detected_cluster

    assert detected_cluster({}) is None
    assert detected_cluster({"SLURM_NTASKS": "4"}) == "slurm"
    assert detected_cluster({"SLURM_NTASKS": "1"}) is None
    assert detected_cluster({"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert detected_cluster({"OMPI_COMM_WORLD_SIZE": "2"}) == "openmpi"
    assert detected_cluster({"TPU_WORKER_HOSTNAMES": "t0,t1"}) == "tpu-pod"
    assert detected_cluster({"TPU_WORKER_HOSTNAMES": "t0"}) is None
    assert detected_cluster({"MEGASCALE_COORDINATOR_ADDRESS": "h:1"}) == "tpu-pod"
    assert detected_cluster({"JAX_COORDINATOR_ADDRESS": "h:1"}) == "JAX_COORDINATOR_ADDRESS"


def test_initialize_errors(monkeypatch):
    import jax

    from gau_jax.train import distributed

    for name in ("SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE",
                 "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES",
                 "MEGASCALE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    distributed.initialize()  # nothing asked, nothing detected: one process
    assert not jax.distributed.is_initialized()
    with pytest.raises(ValueError, match="also pass --num_processes"):
        distributed.initialize("127.0.0.1:1234", None, 0)
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"--process_id=2 must be in \[0, --num_processes=2\)"):
        distributed.initialize("127.0.0.1:1234", 2, 2)
    jax.devices()  # the backends are up in this process: joining a cluster is refused
    with pytest.raises(RuntimeError, match="must run before any JAX computation"):
        distributed.initialize("127.0.0.1:1234", 2, 0)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(RuntimeError, match=r"multi-process start \(slurm\)"):
        distributed.initialize()


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
