"""Tiny Keras models made into TFLite for tests: float, or full-integer int8 (TFLITE_BUILTINS_INT8 only, as the
Edge TPU needs), calibrated on seeded uniform noise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def keras_tflite(model: Any, shape: list[int], path: Path, *, quantize: bool = True, io_type: str = "int8") -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(8))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io_type)
    path.write_bytes(converter.convert())
    return path
