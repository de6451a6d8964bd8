"""`ckit doctor`: every framework, the Edge TPU compiler (absent here; a test double stands in for a found one),
the runtime, pycoral and devices, as text and as JSON; always exit 0, never import TensorFlow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler_kit import __version__, lazy
from compiler_kit.cli import app
from compiler_kit.edgetpu import compiler
from compiler_kit.report.document import TOOL_DISTRIBUTIONS
from tests.conftest import frameworks_imported_by

runner = CliRunner()
FAKE_COMPILER = Path("/opt/coral/bin/edgetpu_compiler")


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiler, "find_compiler", lambda configured: None)


@pytest.fixture
def fake_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that is "installed": find_compiler finds it and it reports its version."""
    monkeypatch.setattr(compiler, "find_compiler", lambda configured: FAKE_COMPILER)
    monkeypatch.setattr(
        compiler, "compiler_version", lambda executable: "16.0.384591198" if executable == FAKE_COMPILER else None
    )


def lines_by_check(output: str) -> dict[str, str]:
    return {line.split()[1]: line for line in output.splitlines()}


def test_lists_every_framework_and_python(no_compiler) -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0
    lines = lines_by_check(result.output)
    assert lines["ckit"].startswith("OK") and __version__ in lines["ckit"]
    assert lines["python"].startswith("OK") and f"{sys.version_info.major}.{sys.version_info.minor}" in lines["python"]
    for name in TOOL_DISTRIBUTIONS:
        version = lazy.version(name)
        assert lines[name].startswith("OK" if version else "MISSING"), lines[name]
        if version:
            assert version in lines[name]


def test_missing_compiler_runtime_and_devices_say_what_to_do(no_compiler) -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0  # it only informs
    lines = lines_by_check(result.output)
    compiler_line = lines["edgetpu_compiler"]
    assert compiler_line.startswith("MISSING")
    assert "CKIT_EDGETPU_COMPILER" in compiler_line and "Coral's apt repository" in compiler_line
    assert "x86-64 Linux only" in compiler_line
    assert lines["edgetpu_runtime"].startswith("MISSING") and "libedgetpu1-std" in lines["edgetpu_runtime"]
    assert lines["pycoral"].startswith("MISSING") and "not on PyPI" in lines["pycoral"]
    assert lines["edgetpu_devices"].startswith("MISSING") and "none" in lines["edgetpu_devices"]


def test_missing_framework_names_the_pinned_requirement(no_compiler, monkeypatch: pytest.MonkeyPatch) -> None:
    real_version = lazy.version
    monkeypatch.setattr(lazy, "version", lambda name: None if name == "torch" else real_version(name))
    line = lines_by_check(runner.invoke(app, ["doctor"]).output)["torch"]
    assert line.startswith("MISSING") and "pip install 'torch==" in line


def test_found_compiler_reports_path_and_version(fake_compiler) -> None:
    line = lines_by_check(runner.invoke(app, ["doctor"]).output)["edgetpu_compiler"]
    assert line.startswith("OK") and str(FAKE_COMPILER) in line and "16.0.384591198" in line
    assert "fix" not in line


def test_a_bad_configured_compiler_is_missing_not_a_crash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(compiler.ENV_VAR, str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0
    line = lines_by_check(result.output)["edgetpu_compiler"]
    assert line.startswith("MISSING") and "nowhere" in line and "CKIT_EDGETPU_COMPILER" in line


def test_json_has_every_check(fake_compiler) -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0
    checks = json.loads(result.output)
    expected = {"ckit", "python", *TOOL_DISTRIBUTIONS, "edgetpu_compiler", "edgetpu_runtime", "pycoral"}
    assert set(checks) == expected | {"edgetpu_devices"}
    assert all({"ok", "detail", "fix"} <= set(check) for check in checks.values())
    assert checks["edgetpu_compiler"] == {
        "ok": True,
        "detail": f"16.0.384591198 at {FAKE_COMPILER}",
        "fix": None,
        "path": str(FAKE_COMPILER),
        "version": "16.0.384591198",
    }
    assert checks["numpy"]["version"] == lazy.version("numpy")
    runtime = checks["edgetpu_runtime"]
    assert runtime["ok"] is False and runtime["library"].startswith(("libedgetpu", "edgetpu")) and runtime["fix"]
    assert checks["edgetpu_devices"]["devices"] == []


def test_doctor_never_imports_a_framework() -> None:
    assert frameworks_imported_by(["doctor"], ["doctor", "--json"]) == []
