"""A compiled `*_edgetpu.tflite` on an Edge TPU: the LiteRT runner plus the libedgetpu delegate.

The compiled model's Edge TPU part is one `edgetpu-custom-op` that only the delegate can execute (without it the
interpreter fails with "Encountered unresolved custom op"), so there is no CPU fallback: `prepare()` raises
`EdgeTpuUnavailable` naming the missing library or device. I/O (de)quantization and layout are LiteRtRunner's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler_kit.edgetpu.runtime import LIBRARY, load_edgetpu_delegate, runtime_version
from compiler_kit.frontends.base import ModelOutput, Perm
from compiler_kit.runners.litert import LiteRtRunner


class EdgeTpuRunner(LiteRtRunner):
    NAME = "edgetpu"

    def __init__(
        self,
        model_path: Path,
        threads: int,
        device: str = "",
        input_perms: list[Perm] | None = None,
        outputs: list[ModelOutput] | None = None,
        name: str = NAME,
    ) -> None:
        super().__init__(name, model_path, threads, input_perms, outputs)
        self.device = device  # "", ":N", "usb", "usb:N", "pci", "pci:N"

    def _delegates(self) -> list[Any]:
        return [load_edgetpu_delegate(self.device)]

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "delegate": LIBRARY,
            "device": self.device,
            "edgetpu_runtime_version": runtime_version(),
        }
