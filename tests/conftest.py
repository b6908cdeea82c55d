"""Shared fixtures (the CLUE snapshot location) and the test session's JAX settings.

JAX's persistent compilation cache is on for every test process: pytest-xdist workers and the
subprocesses tests start (they inherit the environment set here) share `.cache/jax` at the
repository root (git-ignored; `make clean` removes it), so a second run loads compiled XLA
executables instead of compiling them again. Compiled programs are the same either way. Override
the folder with JAX_COMPILATION_CACHE_DIR, or disable the cache with JAX_COMPILATION_CACHE_DIR="".
"""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_JAX_CACHE = {
    "JAX_COMPILATION_CACHE_DIR": str(ROOT / ".cache" / "jax"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.1",  # default 1 s skips most CPU compiles
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",  # every size (0 would mean the default)
}
for _name, _value in _JAX_CACHE.items():
    os.environ.setdefault(_name, _value)

import jax  # noqa: E402  (after the environment it reads)

if os.environ["JAX_COMPILATION_CACHE_DIR"]:
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                      int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The folder GAU_JAX_SHARED_DATA names (../shared/data under `make test`), else a skip."""
    path = os.environ.get("GAU_JAX_SHARED_DATA", "")
    if not path:
        pytest.skip("GAU_JAX_SHARED_DATA not set: no ../shared/data beside the project")
    p = pathlib.Path(path)
    if not p.is_dir():
        pytest.skip(f"GAU_JAX_SHARED_DATA={path} is not a folder")
    return p


# ------------------------------------------------------------------ scheduling under pytest-xdist
# `make test` runs `-n 2 --dist loadscope --no-loadscope-reorder`: each test module runs whole on
# one worker, so a module-scoped fixture that trains a workdir is built once (under plain `load`
# each worker built it again), and modules are handed out heaviest first (longest-processing-
# time-first), so the last to start are short ones and both workers stay busy to the end. A
# module's cost is COST_S (seconds of its tests in a clean-clone `make test` on the idle 2-core
# machine, 2026-12-07, GAU_JAX_TEST_LOG; only the order matters), else 20 s per test marked
# slow plus 1 s per other test. Applied in xdist workers only: a plain `pytest` run keeps the
# file order. (`--dist loadgroup` would allow finer groups, but with pytest 9 and xdist 3.8 its
# xdist_group marks are ignored: the group suffix xdist writes into item._nodeid no longer
# reaches the node id.)
COST_S = {
    "test_fault_injection.py": 356, "test_multiprocess.py": 347, "test_method_defaults.py": 329,
    "test_clue_commands.py": 305, "test_lst_clue.py": 259, "test_notebooks.py": 242,
    "test_frozen_grads.py": 227, "test_encoder.py": 186, "test_task_methods.py": 183,
    "test_lst.py": 176, "test_multitask_results.py": 134, "test_pretrained_load.py": 120,
    "test_task_training.py": 116, "test_corpus_multiprocess.py": 106,
    "test_experiments_small.py": 105, "test_train_step.py": 103, "test_dropout_layout.py": 99,
    "test_peft_bench.py": 94, "test_sharding.py": 93, "test_wiring.py": 84,
    "test_clue_results.py": 78, "test_multitask.py": 70, "test_low_precision.py": 65,
    "test_lst_cache.py": 64, "test_lst_init.py": 61, "test_checkpoint.py": 54,
    "test_train_e2e.py": 54, "test_layers.py": 54, "test_nonfinite.py": 51,
    "test_fused_attention.py": 50, "test_dropout_streams.py": 47, "test_demo.py": 46,
    "test_clue.py": 42, "test_convert_parity.py": 36, "test_disk.py": 35,
    "test_corpus_training.py": 34,
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    guess: dict[str, float] = {}
    for item in items:
        mod = item.path.name
        guess[mod] = guess.get(mod, 0.0) + (20.0 if item.get_closest_marker("slow") else 1.0)
    first: dict[str, int] = {}
    keys = [(-COST_S.get(m, guess[m]), first.setdefault(m, k), k)
            for k, m in enumerate(item.path.name for item in items)]
    order = sorted(range(len(items)), key=keys.__getitem__)
    items[:] = [items[k] for k in order]


# GAU_JAX_TEST_LOG=<file>: every test's setup + call + teardown seconds are appended to <file>
# as they finish (one "seconds worker nodeid" line each; it survives a run cut short).
_TEST_LOG = os.environ.get("GAU_JAX_TEST_LOG")
_SPENT: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if not _TEST_LOG or hasattr(report, "node"):  # `node`: a worker's report seen by xdist's
        return                                       # controller (the worker logged it)
    _SPENT[report.nodeid] = _SPENT.get(report.nodeid, 0.0) + report.duration
    if report.when == "teardown":
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(_TEST_LOG, "a", encoding="utf-8") as f:
            f.write(f"{_SPENT.pop(report.nodeid):.2f} {worker} {report.nodeid}\n")
