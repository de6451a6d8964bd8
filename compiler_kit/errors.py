"""Errors that end a command with a stable exit code (documented in the README).

0 success · 1 internal error (a bug) · 2 bad input · 3 a gate failed · 4 a required tool or device is missing ·
130 interrupted (Ctrl-C or SIGTERM; the build folder keeps only complete artifacts).
Anything raised that is not a `CkitError` is a bug and exits 1 with its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_TOOL_MISSING = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class CkitError(Exception):
    """An expected failure: one clear message for the user, no traceback."""

    exit_code = EXIT_INTERNAL


class BadInputError(CkitError):
    """The recipe, the model or the data is wrong; the message names the file, the field and the fix."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, path: Path | str | None = None, fix: str | None = None) -> None:
        text = f"{path}: {message}" if path is not None else message
        if fix:
            text = f"{text}\n  fix: {fix}"
        super().__init__(text)


NO_SPACE = "No space left on device"
FREE_SPACE = "free some space there, or build into another folder (--out) or stage cache (--cache-dir)"


class DiskFullError(BadInputError):
    """The disk filled up: the message names the folder, the space the write needed (when known) and the space free
    there. Every write of ckit is atomic, so nothing half-written is left."""

    def __init__(self, folder: Path, what: str, needed_bytes: int | None, *, at_least: bool = False) -> None:
        need = f"{'more than ' if at_least else ''}{_size(needed_bytes)}" if needed_bytes is not None else None
        free = _size(shutil.disk_usage(folder).free)
        needs = f"{what} needs {need} there, {free} free" if need else f"{free} free there"
        super().__init__(f"{NO_SPACE}: {needs}; no half-written artifact was left", path=folder, fix=FREE_SPACE)


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{count / 2**10:.0f} KB"


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it, outermost first (TensorFlow and shutil wrap the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_disk_full(exc: BaseException) -> bool:
    """Whichever library met it: Python's ENOSPC, shutil's list of them, TensorFlow's own errors."""
    return any(
        (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or NO_SPACE in str(cause)
        for cause in exception_chain(exc)
    )


def full_folder(exc: BaseException) -> Path | None:
    """The nearest existing folder of the file whose write filled the disk (a failed write removed its own
    temporary folders), when the error names one."""
    paths = [str(cause.filename) for cause in exception_chain(exc) if isinstance(cause, OSError) and cause.filename]
    paths += re.findall(r"-> '([^']+)'", str(exc))  # shutil.copytree's list: (source, destination, why)
    for path in paths:
        if folder := next((p for p in Path(path).parents if p.is_dir() and p != Path("/")), None):
            return folder
    return None


@contextlib.contextmanager
def disk_full_as(folder: Path, what: str, needed: Callable[[], int], *, at_least: bool = False) -> Iterator[None]:
    """A full disk met inside the block becomes a DiskFullError: in `folder` (or the folder the error names), with
    `needed()` bytes when that folder is on `folder`'s file system (else the need is unknown)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        where = full_folder(exc) or folder
        known = os.stat(where).st_dev == os.stat(folder).st_dev
        raise DiskFullError(where, what, needed() if known else None, at_least=at_least) from exc


def tree_bytes(path: Path) -> int:
    """The bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def broken_symlink(path: Path, fix: str) -> BadInputError | None:
    """The error for a symbolic link that cannot be followed (to nothing, or round in a loop); None otherwise."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        return BadInputError("is a symbolic link to nothing", path=path, fix=fix)
    except (RuntimeError, OSError) as exc:  # a loop: RuntimeError up to Python 3.12, OSError ELOOP after
        if isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
            return BadInputError("is a symbolic link that loops", path=path, fix=fix)
        return BadInputError(f"is a symbolic link that cannot be followed ({exc.strerror})", path=path, fix=fix)
    return None


class ToolMissingError(CkitError):
    """A tool or device the recipe requires is not on this machine."""

    exit_code = EXIT_TOOL_MISSING


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    """Tools such as onnx2tf and torch.onnx colour their messages; a log file or a CI page should not."""
    return _ANSI.sub("", text)


def describe_exception(exc: BaseException, *, last_line: bool = False, limit: int = 300) -> str:
    """`Type: first line` of a framework's exception (its last line where the verdict comes last), for a message."""
    lines = strip_ansi(str(exc)).strip().splitlines()
    line = (lines[-1] if last_line else lines[0]) if lines else ""
    return f"{type(exc).__name__}: {line[:limit]}" if line else type(exc).__name__
