"""How a command ends: a `CkitError` becomes its exit code and one message on stderr, never a traceback; so does a
full disk met where ckit could not say how much space it needed (compiler_kit.errors.disk_full_as)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from compiler_kit.errors import (
    EXIT_BAD_INPUT,
    FREE_SPACE,
    NO_SPACE,
    BadInputError,
    CkitError,
    DiskFullError,
    full_folder,
    is_disk_full,
)

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
            if not is_disk_full(exc):
                raise
            folder = full_folder(exc)
            unknown = f"{NO_SPACE} (in the build folder or the stage cache); no half-written artifact was left"
            error = DiskFullError(folder, "the build", None) if folder else BadInputError(unknown, fix=FREE_SPACE)
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return run
