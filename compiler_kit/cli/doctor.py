"""`ckit doctor`: what this machine has for ckit (frameworks, Edge TPU compiler, runtime, devices), and the fixes.

It only informs, so it always exits 0. It stays fast: versions come from package metadata (no framework is
imported); LiteRT's interpreter module loads only when the Edge TPU library exists and a device must be probed.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from dataclasses import dataclass, field
from typing import Annotated

import typer

COMPILER_FIX = (
    "set CKIT_EDGETPU_COMPILER to the edgetpu_compiler executable, or install edgetpu-compiler from Coral's apt "
    "repository (x86-64 Linux only; elsewhere compile on such a machine)"
)
PYCORAL_FIX = (
    "optional, to list devices and the runtime version: install Google's pycoral from coral.ai (not on PyPI; the "
    "PyPI package named pycoral is an unrelated project)"
)
DEVICE_FIX = "plug in a Coral USB Accelerator (or PCIe/M.2 card) and check its permissions (udev rules)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        text = f"{'OK' if self.ok else 'MISSING':<8} {self.name:<17} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix and not self.ok else text

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, "fix": None if self.ok else self.fix, **self.extra}


def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="Print the checks as one JSON object.")] = False,
) -> None:
    """Check this machine: ckit, Python, every framework, the Edge TPU compiler, runtime, pycoral and devices.

    Prints OK or MISSING per line with the fix; always exits 0.
    """
    checks = [*_versions(), _compiler(), *_edgetpu_runtime()]
    if json_output:
        typer.echo(json.dumps({check.name: check.as_dict() for check in checks}, indent=2))
    else:
        typer.echo("\n".join(check.line() for check in checks))


def _versions() -> list[Check]:
    from compiler_kit import __version__, lazy
    from compiler_kit.report.document import TOOL_DISTRIBUTIONS

    checks = [
        Check("ckit", True, __version__, extra={"version": __version__}),
        Check("python", True, platform.python_version(), extra={"version": platform.python_version()}),
    ]
    for name in TOOL_DISTRIBUTIONS:
        version = lazy.version(name)
        fix = (
            "optional: only used where ai-edge-litert is not installed (pip install tflite-runtime)"
            if name == "tflite-runtime"
            else f"pip install '{_requirement(name)}' (compiler_kit's pin)"
        )
        checks.append(Check(name, version is not None, version or "not installed", fix, {"version": version}))
    return checks


def _requirement(distribution: str) -> str:
    """The requirement compiler_kit declares for a distribution (e.g. torch==2.13.0), else its bare name."""
    for requirement in importlib.metadata.requires("compiler_kit") or []:
        name = re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0]
        if name.lower().replace("_", "-") == distribution:
            return requirement.split(";")[0].strip()
    return distribution


def _compiler() -> Check:
    from compiler_kit.edgetpu.compiler import compiler_version, find_compiler
    from compiler_kit.errors import CkitError

    try:
        path = find_compiler(None)
    except CkitError as exc:  # CKIT_EDGETPU_COMPILER names something that is not an executable
        return Check("edgetpu_compiler", False, str(exc).splitlines()[0], COMPILER_FIX, {"path": None, "version": None})
    if path is None:
        return Check("edgetpu_compiler", False, "not found", COMPILER_FIX, {"path": None, "version": None})
    version = compiler_version(path)
    detail = f"{version or 'version unknown'} at {path}"
    return Check("edgetpu_compiler", True, detail, extra={"path": str(path), "version": version})


def _edgetpu_runtime() -> list[Check]:
    from compiler_kit.edgetpu import runtime

    found, message = runtime.library_status()
    version = runtime.runtime_version()
    library = Check(
        "edgetpu_runtime",
        found,
        f"{message} ({version})" if found and version else message.split(":")[0],
        runtime.INSTALL_RUNTIME,
        {"library": runtime.LIBRARY, "version": version},
    )
    has_pycoral = runtime.pycoral_available()
    pycoral = Check("pycoral", has_pycoral, "importable" if has_pycoral else "not installed", PYCORAL_FIX)
    return [library, pycoral, _devices(found, has_pycoral)]


def _devices(library_found: bool, has_pycoral: bool) -> Check:
    from compiler_kit.edgetpu import runtime

    if not library_found:
        fix = f"install the Edge TPU runtime first (see edgetpu_runtime), then {DEVICE_FIX}"
        return Check("edgetpu_devices", False, "none (the runtime library is missing)", fix, {"devices": []})
    if has_pycoral:
        devices = runtime.list_devices()
        detail = ", ".join(f"{d.get('type', '?')} {d.get('path', '')}".strip() for d in devices) or "none found"
        return Check("edgetpu_devices", bool(devices), detail, DEVICE_FIX, {"devices": devices})
    # Without pycoral nothing enumerates devices: loading the delegate at the first device is the only probe.
    ok, message = runtime.edgetpu_availability("")
    detail = "an Edge TPU answers (found by loading the delegate; pycoral lists them)" if ok else "none found"
    return Check("edgetpu_devices", ok, detail, message, {"devices": []})
