"""The one command line of the experiment scripts (the style of experiments/train.py):

    python -m experiments.<name> --config configs/<name>.py:full --workdir DIR \
        [--config.<field>=<value> ...]

`--config` is an ml_collections config file with its argument (`smoke` or `full`); any field can
be overridden (unknown fields are an error). The command line itself is stored in
config.command, which the results file prints.

Every entry point that trains also takes the multi-process flags (`distributed_flags`):
`--coordinator_address HOST:PORT --num_processes N --process_id I` (all three, or none: a
cluster found in the environment is joined by itself; gau_jax/train/distributed.py), applied
before anything touches JAX.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections


def distributed_flags() -> Callable[[], None]:
    """Defines --coordinator_address, --num_processes, --process_id; returns the function that
    starts the process with them (call it first in main, before any JAX computation)."""
    from absl import flags

    address = flags.DEFINE_string(
        "coordinator_address", None, "multi-process run: HOST:PORT of process 0 ('auto': JAX's "
        "cluster detection; none of the three flags: detected from the environment)")
    count = flags.DEFINE_integer("num_processes", None, "multi-process run: number of processes")
    index = flags.DEFINE_integer("process_id", None, "multi-process run: this process, 0..N-1")

    def start() -> None:
        from gau_jax.train import distributed

        distributed.initialize(address.value, count.value, index.value)

    return start


def main(run: Callable[[ml_collections.ConfigDict, Path], Any], name: str) -> None:
    """Parses --config / --workdir and calls run(config, workdir) for experiments.<name>."""
    from absl import app, flags, logging
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, f"configs/{name}.py:full|smoke",
                                             lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, "output folder (runs, logs, results files)")
    flags.mark_flags_as_required(["config", "workdir"])
    start = distributed_flags()

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        start()
        logging.set_verbosity(logging.WARNING)
        c = config.value
        c.command = f"python -m experiments.{name} {shlex.join(sys.argv[1:])}"
        run(c, Path(workdir.value))

    app.run(_main)


def names(value: Any) -> tuple[str, ...]:
    """A tuple of names from a tuple field, also when overridden as --config.f=a,b (one string)."""
    items = (value,) if isinstance(value, str) else tuple(value)
    return tuple(x.strip() for item in items for x in str(item).split(",") if x.strip())


def results_dir(config: ml_collections.ConfigDict, workdir: str | Path) -> Path:
    """Where a run writes its tables and plots: config.results_dir, or the workdir if empty."""
    return Path(config.results_dir or workdir)


def figure(rows: int, cols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """(fig, axes [rows, cols]) drawn off-screen: a matplotlib Figure without pyplot, so a
    results writer never switches the backend of a notebook that imports it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False)


def reading_notes(out: Path, stem: str) -> list[str]:
    """Hand-written notes on a results file, kept apart so a rerun does not erase them: the text
    of <out>/<stem>_notes.md under a "Reading notes" heading ([] if there is none)."""
    notes = Path(out) / f"{stem}_notes.md"
    if not notes.exists():
        return []
    return ["## Reading notes", "", f"(hand-written, from `{notes.name}`: they describe the run "
            "they were written for; check them against the tables above after a rerun)", "",
            notes.read_text().strip(), ""]
