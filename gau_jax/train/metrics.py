"""Where numbers go: DIR/metrics.jsonl, TensorBoard (tensorboardX), a tqdm bar, summary.json.

One JSON object per line in metrics.jsonl: {"step": t, "split": "train"|"dev", <name>: value}.
Train metrics are means over the last `log_every_steps` steps; dev metrics are ratios of sums
over the whole dev set (accuracy = Σ w·[argmax = label] / Σ w). Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from gau_jax import workdir as layout
from gau_jax.atomic import write_text_atomic


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
            self.file = open(self.workdir / layout.METRICS, "a", encoding="utf-8")  # noqa: SIM115
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
    """Progress over [start, total): a tqdm bar with loss, steps/s and ETA on a terminal; on a
    log file or pipe (stderr not a terminal) one plain line every `interval` seconds instead.
    steps/s counts from the first update, so compilation (the first step) is excluded."""

    def __init__(self, start: int, total: int, desc: str, enabled: bool = True,
                 interval: float = 30.0):
        enabled = enabled and jax.process_index() == 0
        self.plain = enabled and not sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True,
                        disable=not enabled or self.plain, mininterval=1.0)
        self.desc, self.total, self.interval = desc, total, interval
        self.origin: tuple[int, float] | None = None  # (step, time) of the first update
        self.last_line = time.time()

    def update(self, step: int, **postfix: float) -> None:
        if self.origin is None:
            self.origin = (step, time.time())
        self.bar.n = step
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self.bar.refresh()
        if self.plain and (time.time() - self.last_line >= self.interval or step == self.total):
            self.last_line = time.time()
            extra = "".join(f" {k} {v:.4g}" for k, v in postfix.items())
            print(f"{self.desc}: step {step}/{self.total}{extra} "
                  f"{rate_and_eta(self.steps_per_second(step), self.total - step)}",
                  file=sys.stderr, flush=True)

    def steps_per_second(self, step: int) -> float:
        """Steps per second since the first update (NaN until a step after it)."""
        if self.origin is None or step <= self.origin[0]:
            return float("nan")
        return (step - self.origin[0]) / max(time.time() - self.origin[1], 1e-9)

    def close(self) -> None:
        self.bar.close()


def rate_and_eta(rate: float, remaining: int) -> str:
    """"12.3 steps/s eta 45s"; before a rate is known (NaN, 0) "- steps/s eta ?"; nothing left
    to do: "eta 0s"."""
    known = math.isfinite(rate) and rate > 0
    eta = "0s" if remaining <= 0 else f"{remaining / rate:.0f}s" if known else "?"
    return f"{rate:.3g} steps/s eta {eta}" if known else f"- steps/s eta {eta}"


def write_summary(workdir: str | Path, summary: dict[str, Any]) -> None:
    """DIR/summary.json, e.g. {"step", "train_loss", "dev": {"accuracy": ...}, "wall_time_s"}."""
    if jax.process_index() == 0:
        write_text_atomic(Path(workdir) / layout.SUMMARY,  # whole or absent: it marks the end
                          json.dumps(_plain(summary), indent=2, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a metrics.jsonl file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
