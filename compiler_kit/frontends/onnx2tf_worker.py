"""onnx2tf in its own process (`python -m compiler_kit.frontends.onnx2tf_worker ONNX2TF-ARGS...`), stopped once the
SavedModel is written.

onnx2tf 1.29 always goes on to convert the model to float32 and float16 .tflite files. ckit never uses them (its one
quantizer converts the SavedModel), and they cost most of onnx2tf's time: each re-saves the Keras model, and saving
walks every layer's trackable children, which grows faster than the layer count (measured with cProfile on the
legalized PP-OCRv4 text recognizer: 55 of 77 s). In this process only, the TFLite converter's constructors are
replaced by one that ends the run; onnx2tf writes its SavedModel before it ever calls them.
"""

from __future__ import annotations

import contextlib
import sys


class SavedModelWritten(BaseException):
    """Raised where onnx2tf starts its TFLite outputs. A BaseException: onnx2tf catches Exception around the first
    constructor it tries, and must not go on to the next one."""


def _stop(*args: object, **kwargs: object) -> None:
    raise SavedModelWritten


def main(argv: list[str]) -> int:
    import tensorflow as tf
    from onnx2tf.onnx2tf import main as onnx2tf_main

    for constructor in ("from_keras_model", "from_concrete_functions", "from_saved_model"):
        setattr(tf.lite.TFLiteConverter, constructor, _stop)
    sys.argv = ["onnx2tf", *argv]
    # Everything onto stderr, in order: ckit reads that stream as it comes, for the progress of onnx2tf's nodes.
    with contextlib.suppress(SavedModelWritten), contextlib.redirect_stdout(sys.stderr):
        onnx2tf_main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
