"""The one quantizer: I/O types, full-integer check, and per-tensor versus per-channel weight scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler_kit import lazy
from compiler_kit.errors import BadInputError
from compiler_kit.frontends import FloatModel
from compiler_kit.frontends.base import ModelOutput
from compiler_kit.frontends.keras import KerasFrontend
from compiler_kit.quantize import Int8Quantizer, check_full_integer
from compiler_kit.recipe import InputSpec, Quantization, Source
from compiler_kit.runners import LiteRtRunner

pytestmark = pytest.mark.slow  # every test quantizes a converted model: the trained digits CNN or a NaN-weight one

CALIBRATION_SAMPLES = 50


@pytest.fixture(scope="module")
def float_model(keras_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> FloatModel:
    source = Source(framework="keras", path=keras_model_path)
    spec = InputSpec(name="image", shape=[1, 16, 16, 1], layout="NHWC")
    return KerasFrontend().convert(source, [spec], tmp_path_factory.mktemp("quantize") / "float_saved_model")


@pytest.fixture(scope="module")
def calibration(digits_dir: Path) -> list[np.ndarray]:
    with np.load(digits_dir / "calibration.npz") as data:
        x = data["x"][:CALIBRATION_SAMPLES].astype(np.float32) / 255.0
    return [sample[None] for sample in x]


def int8_model(float_model, calibration, granularity: str) -> bytes:
    section = Quantization(input_type="uint8", output_type="float32", granularity=granularity)
    return Int8Quantizer(section).int8_tflite(float_model, calibration)


@pytest.fixture(scope="module")
def per_tensor(float_model, calibration) -> bytes:
    return int8_model(float_model, calibration, "per-tensor")


@pytest.fixture(scope="module")
def per_channel(float_model, calibration) -> bytes:
    return int8_model(float_model, calibration, "per-channel")


def interpreter(model_bytes: bytes):
    interpreter_class, _ = lazy.litert_interpreter()
    return interpreter_class(model_content=model_bytes)


def conv_weights(model_bytes: bytes) -> list[dict]:
    """Tensor details of the filter (input 1) of every CONV_2D op."""
    it = interpreter(model_bytes)
    by_index = {detail["index"]: detail for detail in it.get_tensor_details()}
    return [by_index[op["inputs"][1]] for op in it._get_ops_details() if op["op_name"] == "CONV_2D"]


def test_io_types_follow_the_recipe(per_tensor):
    it = interpreter(per_tensor)
    [inp], [out] = it.get_input_details(), it.get_output_details()
    assert inp["dtype"] == np.uint8
    assert list(inp["shape"]) == [1, 16, 16, 1]
    assert out["dtype"] == np.float32
    assert list(out["shape"]) == [1, 10]


def test_full_integer_check_passes(per_tensor, per_channel):
    assert check_full_integer(per_tensor) is None
    assert check_full_integer(per_channel) is None


def test_per_tensor_has_one_scale_per_conv_weight_tensor(per_tensor):
    weights = conv_weights(per_tensor)
    assert len(weights) == 2  # the CNN's two Conv2D layers
    for detail in weights:
        assert detail["dtype"] == np.int8
        assert len(detail["quantization_parameters"]["scales"]) == 1


def test_per_channel_has_one_scale_per_output_channel(per_channel):
    weights = conv_weights(per_channel)
    assert sorted(int(detail["shape"][0]) for detail in weights) == [16, 32]
    for detail in weights:
        scales = detail["quantization_parameters"]["scales"]
        assert len(scales) == detail["shape"][0] > 1
        assert len(set(scales.tolist())) > 1  # really different scales, not one repeated


def test_the_uint8_model_still_classifies(per_tensor, digits_dir: Path, tmp_path: Path):
    path = tmp_path / "model.tflite"
    path.write_bytes(per_tensor)
    runner = LiteRtRunner("tflite-int8", path, threads=1)
    runner.prepare()
    with np.load(digits_dir / "eval.npz") as data:
        x, y = data["x"][:50].astype(np.float32) / 255.0, data["y"][:50]
    predictions = [int(runner.infer({"image": sample[None]})["output_0"].argmax()) for sample in x]
    assert runner.describe()["input_quantization"][0]["dtype"] == "uint8"
    assert np.mean(np.array(predictions) == y) >= 0.9


def test_full_integer_check_rejects_the_float_model(built):
    float_bytes = (built.build_dir / "model_float.tflite").read_bytes()
    with pytest.raises(BadInputError, match="still has float tensors") as caught:
        check_full_integer(float_bytes)
    assert caught.value.exit_code == 2


def test_full_integer_check_accepts_the_built_int8_model(built):
    assert check_full_integer((built.build_dir / "model_int8.tflite").read_bytes()) is None


def test_float_tensors_left_by_a_nan_weight_point_at_nan_and_inf(tmp_path: Path) -> None:
    """The fallback when NaN reaches the quantizer (a NaN Dense kernel: the converter keeps the next layer in float
    instead of failing). The SavedModel is exported straight from Keras, without the frontend's own checks."""
    import keras

    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden(inputs)))
    kernel, bias = hidden.get_weights()
    kernel[1, 2] = np.nan
    hidden.set_weights([kernel, bias])
    model.export(str(tmp_path / "saved_model"), format="tf_saved_model", verbose=False)
    float_model = FloatModel(tmp_path, "serve", input_perms=[None], outputs=[ModelOutput("output_0", "output_0", None)])
    samples = [np.random.default_rng(seed).random((1, 4), dtype=np.float32) for seed in range(8)]
    with pytest.raises(BadInputError) as raised:
        Int8Quantizer(Quantization()).int8_tflite(float_model, samples)
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert "the int8 model still has float tensors" in message
    assert "NaN or Inf in the model's weights or activations is the usual cause" in message
    assert "fix: check the source model for NaN/Inf weights" in message


def _snr_against_float(float_model, model_bytes: bytes, samples: list[np.ndarray], tmp_path: Path) -> float:
    from compiler_kit.compare.metrics import snr_db

    float_path, int8_path = tmp_path / "float.tflite", tmp_path / "int8.tflite"
    float_path.write_bytes(Int8Quantizer(Quantization()).float_tflite(float_model))
    int8_path.write_bytes(model_bytes)
    outputs = []
    for path in (float_path, int8_path):
        runner = LiteRtRunner(path.stem, path, threads=1)
        runner.prepare()
        outputs.append(np.concatenate([next(iter(runner.infer({"image": x}).values())) for x in samples]))
    return snr_db(*outputs)


def test_a_few_calibration_outliers_cost_min_max_and_not_percentile(
    float_model, calibration, digits_dir: Path, tmp_path: Path
) -> None:
    """A hot pixel (value 40, where images hold 0 to 1) in five calibration images stretches the min-max ranges
    from the input on; the percentile ranges ignore those few values, and the model stays full-integer."""
    glitched = [x.copy() for x in calibration]
    for x in glitched[:5]:
        x[0, 3, 3, 0] = 40.0
    with np.load(digits_dir / "eval.npz") as data:
        held_out = [x[None].astype(np.float32) / 255.0 for x in data["x"][:100]]
    section = Quantization()
    snr = {}
    for method in ("min-max", "percentile", "mse"):
        model = Int8Quantizer(section).int8_tflite(float_model, glitched, method, percentile=99.9)
        check_full_integer(model)
        snr[method] = _snr_against_float(float_model, model, held_out, tmp_path)
    assert snr["percentile"] > snr["min-max"] + 6, snr
    # mse weighs each value's squared error: clipping five values of 40 costs more than coarser steps for the
    # rest, so it keeps them in range (its gain is on heavy-tailed tensors: tests/test_ranges.py); never much worse
    assert snr["mse"] > snr["min-max"] - 1, snr
