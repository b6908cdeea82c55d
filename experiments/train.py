"""Train one experiment from an ml_collections config.

    python -m experiments.train --config configs/pretrain.py:gau_alpha_tiny \
        --workdir runs/pretrain --config.total_steps=2000
    python -m experiments.train \
        --config configs/finetune.py:task=sentiment,model=gau_alpha_tiny,method=full \
        --workdir runs/ft --config.init_from=runs/pretrain

Any config field can be overridden with --config.<field>=<value> (unknown fields are an error).
Re-running with the same --workdir resumes from its latest checkpoint.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from gau_jax.train.loop import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<file>.py:<arg>",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output folder (checkpoints, metrics, summary)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    summary = train(_CONFIG.value, _WORKDIR.value)
    print(json.dumps(summary, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    app.run(main)
