"""The command line itself: fast help, the schema command, the version."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from compiler_kit import __version__
from compiler_kit.cli import app
from tests.conftest import frameworks_imported_by

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "build" in result.output and "schema" in result.output


def test_help_and_schema_never_import_a_framework() -> None:
    assert frameworks_imported_by(["--help"], ["build", "--help"], ["schema"]) == []


def test_schema_is_json_schema_of_the_recipe() -> None:
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    assert schema["title"] == "Recipe"
    assert {"name", "source", "inputs", "calibration", "quantization", "verify", "gates", "output"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
