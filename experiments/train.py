"""Train one experiment from an ml_collections config.

    python -m experiments.train --config configs/pretrain.py:gau_alpha_tiny \
        --workdir runs/pretrain --config.total_steps=2000
    python -m experiments.train \
        --config configs/finetune.py:task=sentiment,model=gau_alpha_tiny,method=full \
        --workdir runs/ft --config.init_from=runs/pretrain

Any config field can be overridden with --config.<field>=<value> (unknown fields are an error).
Re-running with the same --workdir resumes from its latest checkpoint.
Exit codes: 0 finished; 75 stopped by SIGTERM / SIGINT or a preemption after checkpointing the
current step (rerun the same command to resume); 65 a non-finite loss or gradient norm (the
message names the step and the last good checkpoint).

Multi-process (one process per host, or per GPU), every process with the same command plus:

    --coordinator_address HOST:PORT --num_processes N --process_id I

(none of them on a TPU pod slice, under SLURM's srun or Open MPI's mpirun: detected from the
environment; gau_jax/train/distributed.py). Only process 0 prints the summary.
"""

from __future__ import annotations

import json
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.cli import distributed_flags
from gau_jax.train.loop import train
from gau_jax.train.stopping import NonFiniteError, Stopped

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<file>.py:<arg>",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (checkpoints, metrics, summary)")
flags.mark_flags_as_required(["config", "workdir"])
_START = distributed_flags()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    _START()
    try:
        summary = train(_CONFIG.value, _WORKDIR.value)
    except (Stopped, NonFiniteError) as e:  # documented exit codes (gau_jax/train/stopping.py)
        print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    if jax.process_index() == 0:
        print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    app.run(main)
