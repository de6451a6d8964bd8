"""The Edge TPU runtime: `libedgetpu` loaded as a TFLite external delegate, and Google's pycoral when present.

Neither ships on PyPI (the PyPI package named `pycoral` is an unrelated project), so both are optional and only
ever probed: `library_status()` says whether the runtime library loads, `load_edgetpu_delegate()` whether an Edge
TPU answers at a device string. Without pycoral, devices cannot be enumerated; loading the delegate is the probe.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
from collections.abc import Callable
from types import ModuleType
from typing import Any

from compiler_kit.errors import ToolMissingError

LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
LIBRARY = LIBRARIES.get(platform.system(), LIBRARIES["Linux"])
DEVICE_FORMS = "'' (first found), ':N', 'usb', 'usb:N', 'pci', 'pci:N'"
INSTALL_RUNTIME = (
    "install the Edge TPU runtime (Coral's libedgetpu1-std package from Coral's apt repository on Linux; "
    "the edgetpu_runtime installer from coral.ai on macOS and Windows)"
)


class EdgeTpuUnavailable(ToolMissingError):
    """No Edge TPU to run on; `reason` says which part is missing: the runtime library, or a device."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def library_status() -> tuple[bool, str]:
    """Whether the runtime library loads here, and a message saying so (with the fix when it does not)."""
    try:
        ctypes.CDLL(LIBRARY)
    except OSError as exc:
        return False, f"{LIBRARY} not found: {INSTALL_RUNTIME} ({exc})"
    return True, f"{LIBRARY} found"


def load_edgetpu_delegate(device: str) -> Any:
    """The Edge TPU delegate for `device` (see DEVICE_FORMS), for `Interpreter(experimental_delegates=[...])`."""
    found, message = library_status()
    if not found:
        raise EdgeTpuUnavailable(message)
    try:
        load_delegate = _delegate_loader()
    except ImportError as exc:
        raise EdgeTpuUnavailable(f"neither ai-edge-litert nor tflite-runtime is installed to load {LIBRARY}") from exc
    try:
        return load_delegate(LIBRARY, {"device": device} if device else {})
    except OSError as exc:  # LiteRT opens the library itself; a missing one is an OSError there, not a ValueError
        raise EdgeTpuUnavailable(f"{LIBRARY} could not be loaded ({exc}): {INSTALL_RUNTIME}") from exc
    except ValueError as exc:
        # The library loaded, so "Failed to load delegate" means no Edge TPU answered at this device string.
        where = f"at device {device!r}" if device else "(device '' = the first one found)"
        raise EdgeTpuUnavailable(
            f"{LIBRARY} loaded but no Edge TPU device {where} answered: plug in the Coral USB Accelerator or "
            f"PCIe/M.2 card, check its permissions (udev rules) and the device string ({DEVICE_FORMS})"
        ) from exc


def edgetpu_availability(device: str) -> tuple[bool, str]:
    """Whether an Edge TPU runs here at `device`, and why not; loads (then releases) the delegate to find out."""
    try:
        load_edgetpu_delegate(device)
    except EdgeTpuUnavailable as exc:
        return False, exc.reason
    return True, f"an Edge TPU answers at device {device!r}"


def list_devices() -> list[dict[str, str]]:
    """Edge TPUs as pycoral lists them ([{"type": "usb", "path": ...}]); [] without pycoral, which alone can
    enumerate them: then load the delegate (edgetpu_availability) to learn whether one is there."""
    edgetpu = _pycoral_edgetpu()
    return [dict(device) for device in edgetpu.list_edge_tpus()] if edgetpu else []


def runtime_version() -> str | None:
    """The runtime's own version string via pycoral; None without pycoral (libedgetpu has no other query)."""
    edgetpu = _pycoral_edgetpu()
    return str(edgetpu.get_runtime_version()) if edgetpu else None


def pycoral_available() -> bool:
    return _pycoral_edgetpu() is not None


def _pycoral_edgetpu() -> ModuleType | None:
    # Google's pycoral only (the unrelated PyPI `pycoral` has no pycoral.utils.edgetpu); imported by name, as nothing
    # here installs it or its types
    try:
        return importlib.import_module("pycoral.utils.edgetpu")
    except ImportError:
        return None


def _delegate_loader() -> Callable[..., Any]:
    # Same preference as lazy.litert_interpreter(): a delegate must come from the interpreter's own runtime.
    try:
        from ai_edge_litert.interpreter import load_delegate
    except ImportError:
        from tflite_runtime.interpreter import load_delegate
    return load_delegate
