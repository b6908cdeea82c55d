"""Weight import / export: HF-format PyTorch ports (`hf`), bert4keras TF checkpoints
(`bert4keras`, `tf_checkpoint`), the shared mapping engine (`common`) and the CLI (`__main__`).
Training workdirs are read by gau_jax/workdir.py, the encoder in them found by
gau_jax/pretrained.py."""

from gau_jax.convert.common import ConvertError

__all__ = ["ConvertError"]
