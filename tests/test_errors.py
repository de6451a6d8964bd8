"""Every way ckit refuses bad input (exit 2) tells the user what to do: each BadInputError in the package is raised
with a fix. Read from the source, so a new error without one fails here, not in a user's terminal."""

from __future__ import annotations

import ast
import errno
import re
import shutil
from pathlib import Path

import pytest

import compiler_kit
from compiler_kit.errors import BadInputError, DiskFullError, disk_full_as, full_folder, is_disk_full

PACKAGE = Path(compiler_kit.__file__).parent


def bad_input_errors_without_a_fix() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            called = isinstance(node, ast.Call) and getattr(node.func, "id", None) == BadInputError.__name__
            if called and not any(keyword.arg in ("fix", None) for keyword in node.keywords):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_every_bad_input_error_carries_a_fix() -> None:
    assert bad_input_errors_without_a_fix() == []


def test_the_message_names_the_file_then_the_fix() -> None:
    error = BadInputError("not a model", path=Path("m.onnx"), fix="export it again")
    assert str(error) == "m.onnx: not a model\n  fix: export it again"
    assert error.exit_code == 2


def _raised_from(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as chained:
        return chained


def test_a_full_disk_is_found_through_wrapping_libraries(tmp_path: Path) -> None:
    enospc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "gone" / "variables.data"))
    assert is_disk_full(_raised_from(enospc, RuntimeError("saving failed")))
    assert is_disk_full(RuntimeError("ResourceExhaustedError: ...; No space left on device"))  # TensorFlow's text
    assert not is_disk_full(_raised_from(OSError(errno.EACCES, "Permission denied"), RuntimeError("x")))
    assert full_folder(_raised_from(enospc, RuntimeError("saving failed"))) == tmp_path  # `gone` was removed
    target = tmp_path / "b" / "c"  # copytree's list of (source, destination, str(OSError with both names))
    copied = shutil.Error([("a", str(target), f"[Errno 28] No space left on device: 'a' -> '{target}'")])
    assert full_folder(copied) == tmp_path


def test_disk_full_as_names_the_need_only_on_the_same_file_system(tmp_path: Path) -> None:
    with pytest.raises(DiskFullError) as raised, disk_full_as(tmp_path, "writing x", lambda: 3 << 20):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
    assert re.match(
        rf"{tmp_path}: No space left on device: writing x needs 3\.0 MB there, [\d.]+ [KM]B free", str(raised.value)
    )
    with pytest.raises(DiskFullError) as raised, disk_full_as(tmp_path, "writing x", lambda: 1):
        raise OSError(errno.ENOSPC, "No space left on device", "/proc/x")  # another file system: need unknown
    assert "needs" not in str(raised.value) and str(raised.value).startswith("/proc: No space left on device: ")
    with pytest.raises(ValueError), disk_full_as(tmp_path, "writing x", lambda: 1):
        raise ValueError("not a full disk: passes through")
