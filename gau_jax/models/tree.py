"""Parameter trees by leaf path: a leaf's key names, and the first shape difference of two trees.

    path_names(path)          ('layers', 'gau', 'uvz', 'kernel') from a jax key path
    tree_shape_diff(got, want) the first leaf path (joined by "/") that `got` lacks, has with
                              another shape, or has in excess of `want` — None when they match

Leaves are anything with a shape (arrays, jax.ShapeDtypeStruct, Orbax array metadata); a None
leaf is no leaf (jax's convention), so `tree_map(lambda x: None if drop else x, tree)` removes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

PyTree = Any


def path_names(path: tuple) -> tuple[str, ...]:
    """('layers', 'gau', 'uvz', 'kernel') from a jax key path."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def flat_shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
    """{"a/b/c": shape} of every leaf of `tree`."""
    return {"/".join(path_names(p)): _shape(x)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_shape_diff(got: PyTree, want: PyTree, got_name: str = "the checkpoint",
                    want_name: str = "the model") -> str | None:
    """The first leaf that `got` is missing, has with a shape other than `want`'s, or has but
    `want` lacks, as a sentence naming its path; None when both trees have the same leaves."""
    g, w = flat_shapes(got), flat_shapes(want)
    for key, shape in w.items():
        if key not in g:
            return f"{key} is missing from {got_name}"
        if g[key] != shape:
            return f"{key} has shape {g[key]} in {got_name} but {shape} in {want_name}"
    extra = sorted(set(g) - set(w))
    return f"{extra[0]} is in {got_name} but not in {want_name}" if extra else None
