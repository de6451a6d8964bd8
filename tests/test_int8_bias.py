"""Empirical bias correction of the int8 model: on a tiny Keras CNN whose int8 weights round with a bias (one outlier
per output channel sets the step, the other weights all round to zero), the corrected int8 model's mean output per
channel comes back to the float model's on samples it never saw, its SNR rises, and nothing but int32 biases
changed; the shrinkage leaves shifts the samples disagree on alone; biases saturate at int32's ends."""

from __future__ import annotations

import numpy as np
import pytest

from compiler_kit.compare.layers import TensorGraph
from compiler_kit.int8_bias import Probe, _add_to_bias, _bias_steps, biased_layers, correct_biases
from compiler_kit.runners.litert import dequantize_values
from compiler_kit.tflite_edit import packed
from tests.keras_tflite import keras_tflite

SHAPE = [1, 8, 8, 3]


def _badly_scaled(kernel: np.ndarray, seed: int) -> np.ndarray:
    """Positive weights at about 0.3 of an int8 step of their output channel (the last axis), which all round to
    zero, and one outlier per channel that sets the step: on inputs >= 0 their rounding is a bias."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.002, 0.004, kernel.shape).astype(np.float32)
    flat = weights.reshape(-1, kernel.shape[-1])
    flat[0] = 1.27 * (1 + 0.37 * np.arange(kernel.shape[-1]))
    return weights


def _samples(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random(SHAPE, dtype=np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """Conv -> ReLU -> Conv -> global pooling -> Dense, both convolutions badly scaled: float and int8 TFLite."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(tuple(SHAPE[1:]), batch_size=1)
    first = keras.layers.Conv2D(8, 3, padding="same", activation="relu")
    second = keras.layers.Conv2D(8, 3, padding="same")
    head = keras.layers.Dense(4)
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(second(first(inputs)))))
    for seed, layer in enumerate((first, second)):
        kernel, bias = layer.get_weights()
        layer.set_weights([_badly_scaled(kernel, seed), bias])
    folder = tmp_path_factory.mktemp("int8_bias")
    float_path = keras_tflite(model, SHAPE, folder / "float.tflite", quantize=False)
    int8_path = keras_tflite(model, SHAPE, folder / "int8.tflite", io_type="float32")
    return float_path.read_bytes(), int8_path.read_bytes()


def _outputs(model: bytes, samples: list[np.ndarray]) -> np.ndarray:
    graph = TensorGraph(model, 1)
    index = graph.interpreter.get_output_details()[0]["index"]
    return np.stack([graph.run(sample, [index])[index] for sample in samples]).astype(np.float64)


def _snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((candidate - reference) ** 2)))


def _layer_mean_errors(float_tflite: bytes, int8_tflite: bytes, samples: list[np.ndarray]) -> list[float]:
    """Per corrected layer: the largest per-channel mean of int8 - float over `samples`, the int8 model run as the
    verify stage runs it (XNNPACK), its layers made outputs."""
    from ai_edge_litert import schema_py_generated as schema

    float_graph = TensorGraph(float_tflite, 1)
    layers = biased_layers(float_graph, TensorGraph(int8_tflite, 1))
    model = schema.ModelT.InitFromPackedBuf(int8_tflite, 0)
    model.subgraphs[0].outputs = list(model.subgraphs[0].outputs) + [layer.output for layer in layers]
    probe = Probe(packed(model), 1)
    errors = []
    for layer in layers:
        shifts = [
            dequantize_values(probe.run(x, layer.output), probe.tensors[layer.output])
            - float_graph.run(x, [layer.float_output])[layer.float_output]
            for x in samples
        ]
        errors.append(float(np.abs(np.mean(shifts, axis=tuple(range(np.ndim(shifts) - 1)))).max()))
    return errors


@pytest.mark.slow
def test_the_corrected_int8_model_keeps_the_float_mean_on_unseen_samples(tflite_models: tuple[bytes, bytes]) -> None:
    float_tflite, int8_tflite = tflite_models
    calibration, unseen = _samples(32, seed=1), _samples(32, seed=2)
    corrected, layers = correct_biases(float_tflite, int8_tflite, calibration)
    assert sum("conv2d" in name for name in layers) == 2  # both convolutions (the head: if its shift is clear)
    before = _layer_mean_errors(float_tflite, int8_tflite, unseen)
    after = _layer_mean_errors(float_tflite, corrected, unseen)
    assert before[0] > 0.03 and all(a < 0.4 * b for a, b in zip(after, before, strict=True)), (before, after)
    reference = _outputs(float_tflite, unseen)
    plain, fixed = _snr_db(reference, _outputs(int8_tflite, unseen)), _snr_db(reference, _outputs(corrected, unseen))
    assert fixed > plain + 6, (plain, fixed)


@pytest.mark.slow
def test_only_int32_biases_change(tflite_models: tuple[bytes, bytes]) -> None:
    """Same ops, same tensors with the same scales, same weights: the model stays what the converter made."""
    from ai_edge_litert import schema_py_generated as schema

    float_tflite, int8_tflite = tflite_models
    corrected, layers = correct_biases(float_tflite, int8_tflite, _samples(8, seed=1))
    before, after = (schema.ModelT.InitFromPackedBuf(model, 0) for model in (int8_tflite, corrected))
    assert [op.opcodeIndex for op in before.subgraphs[0].operators] == [
        op.opcodeIndex for op in after.subgraphs[0].operators
    ]
    assert before.subgraphs[0].outputs.tolist() == after.subgraphs[0].outputs.tolist()
    moved = []
    for old, new in zip(before.subgraphs[0].tensors, after.subgraphs[0].tensors, strict=True):
        assert (old.name, old.type, old.shape.tolist()) == (new.name, new.type, new.shape.tolist())
        if old.quantization is not None and old.quantization.scale is not None:
            np.testing.assert_array_equal(old.quantization.scale, new.quantization.scale)
        data = [_bytes(model.buffers[tensor.buffer].data) for model, tensor in ((before, old), (after, new))]
        if data[0] != data[1]:
            moved.append(old)
    assert len(moved) == len(layers) and all(tensor.type == schema.TensorType.INT32 for tensor in moved)


def _bytes(data: np.ndarray | None) -> bytes:
    return b"" if data is None else bytes(bytearray(data))


def test_a_shift_the_samples_disagree_on_is_left_alone() -> None:
    """Channel 0 moves by 1 on every sample; channel 1 by 1.05 and -0.95 in turn (mean 0.05, standard error 0.18):
    only channel 0 is corrected, by its full shift in bias steps, divided by the share its ReLU passed."""
    errors = np.stack([np.ones(32), np.tile([1.0, -1.0], 16)], axis=1) + np.array([0.0, 0.05])
    steps = _bias_steps(errors, np.array([0.5, 1.0]), np.array([0.25, 0.25]))
    assert steps[1] == 0
    assert steps[0] == -8  # -(1 / 0.5) / 0.25


def test_a_bias_saturates_at_the_ends_of_int32() -> None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    bias = schema.BufferT()
    bias.data = np.frombuffer(np.array([2**31 - 2, -(2**31) + 2], np.int32).tobytes(), np.uint8)
    model.buffers = [schema.BufferT(), bias]
    tensor = schema.TensorT()
    tensor.buffer = 1
    subgraph = schema.SubGraphT()
    subgraph.tensors = [tensor]
    model.subgraphs = [subgraph]
    _add_to_bias(model, 0, np.array([10, -10]))
    assert np.frombuffer(bytes(bytearray(model.buffers[1].data)), np.int32).tolist() == [2**31 - 1, -(2**31)]
