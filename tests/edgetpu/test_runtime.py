"""Edge TPU runtime probing and the Edge TPU runner. No libedgetpu, pycoral or device exists on this machine, so
the "present" cases stand the library (ctypes.CDLL), the delegate loader or pycoral in with test doubles."""

from __future__ import annotations

import ctypes
import platform
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from compiler_kit import lazy
from compiler_kit.edgetpu import runtime
from compiler_kit.edgetpu.runtime import EdgeTpuUnavailable
from compiler_kit.errors import EXIT_TOOL_MISSING
from compiler_kit.runners.edgetpu import EdgeTpuRunner

REAL_CDLL = ctypes.CDLL


@pytest.fixture
def library_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """ctypes finds libedgetpu (every other library still loads for real)."""

    def cdll(name: str, *args: Any, **kwargs: Any) -> Any:
        return object() if name == runtime.LIBRARY else REAL_CDLL(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)


@pytest.fixture
def loader_calls(library_present: None, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """A delegate loader that fails as LiteRT does when no Edge TPU answers; records its arguments."""
    calls: list[tuple[str, dict[str, str]]] = []

    def load_delegate(library: str, options: dict[str, str] | None = None) -> Any:
        calls.append((library, options or {}))
        raise ValueError(f"Failed to load delegate from {library}\n")

    monkeypatch.setattr(runtime, "_delegate_loader", lambda: load_delegate)
    return calls


@pytest.fixture
def fake_pycoral(monkeypatch: pytest.MonkeyPatch) -> None:
    """Google's pycoral.utils.edgetpu, with one USB Edge TPU."""
    edgetpu = types.ModuleType("pycoral.utils.edgetpu")
    edgetpu.list_edge_tpus = lambda: [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}]  # type: ignore[attr-defined]
    edgetpu.get_runtime_version = lambda: "BuildLabel(COMPILER=6.3.0), RuntimeVersion(14)"  # type: ignore[attr-defined]
    utils = types.ModuleType("pycoral.utils")
    utils.edgetpu = edgetpu  # type: ignore[attr-defined]
    package = types.ModuleType("pycoral")
    package.utils = utils  # type: ignore[attr-defined]
    for name, module in {"pycoral": package, "pycoral.utils": utils, "pycoral.utils.edgetpu": edgetpu}.items():
        monkeypatch.setitem(sys.modules, name, module)


def recording_interpreter(made: dict[str, Any]) -> type:
    """An interpreter class that records its constructor's arguments into `made` and has no tensors."""

    class Interpreter:
        def __init__(self, **kwargs: Any) -> None:
            made.update(kwargs)

        def allocate_tensors(self) -> None: ...

        def get_input_details(self) -> list[Any]:
            return []

        def get_output_details(self) -> list[Any]:
            return []

        def get_signature_list(self) -> dict[str, Any]:
            return {}

    return Interpreter


def test_library_name_per_platform() -> None:
    assert runtime.LIBRARIES == {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
    assert runtime.LIBRARIES[platform.system()] == runtime.LIBRARY


def test_missing_library_is_reported_with_the_fix() -> None:
    found, message = runtime.library_status()
    assert not found
    assert message.startswith(f"{runtime.LIBRARY} not found") and "libedgetpu1-std" in message
    ok, reason = runtime.edgetpu_availability("usb:0")
    assert not ok and "libedgetpu" in reason


def test_missing_library_raises_edgetpu_unavailable_not_value_error() -> None:
    with pytest.raises(EdgeTpuUnavailable) as caught:
        runtime.load_edgetpu_delegate("usb:0")
    assert not isinstance(caught.value, ValueError)
    assert "libedgetpu" in caught.value.reason and "not found" in caught.value.reason
    assert caught.value.exit_code == EXIT_TOOL_MISSING  # a CkitError: the CLI exits 4 with the reason


def test_library_present_but_no_device_names_the_device(loader_calls) -> None:
    assert runtime.library_status()[0]
    with pytest.raises(EdgeTpuUnavailable) as caught:
        runtime.load_edgetpu_delegate("usb:1")
    assert "'usb:1'" in caught.value.reason and "device" in caught.value.reason
    assert "not found" not in caught.value.reason  # the library is there: only the device is missing
    assert isinstance(caught.value.__cause__, ValueError)
    ok, reason = runtime.edgetpu_availability("pci:0")
    assert not ok and "'pci:0'" in reason


def test_device_string_becomes_the_delegate_option(loader_calls) -> None:
    for device in ("usb:0", ""):
        assert not runtime.edgetpu_availability(device)[0]
    assert loader_calls == [(runtime.LIBRARY, {"device": "usb:0"}), (runtime.LIBRARY, {})]


def test_delegate_that_loads_is_returned(library_present, monkeypatch: pytest.MonkeyPatch) -> None:
    delegate = object()
    monkeypatch.setattr(runtime, "_delegate_loader", lambda: lambda library, options: delegate)
    assert runtime.load_edgetpu_delegate("usb") is delegate
    assert runtime.edgetpu_availability("usb") == (True, "an Edge TPU answers at device 'usb'")


# LiteRT's Delegate.__del__ trips over the half-built delegate (no `_library`): noise from LiteRT, not from us.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_real_litert_loader_failing_to_open_the_library_is_unavailable(library_present) -> None:
    # ctypes is fooled, LiteRT's own loader is not: it raises OSError, which must not escape either.
    with pytest.raises(EdgeTpuUnavailable, match="libedgetpu"):
        runtime.load_edgetpu_delegate("usb:0")


def test_without_pycoral_no_devices_and_no_version() -> None:
    assert not runtime.pycoral_available()
    assert runtime.list_devices() == []
    assert runtime.runtime_version() is None


def test_with_pycoral_devices_and_version(fake_pycoral) -> None:
    assert runtime.pycoral_available()
    assert runtime.list_devices() == [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}]
    assert runtime.runtime_version() == "BuildLabel(COMPILER=6.3.0), RuntimeVersion(14)"


def test_runner_prepare_without_the_library_raises_unavailable(tmp_path: Path) -> None:
    model = tmp_path / "model_int8_edgetpu.tflite"
    model.write_bytes(b"not read: the delegate is loaded first")
    runner = EdgeTpuRunner(model, threads=1, device="usb:0")
    assert runner.name == "edgetpu"
    with pytest.raises(EdgeTpuUnavailable, match="libedgetpu"):
        runner.prepare()


def test_runner_prepare_without_a_device_names_it(loader_calls, tmp_path: Path) -> None:
    runner = EdgeTpuRunner(tmp_path / "model_edgetpu.tflite", threads=1, device="pci:0")
    with pytest.raises(EdgeTpuUnavailable, match="'pci:0'"):
        runner.prepare()


def test_runner_hands_the_delegate_to_the_interpreter(
    library_present, fake_pycoral, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    delegate, made = object(), {}
    monkeypatch.setattr(lazy, "litert_interpreter", lambda: (recording_interpreter(made), "ai-edge-litert"))
    monkeypatch.setattr(runtime, "_delegate_loader", lambda: lambda library, options: delegate)
    model = tmp_path / "model_edgetpu.tflite"
    runner = EdgeTpuRunner(model, threads=2, device="usb:0")
    runner.prepare()
    assert made == {"model_path": str(model), "num_threads": 2, "experimental_delegates": [delegate]}
    described = runner.describe()
    assert described["device"] == "usb:0" and described["delegate"] == runtime.LIBRARY
    assert described["edgetpu_runtime_version"] == "BuildLabel(COMPILER=6.3.0), RuntimeVersion(14)"
    assert described["runtime"] == "ai-edge-litert"


def test_litert_runner_still_runs_without_delegates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from compiler_kit.runners.litert import LiteRtRunner

    made: dict[str, Any] = {}
    monkeypatch.setattr(lazy, "litert_interpreter", lambda: (recording_interpreter(made), "ai-edge-litert"))
    LiteRtRunner("tflite-int8", tmp_path / "m.tflite", threads=1).prepare()
    assert made["experimental_delegates"] is None  # exactly the interpreter's default: the CPU
