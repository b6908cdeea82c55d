"""Why a training run stops before its last step, and the exit codes that say so.

Stopping (exit codes of `python -m experiments.train`):
    SIGTERM / SIGINT, or a JAX preemption sync point in a multi-process run: the current step
    finishes, a checkpoint of it is written (and waited for), one line names step and workdir,
    and `Stopped` is raised → EXIT_PREEMPTED (75); the same command resumes. Further signals
    during that save are ignored (`StopFlag` keeps the first).
    A NaN / Inf loss or gradient norm: its update is not applied (step.py), and at the next
    sync (log, evaluation or checkpoint; no extra host sync per step) `NonFiniteError` names the
    step, the metric and the last good checkpoint → EXIT_NONFINITE (65). With
    config.skip_nonfinite_updates those updates are skipped and counted (`skipped_updates`),
    and the run stops the same way after config.max_consecutive_skips in a row
    (`check_finite`).
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

from gau_jax import workdir as layout

EXIT_PREEMPTED = 75   # stopped by a signal / preemption after saving: rerun to resume
EXIT_NONFINITE = 65   # stopped by a NaN / Inf loss or gradient norm


class Stopped(Exception):
    """Training stopped on a signal or preemption after checkpointing `step`."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, step: int, workdir: Path, why: str):
        super().__init__(f"{why}: stopped at step {step}; checkpoint saved in {workdir}/"
                         f"{layout.CHECKPOINTS}/{step}; rerun the same command to resume")
        self.step = step


class NonFiniteError(FloatingPointError):
    """A non-finite loss / gradient norm at `step`; params are the last good ones."""

    exit_code = EXIT_NONFINITE

    def __init__(self, step: int, metric: str, message: str):
        super().__init__(message)
        self.step, self.metric = step, metric


class StopFlag:
    """SIGTERM / SIGINT set a flag the loop reads after each step (main thread only)."""

    def __init__(self):
        self.why, self._old = None, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.why = self.why or signal.Signals(signum).name  # a second signal changes nothing

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def check_finite(records: list[dict], config: Any, last_good: str) -> None:
    """NonFiniteError when the host-side step records show a stop condition (module docstring);
    `last_good` names the last good checkpoint in its message."""
    c = config
    for r in records:
        bad = [k for k in ("loss", "grad_norm") if not math.isfinite(r[k])]
        if not bad:
            continue
        if c.skip_nonfinite_updates and r["bad_streak"] < c.max_consecutive_skips:
            continue
        why = (f"{int(r['bad_streak'])} non-finite steps in a row "
               f"(config.max_consecutive_skips={c.max_consecutive_skips})"
               if c.skip_nonfinite_updates else "training stopped")
        raise NonFiniteError(int(r["step"]), bad[0],
                             f"non-finite {' and '.join(bad)} at step {int(r['step'])}: "
                             f"{why}; its update was not applied. Last good checkpoint: "
                             f"{last_good}. Lower the learning rate, use float32, or set "
                             "config.skip_nonfinite_updates=True")
