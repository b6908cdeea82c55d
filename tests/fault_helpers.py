"""Subprocess runs of `python -m experiments.train` for the fault-injection tests.

Tiny command lines (one layer, hidden 32, batch 8, one device), a `Runner` that starts every
process in its own session and kills what it started by PID however a test ends, a kill
schedule (seeded random moments, SIGKILL / SIGTERM / SIGINT, some timed to land inside a
checkpoint write via GAU_JAX_FAULT_SAVE_DELAY_S and the `*.orbax-checkpoint-tmp*` watch), and
checkpoint contents read with Orbax as numpy for bitwise comparisons.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["人民日报社论今天发表文章", "我们的经济发展很快", "新年好大家都很高兴",
         "今天天气很好我们去公园", "中国人民的生活水平提高了", "这本书写得很好我很喜欢"]
TINY = ["--config.model.num_layers=1", "--config.model.hidden_size=32",
        "--config.model.intermediate_size=64", "--config.model.key_size=16",
        "--config.batch_size=8", "--config.max_length=16", "--config.pad_multiple=16",
        "--config.progress_bar=False", "--config.tensorboard=False", "--config.data_threads=1",
        "--config.log_every_steps=1", "--config.keep_checkpoints=1000"]
VOLATILE = ("wall_time_s", "workdir", "steps_per_s")  # summary keys a resume may change
START_TIMEOUT_S = 240  # a process must log its first step within this (a loaded 2-core box)
EXIT_TIMEOUT_S = 120
TMP_MARK = ".orbax-checkpoint-tmp"


# ------------------------------------------------------------------------------- data, args
def write_corpus(path: Path) -> Path:
    path.write_text("\n".join(f"{t}{i}" for i in range(20) for t in TEXTS) + "\n",
                    encoding="utf-8")
    return path


def write_task(folder: Path, n_train: int = 32, n_dev: int = 16) -> Path:
    """A jsonl classification task: label 1 for '好' sentences (learnable)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [{"sentence": ("好" if i % 2 else "坏") * int(rng.integers(2, 9)) + TEXTS[i % 6],
                 "label": str(i % 2)} for i in range(n)]
        (folder / f"{split}.json").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return folder


def pretrain_args(workdir: Path, corpus: Path, *extra: str) -> list[str]:
    return ["--config=configs/pretrain.py:gau_alpha_tiny", f"--workdir={workdir}", *TINY,
            "--config.model.vocab_size=64", "--config.dev_fraction=0.2",
            "--config.eval_batches=1", "--config.model.hidden_dropout=0.1",
            f"--config.data_dir={corpus}", *extra]


def finetune_args(workdir: Path, task: Path, method: str, *extra: str) -> list[str]:
    return [f"--config=configs/finetune.py:task=jsonl,model=gau_alpha_tiny,method={method}",
            f"--workdir={workdir}", *TINY, "--config.model.vocab_size=64",
            f"--config.data_dir={task}", "--config.optimizer=adamw",
            "--config.learning_rate=1e-2", *extra]


def env(delay_s: float | None = None) -> dict[str, str]:
    """The subprocess environment: one CPU device, this checkout importable, optional delay."""
    e = dict(os.environ, XLA_FLAGS="", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    e.pop("GAU_JAX_FAULT_SAVE_DELAY_S", None)
    if delay_s:
        e["GAU_JAX_FAULT_SAVE_DELAY_S"] = str(delay_s)
    return e


# ------------------------------------------------------------------------------- processes
class Runner:
    """Starts training processes (each in its own session, output to files) and kills, by PID,
    every one it started that is still alive when `kill_all` runs (a fixture's teardown)."""

    def __init__(self, logs: Path):
        self.logs, self.procs, self.count = logs, [], 0
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, args: list[str], delay_s: float | None = None) -> subprocess.Popen:
        self.count += 1
        out = open(self.logs / f"run{self.count:02d}.out", "w")  # noqa: SIM115
        p = subprocess.Popen([sys.executable, "-m", "experiments.train", *args], cwd=ROOT,
                             env=env(delay_s), stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        p.log_path = self.logs / f"run{self.count:02d}.out"
        p.log_file = out
        self.procs.append(p)
        return p

    def wait(self, p: subprocess.Popen, timeout: float = EXIT_TIMEOUT_S) -> int:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p)
            raise AssertionError(f"process {p.pid} still running after {timeout} s; killed. "
                                 f"Output:\n{output(p)[-3000:]}") from None
        p.log_file.close()
        return rc

    def run(self, args: list[str], timeout: float = 600, delay_s: float | None = None
            ) -> tuple[int, str]:
        p = self.start(args, delay_s)
        return self.wait(p, timeout), output(p)

    @staticmethod
    def kill(p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its session: the process and any children
            except ProcessLookupError:
                pass
            p.wait(timeout=30)

    def kill_all(self) -> None:
        for p in self.procs:
            self.kill(p)
            p.log_file.close()


def output(p: subprocess.Popen) -> str:
    return p.log_path.read_text(errors="replace")


def wait_for(cond, p: subprocess.Popen, timeout: float, poll: float = 0.01):
    """cond()'s first truthy value, polling; None when p exits first or on timeout."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        got = cond()
        if got:
            return got
        if p.poll() is not None:
            return cond() or None
        time.sleep(poll)
    return None


# ------------------------------------------------------------------------------- workdir
def tmp_entries(workdir: Path) -> set[str]:
    """Orbax temporary step directories under DIR/checkpoints and DIR/best."""
    out = set()
    for sub in ("checkpoints", "best"):
        d = workdir / sub
        if d.is_dir():
            out |= {f"{sub}/{e.name}" for e in d.iterdir() if TMP_MARK in e.name}
    return out


class TmpWatch:
    """Temporary directories that appeared since it started. Orbax reuses the name
    `<step>.orbax-checkpoint-tmp` when a step is written again, so a name left by a killed
    process counts as new once it has been seen gone (a restart cleans it up)."""

    def __init__(self, workdir: Path):
        self.workdir, self.old = workdir, tmp_entries(workdir)

    def new(self) -> set[str]:
        now = tmp_entries(self.workdir)
        self.old &= now
        return now - self.old


def complete_steps(workdir: Path, sub: str = "checkpoints") -> list[int]:
    d = workdir / sub
    if not d.is_dir():
        return []
    return sorted(int(e.name) for e in d.iterdir()
                  if e.name.isdigit() and (e / "_CHECKPOINT_METADATA").is_file())


def train_steps(workdir: Path, offset: int) -> list[int]:
    """Train steps logged in DIR/metrics.jsonl after byte `offset` (complete lines only)."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", errors="replace")
    steps = []
    for line in text.split("\n")[:-1]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("split") == "train":
            steps.append(int(row["step"]))
    return steps


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def read_item(item_dir: Path) -> dict[str, np.ndarray]:
    """Every array of an Orbax PyTree item as numpy, keyed by its path."""
    handler = ocp.PyTreeCheckpointHandler()
    try:
        meta = handler.metadata(item_dir)
        tree = getattr(meta, "tree", meta)
        args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        out = handler.restore(item_dir, args=ocp.args.PyTreeRestore(restore_args=args))
    finally:
        handler.close()
    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(out)[0]}


def checkpoint_arrays(workdir: Path, step: int, sub: str = "checkpoints") -> dict:
    """{item/path: array} of DIR/<sub>/<step>: state (params, opt state, ...) and data (resume
    checkpoints) or params (best)."""
    items = ("state", "data") if sub == "checkpoints" else ("params",)
    d = workdir / sub / str(step)
    return {f"{item}{k}": v for item in items if (d / item).is_dir()
            for k, v in read_item(d / item).items()}


def assert_same_arrays(got: dict, want: dict, what: str) -> None:
    assert sorted(got) == sorted(want), f"{what}: different leaves"
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, f"{what}: {k}"
        assert got[k].tobytes() == want[k].tobytes(), f"{what}: {k} differs"


def comparable_summary(workdir: Path) -> dict:
    """summary.json without the keys a resume legitimately changes."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        return x

    return strip(json.loads((workdir / "summary.json").read_text()))


def names_step_and_workdir(text: str, step: int, workdir: Path) -> bool:
    """Some line of `text` names this step and the workdir."""
    pat = re.compile(rf"(?<![\d.]){step}(?![\d.])")
    return any(str(workdir) in line and pat.search(line.replace(str(workdir), " "))
               for line in text.splitlines())


# ------------------------------------------------------------------------------- kill schedule
def kill_schedule(runner: Runner, args: list[str], workdir: Path, *, kills: int, seed: int,
                  delay_s: float, aims: list[str], max_wait_steps: int = 2,
                  second_signal_at: tuple[int, ...] = (), sigint_at: tuple[int, ...] = (),
                  between=None) -> list[dict[str, Any]]:
    """Starts `args` again and again and signals each process once at a seeded random moment,
    until `kills` signals landed or the run finished. Kill i is SIGKILL for even i, else
    SIGTERM (SIGINT at `sigint_at`; a second one during the preemption save at
    `second_signal_at`). aims[i % len(aims)] says where: "" a random moment 0..max_wait_steps
    steps after the process's first step; "any" / "checkpoints" / "best" a random moment
    inside the next write of that kind (that launch then runs with the save delay).
    `between(i)` runs after kill i (e.g. to damage a cache). One row per kill; `check_rows`
    asserts, so the table can be written first."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < kills:
        i = len(rows)
        sig = signal.SIGKILL if i % 2 == 0 else (signal.SIGINT if i in sigint_at
                                                   else signal.SIGTERM)
        row = _one_kill(runner, args, workdir, i, sig, aims[i % len(aims)], rng, delay_s,
                        max_wait_steps, i in second_signal_at)
        rows.append(row)
        if row["signal_at_step"] is None or row["exit_code"] == 0:  # the run finished first
            break
        if between is not None:
            between(i)
    return rows


def _one_kill(runner: Runner, args: list[str], workdir: Path, i: int, sig: signal.Signals,
              aim: str, rng: np.random.Generator, delay_s: float, max_wait_steps: int,
              twice: bool) -> dict[str, Any]:
    offset, watch = file_size(workdir / "metrics.jsonl"), TmpWatch(workdir)
    t0 = time.time()
    p = runner.start(args, delay_s if aim else None)

    def first_steps():
        watch.new()  # keeps noticing names a restart cleaned up
        return train_steps(workdir, offset)

    first = wait_for(first_steps, p, START_TIMEOUT_S)
    if first and aim:
        prefix = "" if aim == "any" else aim + "/"
        wait_for(lambda: {n for n in watch.new() if n.startswith(prefix)}, p, 60, poll=0.005)
        time.sleep(rng.uniform(0.0, 0.4 * delay_s))  # well inside the write
    elif first:
        target = first[0] + int(rng.integers(0, max_wait_steps + 1))
        wait_for(lambda: any(s >= target for s in train_steps(workdir, offset)), p, 60)
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere in the next step (or its save)
    if not first or p.poll() is not None:  # finished (or failed) before the signal
        return _row(i, sig, aim, False, runner.wait(p), None, False, t0, p, workdir)
    in_flight = watch.new()
    at_step = max(train_steps(workdir, offset), default=first[0])
    os.kill(p.pid, sig)
    second = False
    if twice:  # a second signal while the preemption save is written
        if not in_flight:
            wait_for(lambda: watch.new() - in_flight, p, 10, poll=0.002)
        if p.poll() is None:
            os.kill(p.pid, sig)
            second = True
    rc = runner.wait(p)
    # SIGKILL landed inside a write iff that write's temporary directory outlived the process;
    # SIGTERM / SIGINT did iff a write was in flight when the signal came.
    mid = bool(tmp_entries(workdir) & in_flight) if sig == signal.SIGKILL else bool(in_flight)
    return _row(i, sig, aim, mid, rc, at_step, second, t0, p, workdir)


def _row(i, sig, aim, mid, rc, at_step, second, t0, p, workdir) -> dict[str, Any]:
    steps = complete_steps(workdir)
    return {"kill": i, "signal": signal.Signals(sig).name, "aimed_at": aim or "-",
            "landed_mid_write": mid, "second_signal": bool(second), "exit_code": rc,
            "signal_at_step": at_step, "newest_complete": steps[-1] if steps else None,
            "seconds": round(time.time() - t0, 1), "output": output(p), "equal": None}


def check_rows(rows: list[dict], workdir: Path, reference: Path, preempted: int) -> list[str]:
    """Per-kill expectations; fills row["equal"] (newest complete checkpoint vs the reference's
    checkpoint of the same step); returns the problems found."""
    problems = []
    for r in rows:
        if r["signal_at_step"] is None:
            problems.append(f"kill {r['kill']}: the process ended (exit code {r['exit_code']}) "
                            f"before the signal; output:\n{r['output'][-1500:]}")
            continue
        if r["signal"] == "SIGKILL":
            if r["exit_code"] != -signal.SIGKILL:
                problems.append(f"kill {r['kill']}: SIGKILL gave exit code {r['exit_code']}")
        elif r["exit_code"] != preempted:
            problems.append(f"kill {r['kill']}: {r['signal']} gave exit code {r['exit_code']} "
                            f"(want {preempted}); output:\n{r['output'][-2000:]}")
        elif not names_step_and_workdir(r["output"], r["newest_complete"], workdir):
            problems.append(f"kill {r['kill']}: no line names step {r['newest_complete']} and "
                            f"{workdir}; output:\n{r['output'][-1500:]}")
        elif r["newest_complete"] < r["signal_at_step"]:
            problems.append(f"kill {r['kill']}: {r['signal']} at step {r['signal_at_step']} "
                            f"but the newest checkpoint is {r['newest_complete']}")
        if r["newest_complete"] is not None:
            try:
                assert_same_arrays(checkpoint_arrays(workdir, r["newest_complete"]),
                                   checkpoint_arrays(reference, r["newest_complete"]),
                                   f"checkpoint {r['newest_complete']} after kill {r['kill']}")
                r["equal"] = True
            except Exception as e:  # noqa: BLE001  (reported in the table, then raised)
                r["equal"] = False
                problems.append(str(e))
    return problems


def table(rows: list[dict], title: str) -> str:
    cols = ("kill", "signal", "aimed_at", "landed_mid_write", "second_signal",
            "exit_code", "signal_at_step", "newest_complete", "equal", "seconds")
    lines = [title, " | ".join(cols)]
    lines += [" | ".join(str(r[c]) for c in cols) for r in rows]
    mid = sum(r["landed_mid_write"] for r in rows)
    lines.append(f"{sum(r['signal_at_step'] is not None for r in rows)} kills, "
                 f"{mid} landed mid-write, "
                 f"{sum(r['equal'] is True for r in rows)} checkpoints bitwise equal")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- feature cache
def cache_setup():
    """(trunk config, feature indices, trunk params, batches) of tests/test_lst_cache.py's tiny
    LST model, for building feature caches in process."""
    from gau_jax.models.encoder import encoder_config
    from gau_jax.models.lst import feature_indices, lst_config
    from tests.test_lst_cache import LST, setup

    c, _, batches, params = setup()
    trunk = encoder_config(c)
    return trunk, feature_indices(trunk, lst_config(LST)), params["encoder"], batches
