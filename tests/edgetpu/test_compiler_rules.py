"""The rules Coral's published pairs showed the real compiler following (benchmarks/edgetpu_truth/), each on a tiny
graph written op by op: CPU ops before the Edge TPU part, a CPU op after it cutting only what reads it, RESIZE_BILINEAR
factors, TILE, an LSTM's int16 state, requantization at the edges, custom and unknown ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from compiler_kit.edgetpu import statuses
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction, analyze
from tests.edgetpu.tiny_tflite import TinyGraph, conv_weights


def status_of(prediction: EdgeTpuPrediction) -> dict[str, str]:
    """{output tensor name: status} of every op."""
    return {op.outputs[0].name: op.status for op in prediction.per_op}


def _conv(graph: TinyGraph, source: int, name: str, channels: int = 2, output: bool = False) -> int:
    out = graph.tensor(name, "int8", [1, 4, 4, channels], model_output=output)
    graph.op("CONV_2D", [source, *conv_weights(graph, name, channels, channels)], [out], schema.Conv2DOptionsT())
    return out


def test_cpu_ops_before_the_first_mapped_op_feed_the_edgetpu(tmp_path: Path) -> None:
    """movenet: CAST and QUANTIZE of the uint8 input on the CPU, the network behind them on the Edge TPU."""
    graph = TinyGraph()
    image = graph.tensor("image", "uint8", [1, 4, 4, 2], model_input=True)
    floats = graph.tensor("cast", "float32", [1, 4, 4, 2])
    graph.op("CAST", [image], [floats])
    quantized = graph.tensor("quantize", "int8", [1, 4, 4, 2])
    graph.op("QUANTIZE", [floats], [quantized])
    _conv(graph, _conv(graph, quantized, "conv1"), "conv2", output=True)
    prediction = analyze(graph.write(tmp_path / "prefix.tflite"))
    assert status_of(prediction) == {
        "cast": statuses.UNSUPPORTED_DATA_TYPE,
        "quantize": statuses.UNSUPPORTED_DATA_TYPE,
        "conv1": statuses.MAPPED,
        "conv2": statuses.MAPPED,
    }
    assert (prediction.ops_on_edgetpu, prediction.ops_on_cpu, prediction.edgetpu_subgraphs) == (2, 2, 1)


def test_a_cpu_op_after_the_edgetpu_cuts_only_what_reads_its_result(tmp_path: Path) -> None:
    """movenet: ops after its CPU ARG_MAX in the file but not fed by it (the keypoint heads) still map."""
    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, 4, 4, 2], model_input=True)
    trunk = _conv(graph, x, "trunk")
    gathered = graph.tensor("gather", "int8", [1, 4, 4, 2])
    graph.op("GATHER", [trunk, graph.constant("order", "int32", [1, 0])], [gathered], schema.GatherOptionsT())
    _conv(graph, gathered, "after_gather", output=True)
    _conv(graph, trunk, "head", output=True)  # listed after the GATHER, reads only the trunk
    prediction = analyze(graph.write(tmp_path / "heads.tflite"))
    assert status_of(prediction) == {
        "trunk": statuses.MAPPED,
        "gather": statuses.NOT_SUPPORTED,
        "after_gather": statuses.MORE_THAN_ONE_SUBGRAPH,
        "head": statuses.MAPPED,
    }
    assert "#1 GATHER" in prediction.per_op[2].reason
    assert prediction.edgetpu_subgraphs == 1
    assert [f.kind for f in prediction.failures] == ["partially_mapped"]


def _resize(tmp_path: Path, size_in: int, size_out: int, align_corners: bool) -> EdgeTpuPrediction:
    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, size_in, size_in, 4], model_input=True)
    out = graph.tensor("resized", "int8", [1, size_out, size_out, 4], model_output=True)
    options = schema.ResizeBilinearOptionsT()
    options.alignCorners, options.halfPixelCenters = align_corners, not align_corners
    graph.op("RESIZE_BILINEAR", [x, graph.constant("size", "int32", [size_out, size_out])], [out], options)
    return analyze(graph.write(tmp_path / "resize.tflite"))


@pytest.mark.parametrize(
    ("size_in", "size_out", "align_corners", "mapped"),
    [
        (6, 12, False, True),  # movenet's 2x upsampling: mapped
        (33, 33, True, True),  # the Edge TPU DeepLab's same-size resize: mapped
        (33, 513, True, False),  # DeepLab's 16x with align_corners: CPU
        (1, 33, True, False),  # DeepLab's image-pooling broadcast from 1x1: CPU
        (4, 32, False, True),  # 8x: the largest factor predicted to map (a guess between 2 and 16)
        (4, 36, False, False),  # 9x
        (12, 18, False, False),  # not a whole factor
        (8, 4, False, True),  # downsampling: no pair limits it
    ],
)
def test_resize_bilinear_maps_only_small_whole_upsampling_factors(
    tmp_path: Path, size_in: int, size_out: int, align_corners: bool, mapped: bool
) -> None:
    (op,) = _resize(tmp_path, size_in, size_out, align_corners).per_op
    assert op.mapped == mapped, op.reason
    if not mapped:
        assert op.status == statuses.UNSPECIFIED_LIMITATION and "precision" in op.reason


def test_tile_maps(tmp_path: Path) -> None:
    """deeplab_mobilenet_edgetpu_slim_cityscapes_quant's TILE is inside the edgetpu-custom-op."""
    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, 1, 1, 8], model_input=True)
    out = graph.tensor("tiled", "int8", [1, 4, 4, 8], model_output=True)
    graph.op("TILE", [x, graph.constant("multiples", "int32", [1, 4, 4, 1])], [out])
    assert analyze(graph.write(tmp_path / "tile.tflite")).per_op[0].mapped


def _lstm(tmp_path: Path, cell_state_is_variable: bool) -> EdgeTpuPrediction:
    """An integer UNIDIRECTIONAL_SEQUENCE_LSTM as TFLite writes it: int8 weights, int32 gate biases, an int8 hidden
    state and an int16 cell state, both variable tensors (inputs 18 and 19)."""
    graph = TinyGraph()
    steps, features, units = 3, 4, 2
    x = graph.tensor("x", "int8", [1, steps, features], model_input=True)
    inputs_to_gates = [graph.constant(f"w{i}", "int8", np.ones((units, features))) for i in range(4)]
    recurrent = [graph.constant(f"r{i}", "int8", np.ones((units, units))) for i in range(4)]
    biases = [graph.constant(f"b{i}", "int32", np.zeros(units)) for i in range(4)]
    hidden = graph.tensor("hidden", "int8", [1, units], variable=True)
    cell = graph.tensor("cell", "int16", [1, units], variable=cell_state_is_variable)
    out = graph.tensor("lstm", "int8", [1, steps, units], model_output=True)
    operands = [x, *inputs_to_gates, *recurrent, -1, -1, -1, *biases, -1, -1, hidden, cell, -1, -1, -1, -1]
    graph.op("UNIDIRECTIONAL_SEQUENCE_LSTM", operands, [out], schema.UnidirectionalSequenceLSTMOptionsT())
    return analyze(graph.write(tmp_path / "lstm.tflite"))


def test_an_integer_lstm_maps_with_its_int16_cell_state(tmp_path: Path) -> None:
    """keras_lstm_mnist_ptq: the compiler mapped its LSTM, whose cell state is an int16 variable tensor."""
    assert _lstm(tmp_path, cell_state_is_variable=True).per_op[0].mapped
    other_int16 = _lstm(tmp_path, cell_state_is_variable=False).per_op[0]  # only the state may be 16-bit
    assert other_int16.status == statuses.UNSUPPORTED_DATA_TYPE and "int16" in other_int16.reason


def test_requantizing_between_8_bit_types_maps_at_both_edges(tmp_path: Path) -> None:
    """keras_lstm_mnist_ptq: QUANTIZE uint8 -> int8 at its input and int8 -> uint8 at its output both map."""
    graph = TinyGraph()
    image = graph.tensor("image", "uint8", [1, 4, 4, 2], model_input=True)
    signed = graph.tensor("to_int8", "int8", [1, 4, 4, 2])
    graph.op("QUANTIZE", [image], [signed])
    conv = _conv(graph, signed, "conv")
    unsigned = graph.tensor("to_uint8", "uint8", [1, 4, 4, 2], model_output=True)
    graph.op("QUANTIZE", [conv], [unsigned])
    prediction = analyze(graph.write(tmp_path / "requantize.tflite"))
    assert (prediction.ops_on_edgetpu, prediction.ops_on_cpu, prediction.failures) == (3, 0, [])


def custom_op_graph(tmp_path: Path) -> Path:
    """conv (Edge TPU) -> a custom decoder op -> reshape (CPU: it reads the custom op's result)."""
    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, 4, 4, 2], model_input=True)
    conv = _conv(graph, x, "conv")
    decoded = graph.tensor("decoded", "int8", [1, 4, 4, 2])
    graph.op("", [conv], [decoded], custom="MyPoseDecoder")
    flat = graph.tensor("flat", "int8", [1, 32], model_output=True)
    graph.op("RESHAPE", [decoded, graph.constant("shape", "int32", [1, 32])], [flat])
    return graph.write(tmp_path / "custom_op.tflite")


def test_a_custom_op_runs_on_the_cpu_with_its_reason(tmp_path: Path) -> None:
    """The posenet/bodypix pairs: the compiler left the PosenetDecoderOp outside the edgetpu-custom-op."""
    prediction = analyze(custom_op_graph(tmp_path))
    conv, custom, reshape = prediction.per_op
    assert conv.mapped and (custom.operator, custom.kind, custom.status) == (
        "MyPoseDecoder",
        "custom",
        statuses.NOT_SUPPORTED,
    )
    assert "custom op 'MyPoseDecoder'" in custom.reason and not custom.runs_here
    assert reshape.status == statuses.MORE_THAN_ONE_SUBGRAPH
    assert "custom ops always run on the CPU" in prediction.failures[0].advice


def test_an_op_unknown_to_the_schema_runs_on_the_cpu(tmp_path: Path) -> None:
    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, 4], model_input=True)
    out = graph.tensor("y", "int8", [1, 4], model_output=True)
    graph.op("", [x], [out], builtin_code=4000)
    (op,) = analyze(graph.write(tmp_path / "unknown.tflite")).per_op
    assert (op.operator, op.kind, op.status) == ("OP_4000", "unknown", statuses.NOT_SUPPORTED)
    assert not op.runs_here and "does not know" in op.reason
