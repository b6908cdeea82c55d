"""Model presets as configs (released sizes, docs/math.md; `*_tiny` are ours, for tests/demos).

    python -c "from configs import models; print(models.get_config('gau_alpha_base'))"

Presets: roformer_v2_{tiny,small,base,large}, gau_alpha_{tiny,base}. Field meanings are commented
in gau_jax/models/presets.py (`base_config`).
"""

import ml_collections

from gau_jax.models.presets import PRESETS, get_model_config


def get_config(arg: str = "gau_alpha_tiny") -> ml_collections.ConfigDict:
    """The model config of preset `arg`; ConfigError names the valid presets otherwise."""
    return get_model_config(arg)


__all__ = ["PRESETS", "get_config"]
