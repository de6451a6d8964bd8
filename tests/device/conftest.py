"""The device's Python for agent tests: `.venv-device` (make device-venv: tflite-runtime 2.14.0 and numpy 1.x,
what boards install), skipped with the command to run when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ssh_device import DEVICE_PYTHON


@pytest.fixture(scope="session")
def device_python() -> Path:
    if not DEVICE_PYTHON.exists():
        pytest.skip(f"no device virtual environment at {DEVICE_PYTHON.parent.parent}: run `make device-venv`")
    return DEVICE_PYTHON
