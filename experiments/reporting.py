"""Small helpers the experiment scripts share to write results files: Markdown tables, spreads.

    markdown_table(["n", "acc"], [[64, "43.1"]])  ->  "| n | acc |\n|---|---|\n| 64 | 43.1 |"
    mean_spread([a, b, ...]) -> (mean, sample standard deviation (0 for one value))
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

import jax
import numpy as np


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; every row must have len(headers) cells."""
    for i, r in enumerate(rows):
        if len(r) != len(headers):
            raise ValueError(f"table row {i} has {len(r)} cells, headers have {len(headers)}")
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof=1; 0.0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def machine_line() -> str:
    """One line naming the backend, device and CPU count (results files record where they ran)."""
    import os

    dev = jax.devices()[0]
    return (f"jax {jax.__version__}, backend {jax.default_backend()} ({dev.device_kind}), "
            f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
