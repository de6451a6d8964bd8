"""The command line itself: fast help, the schema command, the version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from signal import SIGTERM

import pytest
from typer.testing import CliRunner

from compiler_kit import __version__
from compiler_kit.cli import app
from compiler_kit.errors import EXIT_INTERRUPTED
from tests.conftest import WriteRecipe, frameworks_imported_by

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


@pytest.mark.slow
def test_sigterm_after_the_verdict_keeps_the_exit_code(write_recipe: WriteRecipe, tmp_path: Path) -> None:
    """The report's last line is printed, then a CI runner cancels the job: the build already passed (0), it is
    not killed by the signal in the interpreter's teardown (143). The teardown is skipped: the process ends at
    once."""
    command = [sys.executable, "-m", "compiler_kit", "build", str(write_recipe()), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("report: "):  # the last line the build prints
            process.send_signal(SIGTERM)
            break
    process.wait(timeout=60)
    assert process.returncode in (0, EXIT_INTERRUPTED), process.returncode
    assert (tmp_path / "build" / "report.json").is_file()
