"""Shared fixtures: the CLUE snapshot location and small helpers."""

import os
import pathlib

import pytest


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
