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
