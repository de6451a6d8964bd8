"""Heavy frameworks, imported only by the code that needs them, so `ckit --help` and `ckit schema` stay fast."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any


def tensorflow(threads: int | None = None) -> ModuleType:
    """Import TensorFlow quietly; the first caller may fix its CPU thread count (later calls cannot change it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    first_import = "tensorflow" not in sys.modules
    import tensorflow as tf

    if first_import and threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def keras() -> ModuleType:
    tensorflow()
    import keras

    return keras


def litert_interpreter() -> tuple[type, str]:
    """The TFLite interpreter class and its runtime's name: LiteRT when installed, else tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter  # edge devices often have only this

        return Interpreter, "tflite-runtime"


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def native_output_to(log_path: Path) -> Iterator[Any]:
    """Send what native code (the TFLite converter, TF's C++ logging) prints on stdout/stderr to a log file.

    Those lines bypass Python's streams, so only the file descriptors can be redirected.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
