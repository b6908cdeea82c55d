"""gau_jax/atomic.py: a file's new content appears whole or not at all."""

import os

import pytest

from gau_jax import atomic
from gau_jax.atomic import write_text_atomic


def test_writes_text_and_bytes_creating_the_folder(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    assert write_text_atomic(path, "中文\n") == path
    assert path.read_bytes() == "中文\n".encode()
    assert write_text_atomic(str(path), b"\x00\xff") == path and path.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text("old")
    seen = []

    def crash(src, dst):
        seen.append(os.path.basename(src))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert seen == [f".summary.json.tmp{os.getpid()}"]  # written beside it, hidden
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # temporary removed


def test_fsync_flushes_before_the_rename(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: calls.append("fsync"))
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace",
                        lambda a, b: (calls.append("replace"), real_replace(a, b)))
    write_text_atomic(tmp_path / "x", "1")
    assert calls == ["replace"]
    calls.clear()
    write_text_atomic(tmp_path / "x", "2", fsync=True)
    assert calls == ["fsync", "replace"] and (tmp_path / "x").read_text() == "2"
