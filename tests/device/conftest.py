"""The device's Python for agent tests: `.venv-device` (make device-venv: tflite-runtime 2.14.0 and numpy 1.x,
what boards install) and a Coral-era one (Python 3.7, tflite-runtime 2.7.0), each skipped with the command to run
when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ssh_device import DEVICE_PYTHON, REPO

LEGACY_PYTHON = REPO / ".venv-device-py37" / "bin" / "python"


@pytest.fixture(scope="session")
def device_python() -> Path:
    if not DEVICE_PYTHON.exists():
        pytest.skip(f"no device virtual environment at {DEVICE_PYTHON.parent.parent}: run `make device-venv`")
    return DEVICE_PYTHON


@pytest.fixture(scope="session")
def legacy_device_python() -> Path:
    """A Coral-era board's Python: 3.7 with tflite-runtime 2.7.0 (`make device-venv-legacy`, where a Python 3.7
    exists)."""
    if not LEGACY_PYTHON.exists():
        pytest.skip(f"no Python 3.7 device at {LEGACY_PYTHON.parent.parent}: run `make device-venv-legacy`")
    return LEGACY_PYTHON
