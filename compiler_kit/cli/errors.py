"""How a command ends: a `CkitError` becomes its exit code and one message on stderr, never a traceback; so does a
full disk, whichever library met it (Python's ENOSPC, shutil's list of them, TensorFlow's own errors)."""

from __future__ import annotations

import errno
import functools
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer

from compiler_kit.errors import EXIT_BAD_INPUT, CkitError

P = ParamSpec("P")
R = TypeVar("R")


def exits_cleanly(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CkitError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if not _disk_full(exc):
                raise
            typer.echo(f"error: {_disk_full_message(exc)}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run


_NO_SPACE = "No space left on device"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _disk_full(exc: Exception) -> bool:
    return any(
        (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or _NO_SPACE in str(cause)
        for cause in _causes(exc)
    )


def _existing_folder(path: Path) -> Path | None:
    """The nearest folder of `path` that still exists (a failed write removed its own temporary folders)."""
    return next((parent for parent in path.parents if parent.is_dir() and parent != Path("/")), None)


def _disk_full_message(exc: Exception) -> str:
    """Where the disk is full and how much is free there (atomic writes left no half-written artifact)."""
    paths = [cause.filename for cause in _causes(exc) if isinstance(cause, OSError) and cause.filename]
    paths += re.findall(r"-> '([^']+)'", str(exc))  # shutil.copytree's list: (source, destination, why)
    where = next((folder for path in paths if (folder := _existing_folder(Path(str(path))))), None)
    if where is None:
        return (
            f"{_NO_SPACE} (in the build folder or the stage cache): free some space, or build into another folder "
            "(--out) or cache (--cache-dir); no half-written artifact was left"
        )
    free_mb = shutil.disk_usage(where).free / 2**20
    return (
        f"{where}: {_NO_SPACE} ({free_mb:.1f} MB free there); no half-written artifact was left\n"
        "  fix: free some space there, or build into another folder (--out) or stage cache (--cache-dir)"
    )
