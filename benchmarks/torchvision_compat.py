"""Import torchvision's model architectures under the venv's CPU-only torch, for benchmarks only.

The problem: the torchvision 0.28.0 wheel served by the package index is the CUDA build (``0.28.0+cu130``). Its
compiled extension ``torchvision/_C.so`` links against ``libc10_cuda.so`` and ``libtorch_cuda.so``, which the CPU
build of torch 2.13.0 does not ship, so ``torchvision/extension.py`` fails to load it. That failure is tolerated:
``extension._has_ops()`` returns False and the ``torchvision::*`` operator schemas that ``_C.so`` would have defined
(nms, qnms, roi_align, roi_pool, ps_roi_align, ps_roi_pool, deform_conv2d, ...) simply never exist. Most of
torchvision guards on ``_has_ops()`` (``register_meta`` in ``_meta_registrations.py``, every registration in
``_autograd_registrations.py``, every op wrapper in ``torchvision/ops``), but ``_meta_registrations.py`` also runs
``@torch.library.register_fake("torchvision::nms")`` and ``("torchvision::qnms")`` unguarded at import time. Registering
a fake kernel needs the operator to exist, so ``import torchvision`` (and with it ``torchvision.models``) dies with
"RuntimeError: operator torchvision::nms does not exist".

The workaround: before the first import, define exactly those two schemas, with the signature ``_C.so`` declares,
``(Tensor dets, Tensor scores, float iou_threshold) -> Tensor``, through ``torch.library.define``. No kernel is
attached: the import-time ``register_fake`` then succeeds, and nothing else changes. ``torchvision.ops.nms`` still
refuses to run (``_assert_has_ops`` raises), and calling ``torch.ops.torchvision.nms`` directly raises
NotImplementedError for the CPU backend, so no detection op can silently return garbage. The classification
architectures used by the benchmarks (resnet, mobilenet, efficientnet, ...) are built purely from ``torch.nn`` and need
none of these ops, so they construct, run and export to ONNX normally.

Benchmark-only: torchvision is not a dependency of compiler_kit and must never enter the project's venv (pip would
also try to replace torch). :func:`ensure_torchvision` installs it with ``pip install --no-deps --target`` into a cache
directory outside the repo and the venv, and :func:`import_torchvision_models` puts that directory on ``sys.path``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

TORCHVISION_VERSION = "0.28.0"  # the release paired with torch 2.13
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "ckit-corpus" / f"torchvision-{TORCHVISION_VERSION}"

# The ops that torchvision/_meta_registrations.py registers fake kernels for without checking _has_ops() first.
# Schemas copied from the ones torchvision's _C.so declares, so the fake kernels' signatures match.
_UNGUARDED_OPS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _installed(cache_dir: Path) -> bool:
    """True when cache_dir holds this exact torchvision release (a partial or other-version install does not count)."""
    dist_info = cache_dir / f"torchvision-{TORCHVISION_VERSION}.dist-info"
    return (cache_dir / "torchvision" / "__init__.py").is_file() and (dist_info / "RECORD").is_file()


def ensure_torchvision(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Install torchvision into cache_dir unless already there; return the directory to put on sys.path."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    if _installed(cache_dir):
        return cache_dir
    # --no-deps: its dependencies (torch, numpy, pillow) are already in the venv, and pip must never swap torch.
    # --target: keeps it out of the venv's site-packages; --upgrade replaces a half-finished earlier attempt.
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--no-input"]
    command += ["--target", str(cache_dir), f"torchvision=={TORCHVISION_VERSION}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not _installed(cache_dir):
        details = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(
            f"torchvision=={TORCHVISION_VERSION} is not in {cache_dir} and could not be installed there "
            f"(offline, or the package index does not serve that version). Ran: {' '.join(command)}\n"
            + "\n".join(details)
        )
    return cache_dir


def _define_missing_op_schemas() -> None:
    """Define the schemas _C.so would have defined, but only the ones torchvision's import needs, and only once."""
    for name, schema in _UNGUARDED_OPS.items():
        # hasattr is False when neither a loaded _C.so nor an earlier call defined the op; redefining would raise.
        if not hasattr(torch.ops.torchvision, name):
            torch.library.define(f"torchvision::{name}", schema)


def import_torchvision_models(cache_dir: Path = DEFAULT_CACHE_DIR) -> ModuleType:
    """Return torchvision.models from the torchvision installed in cache_dir, importable under CPU-only torch."""
    path = str(ensure_torchvision(cache_dir))
    if path not in sys.path:
        # First on the path, so this copy wins over any other torchvision a developer might have lying around.
        sys.path.insert(0, path)
    _define_missing_op_schemas()
    return importlib.import_module("torchvision.models")
