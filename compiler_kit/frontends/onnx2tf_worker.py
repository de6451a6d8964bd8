"""onnx2tf in its own process (`python -m compiler_kit.frontends.onnx2tf_worker OUT_DIR ONNX2TF-ARGS...`), stopped
once the SavedModel is written to OUT_DIR, whose serving signature's shapes it then writes to OUT_DIR/SHAPES_FILE.

onnx2tf 1.29 always goes on to convert the model to float32 and float16 .tflite files. ckit never uses them (its one
quantizer converts the SavedModel), and they cost most of onnx2tf's time: each re-saves the Keras model, and saving
walks every layer's trackable children, which grows faster than the layer count (measured with cProfile on the
legalized PP-OCRv4 text recognizer: 55 of 77 s). In this process only, the TFLite converter's constructors are
replaced by one that ends the run; onnx2tf writes its SavedModel before it ever calls them.

The shapes are read here, where TensorFlow is loaded already, from the SavedModel's signature (no model loaded):
the converting process then needs no TensorFlow of its own, whose import cost it seconds and hundreds of MB.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

SHAPES_FILE = "signature_shapes.json"
SIGNATURE_KEY = "serving_default"


class SavedModelWritten(BaseException):
    """Raised where onnx2tf starts its TFLite outputs. A BaseException: onnx2tf catches Exception around the first
    constructor it tries, and must not go on to the next one."""


def _stop(*args: object, **kwargs: object) -> None:
    raise SavedModelWritten


def signature_shapes(saved_model_dir: Path) -> dict[str, Any]:
    """The serving signature's input shapes (by name; recipes have one input) and output shapes by key, None
    where a dimension is unknown, from saved_model.pb's SignatureDef."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    signature = saved.meta_graphs[0].signature_def[SIGNATURE_KEY]

    def shape(info: Any) -> list[int | None] | None:
        dims = info.tensor_shape
        return None if dims.unknown_rank else [d.size if d.size >= 0 else None for d in dims.dim]

    return {
        "inputs": [shape(info) for _, info in sorted(signature.inputs.items())],
        "outputs": {key: shape(info) for key, info in signature.outputs.items()},
    }


def main(argv: list[str]) -> int:
    import tensorflow as tf
    from onnx2tf.onnx2tf import main as onnx2tf_main

    out_dir = Path(argv[0])
    for constructor in ("from_keras_model", "from_concrete_functions", "from_saved_model"):
        setattr(tf.lite.TFLiteConverter, constructor, _stop)
    sys.argv = ["onnx2tf", "-o", str(out_dir), *argv[1:]]
    # Everything onto stderr, in order: ckit reads that stream as it comes, for the progress of onnx2tf's nodes.
    with contextlib.suppress(SavedModelWritten), contextlib.redirect_stdout(sys.stderr):
        onnx2tf_main()
    if (out_dir / "saved_model.pb").exists():  # else onnx2tf failed; its log says why
        (out_dir / SHAPES_FILE).write_text(json.dumps(signature_shapes(out_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
