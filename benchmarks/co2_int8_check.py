"""int8 vs float for the CO2 forecaster, in ppm, measured without ckit: the numbers behind the recipe's gates.

Usage: python -m benchmarks.co2_int8_check [MODEL.keras]
(after `python -m calibration.co2` and `python -m recipes.models.co2_forecast`)

Each row converts recipes/models/co2_forecast.keras with TensorFlow's converter (full-integer int8, int8 input and
output, every window of its calibration set as representative data), runs it with LiteRT on the 415 eval windows
(input quantized with the input tensor's scale and zero point, output dequantized) and compares its ppm change with
the float model's (int8 vs float), and the level it gives, `last_ppm` + change, with the measured readings (int8 vs
measured). The rows:
- shipped:        what recipes/co2_forecast.yaml builds: windows relative to their last reading in, the change out,
                  calibrated on the 1959-1993 windows (calibration.npz);
- 1959-1975 only: the same, calibrated on the windows with targets before 1976 only: the relative ranges do not
                  drift as CO2 rises, so early years are enough;
- eval-calibrated: the same, calibrated on the eval windows themselves (not a deployment: the best ranges possible
                  for these years, the yardstick for the two rows above);
- level inside:   the previous design for comparison: absolute ppm in and out, the last reading subtracted and
                  added back inside the int8 graph, calibrated on the 1959-1993 windows in absolute ppm;
- level +40 ppm:  the same, with the calibration windows also shifted up by 40 ppm (what the previous design had to
                  ship so that later, higher readings did not saturate).
`sat in` counts eval input values outside the calibrated input range (they saturate to its end).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from calibration import co2
from recipes.models import co2_forecast

EARLY_UNTIL = np.datetime64("1976-01-01")
LEVEL_SHIFT_PPM = 40.0


def int8_predict(model, representative: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    """The int8 model's dequantized outputs on `x`, its input and output steps (scales), and how many values of `x`
    fall outside the input's int8 range."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[None]] for sample in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    # the converter prints its SavedModel's signature and warns of int8 input statistics it derives itself
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_bytes = converter.convert()
    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    (in_scale, in_zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]
    saturated = int(((x < (-128 - in_zero) * in_scale) | (x > (127 - in_zero) * in_scale)).sum())
    outputs = []
    for sample in x:
        quantized = np.clip(np.round(sample / in_scale + in_zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], quantized[None])
        interpreter.invoke()
        outputs.append((interpreter.get_tensor(out["index"])[0].astype(np.float32) - out_zero) * out_scale)
    return np.stack(outputs), in_scale, out_scale, saturated


def level_inside(model):
    """The previous design around the same trained layers: absolute ppm in, the last reading subtracted and added
    back inside the graph, absolute ppm out."""
    import keras

    absolute = keras.Input((co2.HISTORY,), name="history")
    last = absolute[:, -1:]
    change = model(keras.layers.Subtract()([absolute, last]))
    return keras.Model(absolute, keras.layers.Add()([last, change]))


def errors(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The regression metrics ckit's gates name, in ppm."""
    diff = np.asarray(predicted, np.float64) - reference
    return {
        "mae": float(np.abs(diff).mean()),
        "rmse": float(np.sqrt((diff**2).mean())),
        "max_abs_error": float(np.abs(diff).max()),
        "bias": float(diff.mean()),
    }


def main(model_path: Path = co2_forecast.DEFAULT_PATH, data_dir: Path = co2.DEFAULT_DIR) -> dict[str, dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    calibration, _, calibration_last = co2_forecast.load_windows(data_dir / "calibration.npz")
    with np.load(data_dir / "calibration.npz") as data:
        last_target = data["target_date"] + np.timedelta64(7 * (co2.HORIZON - 1), "D")
    x, y, last = co2_forecast.load_windows(data_dir / "eval.npz")
    level = last[:, None].astype(np.float64)  # the caller adds the level back in float
    measured = level + y
    floats = model.predict(x, verbose=0)
    float_vs_measured, naive = errors(level + floats, measured), errors(level, measured)
    print(
        f"eval ({len(x)} windows x {co2.HORIZON} weeks), level vs measured: float MAE {float_vs_measured['mae']:.3f} "
        f"ppm (max {float_vs_measured['max_abs_error']:.3f}), naive (last reading) MAE {naive['mae']:.3f} ppm "
        f"(max {naive['max_abs_error']:.3f})"
    )

    absolute_calibration = calibration + calibration_last[:, None]
    absolute = level_inside(model)
    runs = {
        "shipped": int8_predict(model, calibration, x),
        "1959-1975 only": int8_predict(model, calibration[last_target < EARLY_UNTIL], x),
        "eval-calibrated": int8_predict(model, x, x),
        "level inside": int8_predict(absolute, absolute_calibration, x + last[:, None]),
        "level +40 ppm": int8_predict(
            absolute, np.concatenate([absolute_calibration, absolute_calibration + LEVEL_SHIFT_PPM]), x + last[:, None]
        ),
    }
    print(
        f"{'':15s} {'in step':>7s} {'out step':>8s} {'sat in':>6s}   int8 vs float: MAE    max   bias"
        "   int8 vs measured: MAE    max (ppm)"
    )
    results = {"float_vs_measured": float_vs_measured, "naive_vs_measured": naive}
    for name, (int8, in_step, out_step, saturated) in runs.items():
        int8_level = int8 if name.startswith("level") else level + int8
        drift, truth = errors(int8_level, level + floats), errors(int8_level, measured)
        results[name] = {
            "in_step": float(in_step),
            "out_step": float(out_step),
            "saturated_inputs": saturated,
            "vs_float": drift,
            "vs_measured": truth,
        }
        print(
            f"{name:15s} {in_step:7.4f} {out_step:8.4f} {saturated:6d}   {drift['mae']:18.4f} "
            f"{drift['max_abs_error']:6.3f} {drift['bias']:+6.3f}   {truth['mae']:21.3f} {truth['max_abs_error']:6.3f}"
        )
    return results


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else co2_forecast.DEFAULT_PATH)
