"""Every way ckit refuses bad input (exit 2) tells the user what to do: each BadInputError in the package is raised
with a fix. Read from the source, so a new error without one fails here, not in a user's terminal."""

from __future__ import annotations

import ast
from pathlib import Path

import compiler_kit
from compiler_kit.errors import BadInputError

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
