"""Runners: one module per backend, one contract (see base.py)."""

from compiler_kit.runners.base import Runner
from compiler_kit.runners.keras import KerasRunner
from compiler_kit.runners.litert import LiteRtRunner

# The runner that executes a source model, by the recipe's source.framework.
SOURCE_RUNNERS: dict[str, type[Runner]] = {"keras": KerasRunner}

__all__ = ["SOURCE_RUNNERS", "KerasRunner", "LiteRtRunner", "Runner"]
