"""Where numbers go: DIR/metrics.jsonl, TensorBoard (tensorboardX), a tqdm bar, summary.json.

One JSON object per line in metrics.jsonl: {"step": t, "split": "train"|"dev", <name>: value}.
Train metrics are means over the last `log_every_steps` steps; dev metrics are ratios of sums
over the whole dev set (accuracy = Σ w·[argmax = label] / Σ w). Only process 0 writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(value).item()
    return value


class MetricWriter:
    """Appends metrics to DIR/metrics.jsonl and TensorBoard event files under DIR/tensorboard."""

    def __init__(self, workdir: str | Path, tensorboard: bool = True):
        self.workdir = Path(workdir)
        self.enabled = jax.process_index() == 0
        self.tb = None
        if self.enabled:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.file = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            if tensorboard:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(self.workdir / "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        metrics = _plain(metrics)
        self.file.write(json.dumps({"step": int(step), "split": split, **metrics}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{split}/{name}", value, int(step))

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


class Progress:
    """A tqdm bar over [start, total) showing loss; tqdm itself shows steps/s and ETA."""

    def __init__(self, start: int, total: int, desc: str, enabled: bool = True):
        self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True,
                        disable=not enabled or jax.process_index() != 0, mininterval=1.0)
        self.t0 = time.time()
        self.start = start

    def update(self, step: int, **postfix: float) -> None:
        self.bar.n = step
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self.bar.refresh()

    def steps_per_second(self, step: int) -> float:
        return (step - self.start) / max(time.time() - self.t0, 1e-9)

    def close(self) -> None:
        self.bar.close()


def write_summary(workdir: str | Path, summary: dict[str, Any]) -> None:
    """DIR/summary.json, e.g. {"step", "train_loss", "dev": {"accuracy": ...}, "wall_time_s"}."""
    if jax.process_index() == 0:
        path = Path(workdir) / "summary.json"
        path.write_text(json.dumps(_plain(summary), indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a metrics.jsonl file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
