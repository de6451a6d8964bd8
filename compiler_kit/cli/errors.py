"""How a command ends: a `CkitError` becomes its exit code and one message on stderr, never a traceback; so does a
full disk met where ckit could not say how much space it needed (compiler_kit.errors.disk_full_as). SIGTERM and
Ctrl-C interrupt a command until its verdict is decided, and are held back from then on (`INTERRUPTS`)."""

from __future__ import annotations

import contextlib
import functools
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, ParamSpec, TypeVar

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


SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupts:
    """SIGTERM (a CI runner cancelling a job) and Ctrl-C end a command as KeyboardInterrupt, so that temporary files
    are removed on the way out, until `decide()`: the verdict is decided (a build's reports are written), and a
    signal from then on is held back. Were it raised, it would surface anywhere on the way out: in Typer and Click
    (turning the verdict into 130, or "Aborted!" and 1), or past main()'s last handler (a KeyboardInterrupt
    traceback, the process killed by SIGINT). Deciding is one assignment that the handler reads: once it is done,
    no signal can raise."""

    def __init__(self) -> None:
        self.decided = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if not self.decided:
            raise KeyboardInterrupt

    def decide(self) -> None:
        self.decided = True

    def install(self) -> dict[int, Any]:
        """Our handler for both signals (not where they are ignored, as for a job started in the background);
        returns the handlers it replaced."""
        self.decided = False
        previous: dict[int, Any] = {signum: signal.getsignal(signum) for signum in SIGNALS}
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(signum, self.handler)
        return previous

    @contextlib.contextmanager
    def during_command(self) -> Iterator[None]:
        """Installed for the block (a command run in-process, by a test or a batch, gets its handlers back)."""
        previous = self.install()
        try:
            yield
        finally:
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)


INTERRUPTS = Interrupts()
