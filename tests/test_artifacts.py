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


def test_install_copies_files_and_folders_atomically_and_an_absent_source_removes(tmp_path: Path):
    folder, source = BuildFolder(tmp_path / "build"), tmp_path / "entry"
    folder.ensure_writable()
    (source / "edgetpu").mkdir(parents=True)
    (source / "edgetpu" / "model_edgetpu.tflite").write_bytes(b"compiled")
    (source / "model.tflite").write_bytes(b"int8")
    folder.write_bytes("model.tflite", b"stale")
    folder.install(source / "model.tflite", "model.tflite")
    folder.install(source / "edgetpu", "edgetpu")
    assert (folder.root / "model.tflite").read_bytes() == b"int8"
    assert (folder.root / "edgetpu" / "model_edgetpu.tflite").read_bytes() == b"compiled"
    folder.install(source / "nothing", "edgetpu")  # this build's stage made no such folder: last build's goes
    assert sorted(p.name for p in folder.root.iterdir()) == ["model.tflite"]


def test_artifacts_replace_a_symlink_and_never_write_through_it(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    folder = BuildFolder(tmp_path / "build")
    folder.ensure_writable()
    (folder.root / "model.tflite").symlink_to(outside / "precious")
    (folder.root / "float_model").symlink_to(outside)
    folder.write_bytes("model.tflite", b"int8")
    with folder.new_dir("float_model") as tmp:
        (tmp / "saved_model.pb").write_bytes(b"graph")
    assert (outside / "precious").read_text() == "keep" and sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert not (folder.root / "model.tflite").is_symlink() and not (folder.root / "float_model").is_symlink()


def test_remove_leftovers_takes_temporary_files_and_the_named_ones_only(tmp_path: Path):
    folder = BuildFolder(tmp_path)
    for name in (".model.tflite.abc.tmp", "report.json", "model.tflite", ".ckit.lock"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".float_model.def.tmp").mkdir()
    folder.remove_leftovers(("report.json",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckit.lock", "model.tflite"]


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from compiler_kit.artifacts import BuildFolder
with BuildFolder(Path(sys.argv[1])).locked(print):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_build_of_a_folder_waits_for_the_lock_and_names_the_holder(tmp_path: Path):
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    heard: list[str] = []
    start = time.perf_counter()
    with BuildFolder(tmp_path).locked(heard.append):
        waited = time.perf_counter() - start
    holder.wait()
    assert heard == [f"waiting for another build of {tmp_path} (pid {holder.pid}) to finish ..."]
    assert waited > 0.5  # it really waited for the holder to let go


def test_the_lock_of_a_killed_build_is_free_at_once(tmp_path: Path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path), "60"], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    holder.kill()
    holder.wait()
    heard: list[str] = []
    with BuildFolder(tmp_path).locked(heard.append):
        pass
    assert heard == []


def test_a_build_that_holds_the_folder_too_long_is_named_not_waited_for_forever(tmp_path: Path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path), "60"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with pytest.raises(BadInputError) as caught, BuildFolder(tmp_path).locked(lambda _: None, timeout_s=1.0):
            pass
        message = str(caught.value)
        assert message.startswith(f"{tmp_path}: another build (pid {holder.pid}) has held this build folder")
        assert "fix: wait for it or stop it, or build into another folder (--out)" in message
    finally:
        holder.kill()
        holder.wait()
