"""Bias correction on small ONNX graphs with badly scaled weights (one outlier per output channel, so the other
weights all round the same way): the int8 weights' mean output shift on the calibration data is cancelled exactly for
one layer and reduced through a network; the float model moves by exactly the correction; a layer without a bias
gets one; it runs only when asked."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from compiler_kit.legalize import legalize, run_onnx
from compiler_kit.legalize.bias_correction import int8_weight_error
from compiler_kit.legalize.graph import Graph, RemedyData
from compiler_kit.legalize.rewrites import REWRITES

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

IR_VERSION = 10  # onnxruntime 1.23 reads IR versions up to 10
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def _model(
    nodes: list[Any], shape: list[int], initializers: dict[str, np.ndarray], rank: int = 4, opset: int = 17
) -> Any:
    """`rank`: the output's, whose dimensions are left symbolic (as exporters write them)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{axis}" for axis in range(rank)])],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _badly_scaled(*shape: int, seed: int = 0, axis: int = 0) -> np.ndarray:
    """Positive weights at about 0.3 of an int8 step of their channel (they all round to zero), and one outlier per
    output channel (`axis`) that sets that step: a rounding error of one sign, which a non-negative input turns into a
    bias. The outliers differ from channel to channel, so one scale per tensor rounds them too."""
    rng = np.random.default_rng(seed)
    weights = np.ascontiguousarray(np.moveaxis(rng.uniform(0.2, 0.4, shape).astype(np.float32), axis, 0))
    flat = weights.reshape(len(weights), -1)
    flat[:, 0] = 127.0 * (1 + 0.37 * np.arange(len(flat)))
    flat[:, 1:] *= 1 + 0.1 * rng.standard_normal(flat[:, 1:].shape).astype(np.float32)  # not all equal
    return np.moveaxis(weights, 0, axis)


def _samples(shape: list[int], count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, shape).astype(np.float32) for _ in range(count)]


def _corrected(model: Any, samples: list[np.ndarray], per_tensor: bool = False) -> tuple[list[str], Any]:
    rewritten = copy.deepcopy(model)
    nodes = REWRITES["bias_correction"].apply(Graph(rewritten, RemedyData(samples, per_tensor)))
    onnx.checker.check_model(rewritten)
    return nodes, rewritten


def _int8_weights(model: Any, per_tensor: bool = False) -> Any:
    """The model with every weighted op's weights as int8 holds them (dequantized): what bias correction corrects."""
    quantized = copy.deepcopy(model)
    graph = Graph(quantized)
    for node in quantized.graph.node:
        weights = graph.constant(node.input[1]) if node.op_type in WEIGHTED_OPS else None
        if weights is None:
            continue
        transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
        axis = 0 if node.op_type == "Conv" or transposed else 1
        quantized_weights = (weights + int8_weight_error(weights, axis, per_tensor)).astype(np.float32)
        node.input[1] = graph.add_constant(f"{node.input[1]}_int8", quantized_weights)
    return quantized


def _outputs(model: Any, samples: list[np.ndarray]) -> np.ndarray:
    return np.stack([run_onnx(model, {"x": x}, "test model")["y"] for x in samples]).astype(np.float64)


def _channel_means(outputs: np.ndarray) -> np.ndarray:
    """Mean over samples and every axis but the channel one (1 of NCHW; the last of a 2-D output)."""
    channel = 2 if outputs.ndim == 5 else outputs.ndim - 1  # the stack adds a leading sample axis
    return outputs.mean(axis=tuple(a for a in range(outputs.ndim) if a != channel))


def test_int8_weight_error_is_the_converters_symmetric_rounding() -> None:
    """Scale max|W| / 127 per output channel, rounding half away from zero (numpy's round would take 0.5 to 0)."""
    weights = np.array([[127.0, 0.5, -0.5, 1.5], [12.7, 0.05, 0.0, -12.7]], dtype=np.float32)
    error = int8_weight_error(weights, 0)
    np.testing.assert_allclose(error[0], [0.0, 0.5, -0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(error[1], [0.0, 0.05, 0.0, 0.0], atol=1e-6)  # step 0.1: 0.05 rounds up
    per_tensor = int8_weight_error(weights, 0, per_tensor=True)  # step 1 for both rows
    np.testing.assert_allclose(per_tensor[1], [0.3, -0.05, 0.0, -0.3], atol=1e-5)
    assert np.all(np.abs(int8_weight_error(np.zeros((2, 3), np.float32), 0)) == 0)  # an all-zero channel


def _conv(bias: bool, group: int = 1) -> tuple[Any, list[int]]:
    channels = 4
    initializers = {"w": _badly_scaled(channels, channels // group, 3, 3)}
    if bias:
        initializers["b"] = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32)
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    conv = helper.make_node("Conv", inputs, ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group)
    return _model([conv], [1, channels, 6, 6], initializers), [1, channels, 6, 6]


def _gemm() -> tuple[Any, list[int]]:
    initializers = {"w": _badly_scaled(5, 8), "c": np.linspace(-1, 1, 5).astype(np.float32)}
    gemm = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm", transB=1)
    return _model([gemm], [1, 8], initializers, rank=2), [1, 8]


def _matmul(add: bool) -> tuple[Any, list[int]]:
    initializers = {"w": _badly_scaled(8, 5, axis=1)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m" if add else "y"], name="matmul")]
    if add:
        initializers["c"] = np.linspace(-1, 1, 5).astype(np.float32)
        nodes.append(helper.make_node("Add", ["m", "c"], ["y"], name="add"))
    return _model(nodes, [1, 3, 8], initializers, rank=3), [1, 3, 8]


LAYERS = {
    "conv": lambda: _conv(bias=True),
    "conv without a bias": lambda: _conv(bias=False),
    "depthwise conv": lambda: _conv(bias=True, group=4),
    "gemm": _gemm,
    "matmul with its add": lambda: _matmul(add=True),
    "matmul without a bias": lambda: _matmul(add=False),
}


@pytest.mark.parametrize("per_tensor", [False, True], ids=["per-channel", "per-tensor"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_one_layer_keeps_its_float_mean_with_int8_weights(layer: str, per_tensor: bool) -> None:
    """On the calibration samples, the corrected layer with int8 weights has the float layer's mean output per
    channel (padding included: the shift is measured with the layer's own padding); before, it is off by a lot."""
    model, shape = LAYERS[layer]()
    samples = _samples(shape, 16, seed=1)
    nodes, corrected = _corrected(model, samples, per_tensor)
    assert len(nodes) == 1
    float_mean = _channel_means(_outputs(model, samples))
    before = _channel_means(_outputs(_int8_weights(model, per_tensor), samples)) - float_mean
    after = _channel_means(_outputs(_int8_weights(corrected, per_tensor), samples)) - float_mean
    assert np.abs(before).min() > 0.1, before  # every channel biased
    np.testing.assert_allclose(after, 0.0, atol=1e-3 * np.abs(before).min())


@pytest.mark.parametrize("layer", list(LAYERS))
def test_the_float_model_moves_by_the_correction_alone(layer: str) -> None:
    """The corrected float layer's output is the original's minus a constant per channel, that constant being the
    int8 weights' mean shift; on new inputs too (only the bias changed)."""
    model, shape = LAYERS[layer]()
    calibration, unseen = _samples(shape, 16, seed=1), _samples(shape, 4, seed=2)
    _, corrected = _corrected(model, calibration)
    expected = _channel_means(_outputs(_int8_weights(model), calibration)) - _channel_means(
        _outputs(model, calibration)
    )
    moved = _outputs(corrected, unseen) - _outputs(model, unseen)
    channel_last = np.moveaxis(moved, 2, -1) if moved.ndim == 5 else moved
    np.testing.assert_allclose(channel_last, np.broadcast_to(-expected, channel_last.shape), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("layer", "holder", "ops"), [
    ("conv without a bias", "Conv", ["Conv"]),
    ("matmul without a bias", "Add", ["MatMul", "Add"]),
    ("matmul with its add", "Add", ["MatMul", "Add"]),  # its Add's constant takes the correction, no second Add
])  # fmt: skip
def test_a_layer_without_a_bias_gets_one(layer: str, holder: str, ops: list[str]) -> None:
    """The rounding takes every small weight to zero (dW = -W < 0 on inputs >= 0), so the bias rises."""
    model, shape = LAYERS[layer]()
    _, corrected = _corrected(model, _samples(shape, 4, seed=1))
    assert [n.op_type for n in corrected.graph.node] == ops
    node = next(n for n in corrected.graph.node if n.op_type == holder)
    bias, before = Graph(corrected).constant(node.input[-1]), Graph(model).constant(node.input[-1])
    assert bias is not None and bias.shape == (len(bias),) and len(bias) in (4, 5)
    assert np.all(bias > (0 if before is None else before))


def _network() -> tuple[Any, list[int]]:
    """Conv -> Relu -> Conv -> Relu -> global pool -> Gemm, every layer badly scaled."""
    initializers = {
        "w1": _badly_scaled(8, 3, 3, 3, seed=1),
        "b1": np.zeros(8, np.float32),
        "w2": _badly_scaled(8, 8, 3, 3, seed=2),
        "w3": _badly_scaled(4, 8, seed=3),
        "b3": np.zeros(4, np.float32),
        "shape": np.array([1, 8], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="head", transB=1),
    ]
    return _model(nodes, [1, 3, 9, 9], initializers, rank=2), [1, 3, 9, 9]


def _snr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((candidate - reference) ** 2)))


def test_through_a_network_the_int8_weights_lose_less_on_unseen_data() -> None:
    """Each layer corrected from float statistics: on samples calibration never saw, the int8-weight model's mean
    output error shrinks and its SNR against the float model rises."""
    model, shape = _network()
    calibration, unseen = _samples(shape, 32, seed=1), _samples(shape, 32, seed=2)
    nodes, corrected = _corrected(model, calibration)
    assert nodes == ["conv1", "conv2", "head"]
    reference = _outputs(model, unseen)
    plain, fixed = _outputs(_int8_weights(model), unseen), _outputs(_int8_weights(corrected), unseen)
    shift_before = np.abs(_channel_means(plain - reference)).max()
    shift_after = np.abs(_channel_means(fixed - reference)).max()
    assert shift_after < 0.1 * shift_before, (shift_before, shift_after)
    assert _snr_db(reference, fixed) > _snr_db(reference, plain) + 10, (
        _snr_db(reference, plain),
        _snr_db(reference, fixed),
    )


def test_it_runs_only_when_asked_and_is_reported_as_a_remedy_that_moves_the_outputs() -> None:
    model, shape = _network()
    data = RemedyData(_samples(shape, 8, seed=1))
    plain = legalize(model, data=data)
    assert "bias_correction" not in {row["name"] for row in plain.rewrites}
    assert {init.name for init in plain.model.graph.initializer} == {init.name for init in model.graph.initializer}
    found = legalize(model, opt_in=frozenset({"bias_correction"}), data=data)
    [row] = [row for row in found.rewrites if row["name"] == "bias_correction"]
    # applied although it moves the outputs by far more than an exact rewrite may (1e-3)
    assert row["status"] == "applied" and row["exact"] is False and row["count"] == 3
    assert row["max_relative_error"] > 1e-3
    skipped = legalize(model, skip=frozenset({"bias_correction"}), opt_in=frozenset({"bias_correction"}), data=data)
    assert [r["status"] for r in skipped.rewrites if r["name"] == "bias_correction"] == ["skipped (legalize.skip)"]


def test_without_calibration_samples_it_is_a_bug_not_a_silent_no_op() -> None:
    model, _ = _network()
    with pytest.raises(ValueError, match="needs calibration samples"):
        legalize(model, opt_in=frozenset({"bias_correction"}))


def test_an_opset_before_18_takes_reduce_means_axes_as_an_attribute() -> None:
    initializers = {"w": _badly_scaled(4, 3, 3, 3)}
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])
    model = _model([conv], [1, 3, 6, 6], initializers, opset=13)
    nodes, corrected = _corrected(model, _samples([1, 3, 6, 6], 4, seed=1))
    assert nodes == ["conv"] and len(corrected.graph.node[0].input) == 3
