"""BuildFolder: atomic writes, atomic folders, a clear error for an unwritable folder, artifact descriptions."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from compiler_kit.artifacts import BuildFolder, sha256_file
from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError


def leftovers(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir() if ".tmp" in path.name)


def test_write_bytes_writes_and_replaces(tmp_path: Path):
    folder = BuildFolder(tmp_path)
    path = folder.write_bytes("model.tflite", b"first")
    assert path == tmp_path / "model.tflite"
    assert path.read_bytes() == b"first"
    folder.write_bytes("model.tflite", b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_write_text_is_utf8(tmp_path: Path):
    path = BuildFolder(tmp_path).write_text("report.md", "drift ≤ 1 pp\n")
    assert path.read_bytes() == "drift ≤ 1 pp\n".encode()


def test_write_bytes_is_atomic_when_the_rename_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = BuildFolder(tmp_path)
    final = folder.write_bytes("model.tflite", b"old content")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        folder.write_bytes("model.tflite", b"new content that never lands")
    assert final.read_bytes() == b"old content"
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_write_bytes_leaves_nothing_when_a_first_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def fail(src, dst):
        raise KeyboardInterrupt  # an interrupted build, not only an OSError

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        BuildFolder(tmp_path).write_bytes("model.tflite", b"data")
    assert list(tmp_path.iterdir()) == []


def test_new_dir_replaces_the_folder_only_when_the_block_completes(tmp_path: Path):
    folder = BuildFolder(tmp_path)
    old = tmp_path / "saved_model"
    old.mkdir()
    (old / "stale.pb").write_text("old")
    with folder.new_dir("saved_model") as tmp:
        assert tmp != old
        assert tmp.parent == tmp_path
        assert list(tmp.iterdir()) == []
        (tmp / "saved_model.pb").write_text("new")
        # Until the block ends, the old folder is untouched.
        assert (old / "stale.pb").read_text() == "old"
    assert sorted(p.name for p in old.iterdir()) == ["saved_model.pb"]
    assert (old / "saved_model.pb").read_text() == "new"
    assert not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_new_dir_keeps_the_old_folder_on_an_exception(tmp_path: Path):
    folder = BuildFolder(tmp_path)
    old = tmp_path / "saved_model"
    old.mkdir()
    (old / "keep.pb").write_text("old")
    with pytest.raises(RuntimeError, match="converter crashed"), folder.new_dir("saved_model") as tmp:
        (tmp / "half.pb").write_text("partial")
        raise RuntimeError("converter crashed")
    assert sorted(p.name for p in old.iterdir()) == ["keep.pb"]
    assert (old / "keep.pb").read_text() == "old"
    assert not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_new_dir_leaves_nothing_on_an_exception(tmp_path: Path):
    with pytest.raises(ValueError), BuildFolder(tmp_path).new_dir("saved_model") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "file").write_bytes(b"x")
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_ensure_writable_creates_the_folder(tmp_path: Path):
    root = tmp_path / "a" / "b" / "build"
    BuildFolder(root).ensure_writable()
    assert root.is_dir()
    assert list(root.iterdir()) == []  # the write test leaves no file behind


def test_ensure_writable_under_a_regular_file_is_bad_input(tmp_path: Path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    root = blocker / "build"
    with pytest.raises(BadInputError) as caught:
        BuildFolder(root).ensure_writable()
    assert caught.value.exit_code == EXIT_BAD_INPUT == 2
    message = str(caught.value)
    assert message.startswith(f"{root}: cannot write the build folder")
    assert "fix: set output.dir" in message
    assert blocker.read_text() == "a file"


def test_ensure_writable_on_a_regular_file_is_bad_input(tmp_path: Path):
    blocker = tmp_path / "build"
    blocker.write_text("a file")
    with pytest.raises(BadInputError) as caught:
        BuildFolder(blocker).ensure_writable()
    assert caught.value.exit_code == 2


def test_describe_matches_hashlib(tmp_path: Path):
    folder = BuildFolder(tmp_path)
    data = bytes(range(256)) * 5000  # 1,280,000 bytes: more than one 1 MiB read chunk
    folder.write_bytes("model_int8.tflite", data)
    entry = folder.describe("model_int8.tflite")
    assert entry == {
        "path": str(tmp_path / "model_int8.tflite"),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": 1_280_000,
    }
    assert sha256_file(tmp_path / "model_int8.tflite") == hashlib.sha256(data).hexdigest()


def test_describe_of_an_empty_file(tmp_path: Path):
    folder = BuildFolder(tmp_path)
    folder.write_bytes("empty.bin", b"")
    entry = folder.describe("empty.bin")
    assert entry["bytes"] == 0
    assert entry["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_written_files_get_ordinary_permissions(tmp_path) -> None:
    mask = os.umask(0o022)
    try:
        path = BuildFolder(tmp_path).write_bytes("a.bin", b"x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
