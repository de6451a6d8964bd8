"""The one quantizer: a float SavedModel -> a float .tflite and a full-integer int8 .tflite.

Full-integer post-training quantization with a representative data set, as the Edge TPU requires: every op is
restricted to the int8 builtins (the converter fails rather than leave a float op behind), and the model's
input and output tensors take the recipe's type (int8 by default).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.frontends import FloatModel
from compiler_kit.ranges import with_ranges
from compiler_kit.recipe import Quantization

# Tensors of these types may appear inside a full-integer model (int32 holds biases, int64 shape arguments).
_INTEGER_TYPES = frozenset({np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_})


class Int8Quantizer:
    def __init__(self, section: Quantization) -> None:
        self.section = section

    def float_tflite(self, model: FloatModel) -> bytes:
        return self._convert(self._converter(model), "float")

    def int8_tflite(
        self, model: FloatModel, calibration: Iterable[np.ndarray], method: str = "min-max", percentile: float = 99.99
    ) -> bytes:
        """The full-integer model, its activation ranges by `method`: the converter's min-max, or one of
        compiler_kit.ranges' (the converter calibrates only, the ranges are chosen, its quantizer finishes)."""
        tf = lazy.tensorflow()
        converter = self._converter(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([model.to_model_layout(sample)] for sample in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        input_type, output_type = tf.as_dtype(self.section.input_type), tf.as_dtype(self.section.output_type)
        converter.inference_input_type, converter.inference_output_type = input_type, output_type
        # The only switch the converter offers for per-tensor weights is this private attribute.
        converter._experimental_disable_per_channel = per_tensor = self.section.granularity == "per-tensor"
        if method == "min-max":
            model_bytes = self._convert(converter, "int8")
        else:
            converter._experimental_calibrate_only = True  # a float model whose activations carry min and max
            samples = (model.to_model_layout(sample) for sample in calibration)
            calibrated = with_ranges(self._convert(converter, "calibrated"), samples, method, percentile)
            model_bytes = self._quantize(calibrated, per_tensor, input_type, output_type)
        check_full_integer(model_bytes)
        return model_bytes

    def _quantize(self, calibrated: bytes, per_tensor: bool, input_type: Any, output_type: Any) -> bytes:
        """The converter's own quantizer on a calibrated model, as `convert()` runs it after calibrating."""
        lazy.tensorflow()
        from tensorflow.lite.python import convert

        try:  # the arguments TFLiteConverter._quantize gives it (TensorFlow 2.19, lite.py)
            return bytes(
                convert.mlir_quantize(calibrated, per_tensor, input_data_type=input_type, output_data_type=output_type)
            )
        except Exception as exc:  # the quantizer raises what the converter does
            raise BadInputError(
                f"the TFLite quantizer could not make the int8 model: {describe_exception(exc, last_line=True)}",
                fix="try calibration.method: min-max; the quantizer's output is in build.log",
            ) from None

    def _converter(self, model: FloatModel):  # -> tf.lite.TFLiteConverter
        tf = lazy.tensorflow()
        return tf.lite.TFLiteConverter.from_saved_model(
            str(model.saved_model_dir), signature_keys=[model.signature_key]
        )

    def _convert(self, converter, kind: str) -> bytes:
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
            raise BadInputError(
                f"the TFLite converter could not make the {kind} model: {describe_exception(exc, last_line=True)}",
                fix="an op with no int8 kernel must change in the model; the converter's output is in build.log",
            ) from None


def check_full_integer(model_bytes: bytes) -> None:
    """Every tensor between the model's input and output must be integer: the Edge TPU maps nothing else."""
    interpreter_class, _ = lazy.litert_interpreter()
    interpreter = interpreter_class(model_content=model_bytes)
    io = {d["index"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    inner_float = [
        t["name"]
        for t in interpreter.get_tensor_details()
        if t["index"] not in io and np.dtype(t["dtype"]).type not in _INTEGER_TYPES
    ]
    # With float32 model I/O only the input and output tensors themselves are float (QUANTIZE at the entry,
    # DEQUANTIZE at the exit), and those are excluded above.
    # NaN in weights or activations is what leaves float tensors in practice: the converter keeps an op in float,
    # rather than failing, when its input's calibration range is not finite (seen with a NaN Dense kernel).
    if inner_float:
        raise BadInputError(
            f"the int8 model still has float tensors: {', '.join(inner_float[:5])}; the converter leaves an op in "
            "float when the calibration range of its input is not finite, so NaN or Inf in the model's weights or "
            "activations is the usual cause",
            fix="check the source model for NaN/Inf weights (retrain or fix the checkpoint; check the export) and for "
            "ops that overflow or divide by zero on the calibration data",
        )
