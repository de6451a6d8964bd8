"""The stages of `ckit build`, in order; each declared once, in its own module (the contract: base.py).

data -> convert (frontend) -> quantize (the one quantizer) -> edgetpu (compiler or prediction) -> verify (every
runner on the same samples) -> latency -> report. Each stage between data and report is cached by a key of
everything it depends on: a stage whose key has a verified entry is reused, its files installed in the build
folder atomically.
"""

from __future__ import annotations

from typing import Any

from compiler_kit.stages.base import Job, Stage, StageLog
from compiler_kit.stages.convert import CONVERT
from compiler_kit.stages.data import DATA
from compiler_kit.stages.edgetpu import EDGETPU
from compiler_kit.stages.latency import LATENCY
from compiler_kit.stages.quantize import QUANTIZE
from compiler_kit.stages.report import REPORT
from compiler_kit.stages.verify import VERIFY

STAGES: tuple[Stage[Any], ...] = (DATA, CONVERT, QUANTIZE, EDGETPU, VERIFY, LATENCY, REPORT)
STAGE_NAMES = tuple(stage.name for stage in STAGES)

__all__ = ["STAGES", "STAGE_NAMES", "Job", "Stage", "StageLog"]
