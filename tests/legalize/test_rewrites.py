"""Each Edge TPU rewrite on a tiny ONNX graph: it rewrites what it should, leaves alone what it should not, and
onnxruntime computes the same outputs before and after (the check `legalize` itself runs, done here by hand)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import numpy as np
import pytest

from compiler_kit.legalize import relative_error, run_onnx, sample_feeds
from compiler_kit.legalize.graph import Graph, attribute
from compiler_kit.legalize.rewrites import REWRITES, ceil_mode_pads, group_chunks, same_pads

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

IR_VERSION = 10  # onnxruntime 1.23 reads IR versions up to 10; onnx 1.19 writes 11 by default


def _model(nodes: list[Any], shape: list[int], initializers: dict[str, np.ndarray] | None = None, opset: int = 17):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        [numpy_helper.from_array(_stored(value), name) for name, value in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _stored(value: np.ndarray) -> np.ndarray:
    """Weights as float32, shapes and indices as int64, as exporters write them."""
    return value.astype(np.float32 if value.dtype.kind == "f" else np.int64)


def _apply(name: str, model: Any) -> tuple[list[str], Any, float]:
    """The rewrite on a copy: the nodes it rewrote, the new model and its relative error against the original."""
    rewritten = copy.deepcopy(model)
    nodes = REWRITES[name].apply(Graph(rewritten))
    onnx.checker.check_model(rewritten)
    feeds = sample_feeds(model)
    return nodes, rewritten, relative_error(run_onnx(model, feeds, "original"), run_onnx(rewritten, feeds, "new"))


def _ops(model: Any) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _weights(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_same_pads_put_the_odd_pixel_at_the_end_like_tensorflow() -> None:
    assert same_pads([224, 224], [3, 3], [2, 2]) == [0, 0, 1, 1]
    assert same_pads([224, 224], [4, 4], [2, 2]) == [1, 1, 1, 1]
    assert same_pads([7, 7], [3, 3], [1, 1]) == [1, 1, 1, 1]


def test_ceil_mode_pads_give_the_ceil_mode_output_size() -> None:
    # 112 -> ceil((112 + 0 - 3) / 2) + 1 = 56 windows need 56 * 2 + 1 = 113 pixels: one more at the end
    assert ceil_mode_pads([112, 112], [3, 3], [2, 2], [0, 0, 0, 0]) == [0, 0, 1, 1]
    assert ceil_mode_pads([113, 113], [3, 3], [2, 2], [0, 0, 0, 0]) == [0, 0, 0, 0]


@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_a_padded_max_pool_after_relu_pads_with_zero(ceil_mode: int) -> None:
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    pool = helper.make_node(
        "MaxPool",
        ["r"],
        ["y"],
        name="pool",
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        ceil_mode=ceil_mode,
    )
    nodes, rewritten, error = _apply("maxpool_padding", _model([relu, pool], [1, 4, 10, 10]))
    assert nodes == ["pool"] and error < 1e-6
    assert _ops(rewritten) == Counter({"Relu": 1, "Pad": 1, "MaxPool": 1})
    new_pool = next(n for n in rewritten.graph.node if n.op_type == "MaxPool")
    assert attribute(new_pool, "pads") is None and not attribute(new_pool, "ceil_mode", 0)


def test_a_padded_max_pool_of_signed_values_repeats_the_edges() -> None:
    """Zero padding would change the result where a whole window is negative: the edges are repeated instead."""
    pool = helper.make_node(
        "MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    )
    model = _model([pool], [1, 2, 8, 8])
    nodes, rewritten, error = _apply("maxpool_padding", model)
    assert nodes == ["pool"] and error < 1e-6
    assert "Pad" not in _ops(rewritten) and _ops(rewritten)["Concat"] == 2 and _ops(rewritten)["Slice"] == 4
    negative = {"x": -1 - np.abs(_weights(1, 2, 8, 8))}  # all negative: a zero pad would win every edge window
    assert relative_error(run_onnx(model, negative, "a"), run_onnx(rewritten, negative, "b")) < 1e-6


def test_a_max_pool_whose_padding_is_same_is_left_to_the_converter() -> None:
    pool = helper.make_node(
        "MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]
    )
    assert _apply("maxpool_padding", _model([pool], [1, 2, 8, 8]))[0] == []


def test_narrow_groups_become_one_dense_conv_with_block_diagonal_weights() -> None:
    """Four groups of 2 inputs and 4 outputs fit one 64-channel pass: one Conv, each group's weights on the
    diagonal, zeros between, its bias as it was."""
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", group=4, pads=[1, 1, 1, 1])
    weights, bias = _weights(16, 2, 3, 3), _weights(16, seed=1)
    model = _model([conv], [1, 8, 6, 6], {"w": weights, "b": bias})
    nodes, rewritten, error = _apply("grouped_conv", model)
    assert nodes == ["conv"] and error < 1e-6
    assert _ops(rewritten) == Counter({"Conv": 1})
    (dense,) = rewritten.graph.node
    assert attribute(dense, "group", 1) == 1 and attribute(dense, "pads") == [1, 1, 1, 1]
    constants = {init.name: numpy_helper.to_array(init) for init in rewritten.graph.initializer}
    block_diagonal, new_bias = constants[dense.input[1]], constants[dense.input[2]]
    assert block_diagonal.shape == (16, 8, 3, 3) and np.array_equal(new_bias, bias)
    for group in range(4):
        rows, columns = slice(4 * group, 4 * group + 4), slice(2 * group, 2 * group + 2)
        assert np.array_equal(block_diagonal[rows, columns], weights[rows])
        assert np.count_nonzero(block_diagonal[rows]) == np.count_nonzero(weights[rows])  # zeros elsewhere


def test_wide_groups_are_chunked_to_the_edge_tpu_array() -> None:
    """Five groups of 24 channels: two fit a 64-channel pass, so chunks of 2, 2 and 1 groups (48, 48, 24 inputs),
    each a Slice and a dense Conv, joined by one Concat; strides and padding kept."""
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=5, pads=[1, 1, 1, 1], strides=[2, 2])
    nodes, rewritten, error = _apply("grouped_conv", _model([conv], [1, 120, 9, 9], {"w": _weights(120, 24, 3, 3)}))
    assert nodes == ["conv"] and error < 1e-5
    assert _ops(rewritten) == Counter({"Slice": 3, "Conv": 3, "Concat": 1})
    constants = {init.name: numpy_helper.to_array(init) for init in rewritten.graph.initializer}
    convs = [n for n in rewritten.graph.node if n.op_type == "Conv"]
    assert [constants[n.input[1]].shape for n in convs] == [(48, 48, 3, 3), (48, 48, 3, 3), (24, 24, 3, 3)]
    assert all(attribute(n, "strides") == [2, 2] and attribute(n, "group", 1) == 1 for n in convs)


def test_group_chunks_fill_64_channels() -> None:
    # RegNet-Y 400MF's widest stage: 55 groups of 8 -> six chunks of 8 groups and one of 7
    assert [len(chunk) for chunk in group_chunks(55, 8, 8)] == [8, 8, 8, 8, 8, 8, 7]
    assert group_chunks(6, 8, 8) == [range(6)]  # its first stage: one dense Conv
    assert [len(chunk) for chunk in group_chunks(32, 4, 8)] == [8, 8, 8, 8]  # the wider side decides
    assert group_chunks(4, 64, 64) == [range(i, i + 1) for i in range(4)]  # full groups stay one per Conv
    assert group_chunks(2, 100, 100) == [range(0, 1), range(1, 2)]


def test_a_depthwise_conv_is_not_split() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="dw", group=8, pads=[1, 1, 1, 1])
    assert _apply("grouped_conv", _model([conv], [1, 8, 6, 6], {"w": _weights(8, 1, 3, 3)}))[0] == []


def test_a_depthwise_conv_with_unequal_strides_subsamples_after_its_activation() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="dw", group=8, pads=[1, 1, 1, 1], strides=[2, 1])
    relu = helper.make_node("Relu", ["c"], ["y"], name="relu")
    nodes, rewritten, error = _apply(
        "depthwise_strides", _model([conv, relu], [1, 8, 8, 6], {"w": _weights(8, 1, 3, 3)})
    )
    assert nodes == ["dw"] and error < 1e-6
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "Relu", "MaxPool"]  # no ReLU to fuse into it
    assert attribute(rewritten.graph.node[0], "strides") == [1, 1]


@pytest.mark.parametrize(("size", "grown"), [(8, [4, 4]), (7, [3, 3])])
def test_a_padded_stride_2_conv_becomes_same_padding(size: int, grown: list[int]) -> None:
    """torch pads 1 on both sides; TensorFlow's SAME pads (0, 1) on an even size, so the kernel grows by a zero tap
    there (SAME then pads (1, 1)); on an odd size SAME is (1, 1) already."""
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2])
    nodes, rewritten, error = _apply(
        "conv_padding_same", _model([conv], [1, 3, size, size], {"w": _weights(4, 3, 3, 3)})
    )
    assert nodes == ["conv"] and error < 1e-5
    node = rewritten.graph.node[0]
    assert (
        attribute(node, "auto_pad") == b"SAME_UPPER"
        and list(Graph(rewritten).constant(node.input[1]).shape[2:]) == grown
    )


def test_a_stride_1_same_conv_is_left_to_the_converter() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    assert _apply("conv_padding_same", _model([conv], [1, 3, 8, 8], {"w": _weights(4, 3, 3, 3)}))[0] == []


def test_hard_swish_and_hard_sigmoid_become_ops_the_edge_tpu_maps() -> None:
    nodes = [
        helper.make_node("HardSwish", ["x"], ["s"], name="swish"),
        helper.make_node("HardSigmoid", ["s"], ["y"], name="sigmoid", alpha=0.2, beta=0.5),
    ]
    model = _model(nodes, [1, 4, 5, 5])
    swish, model, swish_error = _apply("hard_swish", model)
    sigmoid, model, sigmoid_error = _apply("hard_sigmoid", model)
    assert (swish, sigmoid) == (["swish"], ["sigmoid"]) and max(swish_error, sigmoid_error) < 1e-6
    assert not {"HardSwish", "HardSigmoid"} & set(_ops(model)) and _ops(model)["Clip"] == 2


def test_a_written_out_hard_swish_gets_a_sixth_the_converter_does_not_fuse() -> None:
    three, zero, six = (np.array(v, dtype=np.float32) for v in (3, 0, 6))
    nodes = [
        helper.make_node("Add", ["x", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["y"], name="div"),
    ]
    model = _model(nodes, [1, 4, 5, 5], {"three": three, "zero": zero, "six": six})
    rewritten_nodes, rewritten, error = _apply("hard_swish_pattern", model)
    assert rewritten_nodes == ["div"] and error < 1e-6
    divisor = next(n for n in rewritten.graph.node if n.name == "div")
    sixth = Graph(rewritten).constant(divisor.input[1])
    assert divisor.op_type == "Mul" and sixth is not None and 0 < 1 / 6 - float(sixth) < 1e-7


def test_a_channel_shuffle_becomes_a_permutation_conv() -> None:
    """ShuffleNet's shuffle: [1, 8, 4, 4] -> [1, 2, 4, 4, 4] -> swap the two channel axes -> [1, 8, 4, 4]."""
    nodes = [
        helper.make_node("Reshape", ["x", "split_shape"], ["r"], name="shuffle"),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "shape"], ["y"]),
    ]
    shapes = {"split_shape": np.array([1, 2, 4, 4, 4]), "shape": np.array([1, 8, 4, 4])}
    model = _model(nodes, [1, 8, 4, 4], shapes)
    rewritten_nodes, rewritten, error = _apply("channel_shuffle", model)
    assert rewritten_nodes == ["shuffle"] and error == 0
    assert _ops(rewritten) == Counter({"Conv": 1})


def test_a_reshape_that_moves_spatial_values_is_no_channel_shuffle() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "split_shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]),  # swaps H and W: not a channel move
        helper.make_node("Reshape", ["t", "shape"], ["y"]),
    ]
    shapes = {"split_shape": np.array([1, 8, 4, 4]), "shape": np.array([1, 8, 4, 4])}
    assert _apply("channel_shuffle", _model(nodes, [1, 8, 4, 4], shapes))[0] == []


def test_a_ceil_mode_pool_whose_padding_is_same_is_written_as_same() -> None:
    """GoogLeNet's MaxPool(3, 2, ceil_mode=True) on 112: the extra end pixel is SAME's; onnx2tf would pad it -inf."""
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    nodes, rewritten, error = _apply("maxpool_padding", _model([pool], [1, 2, 12, 12]))
    assert nodes == ["pool"] and error < 1e-6 and _ops(rewritten) == Counter({"MaxPool": 1})
    node = rewritten.graph.node[0]
    assert attribute(node, "pads") == [0, 0, 1, 1] and attribute(node, "ceil_mode") == 0


@pytest.mark.parametrize(("kernel", "bias"), [(2, True), (3, False)])
def test_a_transpose_conv_becomes_two_summed_halves(kernel: int, bias: bool) -> None:
    """DBNet's upsampling head: ConvTranspose(2, stride 2); any kernel splits, the bias is added after the sum."""
    initializers = {"w": _weights(6, 4, kernel, kernel), **({"b": _weights(4, seed=1)} if bias else {})}
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    up = helper.make_node("ConvTranspose", inputs, ["y"], name="up", kernel_shape=[kernel] * 2, strides=[2, 2])
    nodes, rewritten, error = _apply("transpose_conv_unfused", _model([up], [1, 6, 5, 7], initializers))
    assert nodes == ["up"] and error < 1e-5
    assert _ops(rewritten) == Counter({"ConvTranspose": 2, "Add": 2 if bias else 1})
    assert all(len(n.input) == 2 for n in rewritten.graph.node if n.op_type == "ConvTranspose")  # no bias in them


def test_a_transpose_conv_whose_bias_is_computed_is_left_alone() -> None:
    """A bias made by a node (here an Identity of a constant) has no [C, 1, 1] constant to add after the sum."""
    initializers = {"w": _weights(6, 4, 2, 2), "b0": _weights(4, seed=1)}
    bias = helper.make_node("Identity", ["b0"], ["b"], name="bias")
    up = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", kernel_shape=[2, 2], strides=[2, 2])
    model = _model([bias, up], [1, 6, 5, 7], initializers)
    nodes, rewritten, error = _apply("transpose_conv_unfused", model)
    assert nodes == [] and error == 0.0 and _ops(rewritten) == _ops(model)


def _conv(name: str, inputs: list[str], output: str, **attributes: Any) -> Any:
    return helper.make_node("Conv", inputs, [output], name=name, kernel_shape=[3, 3], pads=[1, 1, 1, 1], **attributes)


@pytest.mark.parametrize("depthwise", [False, True])
def test_cross_layer_equalization_balances_the_channel_ranges_exactly(depthwise: bool) -> None:
    """One channel of the first convolution a hundred times wider than the rest: after equalization both
    convolutions have equal ranges per channel, and the outputs do not move."""
    w1 = _weights(4, 3, 3, 3)
    w1[2] *= 100
    w2 = _weights(4, 1, 3, 3, seed=1) if depthwise else _weights(5, 4, 3, 3, seed=1)
    nodes = [
        _conv("first", ["x", "w1", "b1"], "a"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        _conv("second", ["r", "w2"], "y", **({"group": 4} if depthwise else {})),
    ]
    model = _model(nodes, [1, 3, 8, 8], {"w1": w1, "b1": _weights(4, seed=2), "w2": w2})
    rewritten, after, error = _apply("cross_layer_equalization", model)
    assert rewritten == ["first"] and error < 1e-5
    graph = Graph(after)
    first, second = (next(n for n in after.graph.node if n.name == name) for name in ("first", "second"))
    r1 = np.abs(graph.constant(first.input[1])).reshape(4, -1).max(axis=1)
    balanced = graph.constant(second.input[1])
    r2 = np.abs(balanced).max(axis=(1, 2, 3) if depthwise else (0, 2, 3))
    np.testing.assert_allclose(r1, r2, rtol=1e-5)


def test_cross_layer_equalization_leaves_relu6_alone() -> None:
    """Relu6 (a Clip at 6) is not scale-equivariant: scaling its input changes what it clips."""
    nodes = [
        _conv("first", ["x", "w1"], "a"),
        helper.make_node("Clip", ["a", "lo", "hi"], ["r"], name="relu6"),
        _conv("second", ["r", "w2"], "y"),
    ]
    values = {"w1": _weights(4, 3, 3, 3), "w2": _weights(5, 4, 3, 3), "lo": np.array(0.0), "hi": np.array(6.0)}
    assert _apply("cross_layer_equalization", _model(nodes, [1, 3, 8, 8], values))[0] == []
