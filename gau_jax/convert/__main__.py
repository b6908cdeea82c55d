r"""`python -m gau_jax.convert SRC OUT [--to gau_jax|hf]`: convert a pretrained checkpoint.

SRC: anything gau_jax.pretrained.load reads — a Hugging Face-format folder of the `roformer` /
`gau-alpha` PyTorch ports, a bert4keras checkpoint folder, a converted gau_jax folder, or a
training workdir (pretraining, or fine-tuning with any method: its best dev step if kept, else
its latest checkpoint; LoRA is merged into the kernels). OUT (default --to gau_jax):
config.json (our model config), vocab.txt and params/ (Orbax checkpoint of {"params": encoder
params}) — what the fine-tuning config field `init_from` points at. `--to hf` writes
config.json + model.safetensors + vocab.txt that the PyTorch ports' `from_pretrained` loads.

Fine-tuning a released model (either format), e.g. GAU-α on TNEWS:
    python -m gau_jax.convert chinese_GAU-alpha-char_L-24_H-768 runs/gau_alpha_base
    python -m experiments.train --config configs/finetune.py:task=tnews,model=gau_alpha_base \
        --workdir runs/ft_tnews --config.data_dir=../shared/data/clue \
        --config.init_from=runs/gau_alpha_base
"""

from __future__ import annotations

import argparse
import sys

from gau_jax.convert import hf
from gau_jax.pretrained import load, save_gau_jax


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gau_jax.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="checkpoint folder (hf, bert4keras, gau_jax) or a workdir")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--to", choices=("gau_jax", "hf"), default="gau_jax")
    args = ap.parse_args(argv)
    pre = load(args.src)
    cfg = pre.config
    if args.to == "hf":
        hf.save(args.out, cfg, pre.params, pre.vocab)
    else:
        save_gau_jax(args.out, cfg, pre.params, pre.vocab)
    print(f"{pre.source} ({pre.format}, {cfg.block}, {cfg.num_layers} layers, "
          f"d={cfg.hidden_size}, vocab={cfg.vocab_size}) -> {args.out} ({args.to})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
