"""Errors that end a command with a stable exit code (documented in the README).

0 success · 1 internal error (a bug) · 2 bad input · 3 a gate failed · 4 a required tool or device is missing ·
130 interrupted (Ctrl-C or SIGTERM; the build folder keeps only complete artifacts).
Anything raised that is not a `CkitError` is a bug and exits 1 with its traceback.
"""

from __future__ import annotations

import re
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
