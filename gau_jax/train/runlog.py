"""Resumable run logs and the parts of a results file: header, Markdown tables, spreads.

    log = RunLog(DIR / "runs.jsonl", key_fields=("run", "variant"))
    log.get(fields) -> the record whose key fields equal `fields`' (None if not run yet)
    log.append(record)                one JSON line per finished run; a rerun skips its keys
    run_key("afqmc_lst", overrides)   -> "afqmc_lst-<first 8 hex of sha1(sorted JSON)>": a name
                                      for a run (and its workdir) that changes with any override
    results_header(title, command)    "# title", the command line, then one line with the git
                                      commit, the date, the jax version and the machine
    markdown_table(["n", "acc"], [[64, "43.1"]])  ->  "| n | acc |\n|---|---|\n| 64 | 43.1 |"
    mean_spread([a, b, ...])          -> (mean, sample standard deviation; 0 for one value)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np


class RunLog:
    """A JSON Lines file of finished runs, keyed by the values of `key_fields`."""

    def __init__(self, path: str | Path, key_fields: Sequence[str]):
        self.path, self.key_fields = Path(path), tuple(key_fields)
        self._records: dict[str, dict] = {}
        if self.path.exists():
            for i, line in enumerate(self.path.read_text(encoding="utf-8").splitlines()):
                if line.strip():
                    record = json.loads(line)
                    self._records[self._key(record, f"{self.path}:{i + 1}")] = record

    def _key(self, fields: Mapping[str, Any], where: str = "") -> str:
        missing = [k for k in self.key_fields if k not in fields]
        if missing:
            raise KeyError(f"run log {where or self.path}: record has no key field(s) {missing}")
        return json.dumps([fields[k] for k in self.key_fields])

    def get(self, fields: Mapping[str, Any]) -> dict | None:
        return self._records.get(self._key(fields))

    def append(self, record: dict) -> dict:
        """Writes `record` as one line (flushed) and returns it."""
        self._records[self._key(record)] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    @property
    def records(self) -> list[dict]:
        return list(self._records.values())


def run_key(prefix: str, overrides: Mapping[str, Any]) -> str:
    """`prefix` plus a short hash of every override (sorted JSON), safe as a folder name."""
    text = json.dumps(overrides, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def git_commit(repo: str | Path | None = None) -> str:
    """'<short commit>' (+ ' with local changes'), or 'unknown' outside a git checkout."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode:
            return "unknown"
        dirty = git("diff-index", "--quiet", "HEAD", "--").returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (" with local changes" if dirty else "")


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_line() -> str:
    """The jax version, backend, device, CPU count and model (results files record where they
    ran)."""
    dev = jax.devices()[0]
    return (f"jax {jax.__version__}, backend {jax.default_backend()} ({dev.device_kind}), "
            f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
            f"CPU {cpu_model()}")


def results_header(title: str, command: str) -> list[str]:
    """The first lines of a results file: title, command, commit · date · jax · machine."""
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [f"# {title}", "", f"Command: `{command}`", "",
            f"Commit {git_commit()}, {date}; {machine_line()}.", ""]


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
