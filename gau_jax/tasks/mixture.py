"""A weighted mixture of tasks (the multi-task stage): which task each step trains on.

    rate_t = n_t^α / Σ_s n_s^α          n_t = task t's train rows, α = config.mixture_alpha
                                        (α = 1: proportional to size; α = 0: uniform)

Step k's task is drawn from the rates by a generator seeded with (seed, k) alone, so every
process picks the same task and a resumed run the same sequence. A step's batch comes from one
task: the kinds' batches have different layouts ([b, C, n] choices, [b, T, n, n] span targets),
so a mixed batch would pad every row to the union of them; one task per step keeps each task's
own batch shape and compiled step, and the expected update is the mixture's gradient (the
sampled task's loss, weighted by how often it is drawn: Raffel et al. 2020, T5 §3.5.2,
"examples-proportional mixing" with a temperature). Each batch carries a marker key
`task:<name>` ([b] int8 zeros) that tells the loss which head to use (`task_of`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

MARKER = "task:"


def mixture_rates(sizes: Mapping[str, int], alpha: float) -> dict[str, float]:
    """rate_t ∝ n_t^α (module docstring)."""
    if not sizes:
        raise ValueError("a mixture needs at least one task")
    bad = [t for t, n in sizes.items() if n <= 0]
    if bad:
        raise ValueError(f"mixture: task(s) {bad} have no train rows")
    w = {t: float(n) ** float(alpha) for t, n in sizes.items()}
    total = sum(w.values())
    return {t: v / total for t, v in w.items()}


def mark(batch: dict[str, Any], task: str) -> dict[str, Any]:
    """The batch with its task's marker key."""
    rows = len(next(iter(batch.values())))
    return {**batch, MARKER + task: np.zeros((rows,), np.int8)}


def task_of(batch: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(the marked task or None, the batch without the marker)."""
    names = [k for k in batch if k.startswith(MARKER)]
    if len(names) > 1:
        raise ValueError(f"a batch marks several tasks: {names}")
    if not names:
        return None, dict(batch)
    return names[0][len(MARKER):], {k: v for k, v in batch.items() if k != names[0]}


class TaskMixture:
    """Batches of several tasks' train iterators, one task per step drawn by rate."""

    def __init__(self, iterators: Mapping[str, Iterator], rates: Mapping[str, float],
                 seed: int = 0):
        self.iterators, self.names = dict(iterators), list(iterators)
        self.p = np.asarray([rates[n] for n in self.names], np.float64)
        self.seed, self.step = int(seed), 0
        self.drawn = dict.fromkeys(self.names, 0)

    def task_at(self, step: int) -> str:
        """The task of step `step` (0-based), from (seed, step) alone."""
        u = np.random.default_rng([self.seed, 0x6D697874, step]).random()
        return self.names[min(int(np.searchsorted(np.cumsum(self.p), u, side="right")),
                              len(self.names) - 1)]

    def __iter__(self) -> TaskMixture:
        return self

    def __next__(self) -> dict[str, Any]:
        task = self.task_at(self.step)
        batch = next(self.iterators[task])
        self.step += 1
        self.drawn[task] += 1
        return mark(batch, task)

    def get_state(self) -> dict[str, Any]:
        return {"step": self.step, "drawn": dict(self.drawn),
                "tasks": {n: it.get_state() for n, it in self.iterators.items()}}

    def set_state(self, state: Mapping[str, Any]) -> None:
        missing = [n for n in self.names if n not in state["tasks"]]
        if missing:
            raise ValueError(f"mixture state has no iterator state for task(s) {missing}")
        for n, it in self.iterators.items():
            it.set_state(state["tasks"][n])
        self.step, self.drawn = int(state["step"]), {n: int(state["drawn"].get(n, 0))
                                                     for n in self.names}
