"""GPTQ weight rounding of the int8 model: the input windows it builds H from are the layer's own (SAME padding,
strides, dilation, depthwise), independent inputs give nearest rounding, and on a tiny CNN fed smooth images (whose
neighbouring pixels move together) the rounded model is closer to the float one on images it never saw, with only
int8 weights changed and a layer seen at too few input rows left as the converter rounded it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler_kit.compare.layers import TensorGraph
from compiler_kit.int8_rounding import WeightedLayer, _inverse_factor, _patches, gptq, round_weights
from tests.keras_tflite import keras_tflite

SHAPE = [1, 9, 9, 3]


def _smooth(count: int, seed: int) -> list[np.ndarray]:
    """Images whose pixels are averages of their neighbours' noise: correlated inputs, like photos."""
    rng = np.random.default_rng(seed)
    noise = rng.random((count, 11, 11, 3), dtype=np.float32)
    smooth = sum(noise[:, dy : dy + 9, dx : dx + 9] for dy in range(3) for dx in range(3)) / 9
    return [image[None] for image in smooth.astype(np.float32)]


def test_independent_inputs_give_nearest_rounding() -> None:
    rng = np.random.default_rng(0)
    weights, scales = rng.normal(size=(4, 6)), np.array([0.01, 0.02, 0.03, 0.04])
    nearest = np.clip(np.round(weights / scales[:, None]), -127, 127)
    np.testing.assert_array_equal(gptq(weights, scales, _inverse_factor(np.eye(6))), nearest)
    per_row = _inverse_factor(np.stack([np.eye(6)] * 4))  # a depthwise layer's: one H per output
    np.testing.assert_array_equal(gptq(weights, scales, per_row), nearest)


@pytest.mark.slow
def test_the_windows_are_the_layers_inputs(tmp_path: Path) -> None:
    """patches x kernel reproduces a strided SAME convolution on an odd size and a dilated depthwise one."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(tuple(SHAPE[1:]), batch_size=1)
    conv = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same", dilation_rate=2)
    model = keras.Model(inputs, depthwise(conv(inputs)))
    graph = TensorGraph(keras_tflite(model, SHAPE, tmp_path / "float.tflite", quantize=False).read_bytes(), 1)
    x = _smooth(1, seed=3)[0]
    geometries = {"CONV_2D": (3, 3, 2, 2, 1, 1, 1), "DEPTHWISE_CONV_2D": (3, 3, 1, 1, 2, 2, 1)}
    rng = np.random.default_rng(0)
    for op in graph.ops:
        source, weights, bias = (int(i) for i in op["inputs"][:3])
        layer = WeightedLayer("", op["index"], op["op_name"], source, weights, weights, geometries[op["op_name"]])
        values = graph.run(x, [source, int(op["outputs"][0])])
        windows = _patches(values[source], layer, 10**6, rng)  # positions x kernel x channels
        kernel = graph.interpreter.get_tensor(weights).astype(np.float64)
        if op["op_name"] == "CONV_2D":  # [out, kh, kw, in]
            expected = windows.reshape(len(windows), -1) @ kernel.reshape(len(kernel), -1).T
        else:  # [1, kh, kw, channels]
            expected = np.einsum("rkc,kc->rc", windows, kernel.reshape(-1, kernel.shape[-1]))
        expected += graph.interpreter.get_tensor(bias)
        output = values[int(op["outputs"][0])]
        np.testing.assert_allclose(expected, output.reshape(-1, output.shape[-1]), atol=1e-5)


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Conv -> ReLU -> Conv -> ReLU -> global pooling -> Dense: float and int8 TFLite."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(tuple(SHAPE[1:]), batch_size=1)
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(hidden)))
    folder = tmp_path_factory.mktemp("int8_rounding")
    float_path = keras_tflite(model, SHAPE, folder / "float.tflite", quantize=False)
    int8_path = keras_tflite(model, SHAPE, folder / "int8.tflite", io_type="float32")
    return float_path.read_bytes(), int8_path.read_bytes()


def _snr_db(float_tflite: bytes, int8_tflite: bytes, samples: list[np.ndarray]) -> float:
    reference, candidate = TensorGraph(float_tflite, 1), TensorGraph(int8_tflite, 1)
    index = reference.interpreter.get_output_details()[0]["index"]
    wanted = candidate.interpreter.get_output_details()[0]["index"]
    f = np.stack([reference.run(x, [index])[index] for x in samples]).astype(np.float64)
    q = np.stack([candidate.run(x, [wanted])[wanted] for x in samples]).astype(np.float64)
    return float(10 * np.log10(np.sum(f**2) / np.sum((q - f) ** 2)))


@pytest.mark.slow
def test_gptq_brings_the_int8_model_closer_on_unseen_images_changing_only_weights(
    tflite_models: tuple[bytes, bytes],
) -> None:
    from ai_edge_litert import schema_py_generated as schema

    float_tflite, int8_tflite = tflite_models
    rounded, layers = round_weights(float_tflite, int8_tflite, _smooth(32, seed=1))
    # 32 images x 81 positions: rows enough for both convolutions (27 and 144 weights an output); the Dense head
    # gives the model's output, which has no float counterpart matched inside the graph, and is left alone
    assert len(layers) == 2 and not any("dense" in name for name in layers), layers
    unseen = _smooth(32, seed=2)
    before, after = _snr_db(float_tflite, int8_tflite, unseen), _snr_db(float_tflite, rounded, unseen)
    assert after > before + 1.0, (before, after)
    old, new = (schema.ModelT.InitFromPackedBuf(model, 0) for model in (int8_tflite, rounded))
    changed = []
    for a, b in zip(old.subgraphs[0].tensors, new.subgraphs[0].tensors, strict=True):
        if a.quantization is not None and a.quantization.scale is not None:
            np.testing.assert_array_equal(a.quantization.scale, b.quantization.scale)
        if _data(old, a) != _data(new, b):
            changed.append(a.type)
    assert changed == [schema.TensorType.INT8] * 2


def test_a_layer_seen_at_fewer_rows_than_its_weights_keeps_nearest_rounding(tflite_models: tuple[bytes, bytes]) -> None:
    float_tflite, int8_tflite = tflite_models
    # one image: 81 rows, enough for the first convolution's 27 weights an output, not the second's 144
    _, layers = round_weights(float_tflite, int8_tflite, _smooth(1, seed=1))
    _, both = round_weights(float_tflite, int8_tflite, _smooth(32, seed=1))
    assert len(both) == 2 and layers == both[:1], (layers, both)


def _data(model: Any, tensor: Any) -> bytes:
    data = model.buffers[tensor.buffer].data
    return b"" if data is None else bytes(bytearray(data))
