"""Names onnx2tf rejects are renamed in ckit's copy of the model, consistently, with the way back kept."""

from __future__ import annotations

import pytest

from compiler_kit.frontends.onnx_names import acceptable, sanitize_names

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def test_acceptable_keeps_what_onnx2tf_handles_and_replaces_the_rest() -> None:
    assert acceptable("/layer1/Conv") == "/layer1/Conv"  # torch's names: onnx2tf rewrites the leading '/'
    assert acceptable("conv:0") == "conv:0"  # ':' too
    assert acceptable("Conv@0") == "Conv_0"
    assert acceptable("@head") == "n_head"  # a scope name cannot start with '_'
    assert acceptable("save_infer_model/scale_0.tmp_1") == "save_infer_model/scale_0.tmp_1"


def test_sanitize_renames_nodes_and_tensors_everywhere_and_keeps_the_originals() -> None:
    nodes = [
        helper.make_node("Relu", ["x@in"], ["Relu@0.out"], name="Relu@0"),
        helper.make_node("Neg", ["Relu@0.out"], ["y@out"], name="Relu_0"),  # the clean name Relu@0 would take
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x@in", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y@out", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    renamed = sanitize_names(model)
    onnx.checker.check_model(model)
    assert [node.name for node in model.graph.node] == ["Relu_0_1", "Relu_0"]
    assert model.graph.input[0].name == "x_in" and model.graph.output[0].name == "y_out"
    assert model.graph.node[1].input[0] == model.graph.node[0].output[0] == "Relu_0.out"
    assert renamed == {"x_in": "x@in", "y_out": "y@out", "Relu_0.out": "Relu@0.out", "Relu_0_1": "Relu@0"}
