"""Weight import / export: HF-format PyTorch ports (`hf`), bert4keras TF checkpoints
(`bert4keras`, `tf_checkpoint`), the shared mapping engine (`common`), the encoder inside
training workdirs and Orbax folders (`workdir`), and the CLI (`__main__`)."""

from gau_jax.convert.common import ConvertError

__all__ = ["ConvertError"]
