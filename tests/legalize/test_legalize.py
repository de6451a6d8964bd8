"""The legalization driver: rewrites checked against the model as it came, undone when they change the outputs,
switched off by the recipe, and no rewrite at all when onnxruntime cannot run the model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from compiler_kit import legalize as legalize_module
from compiler_kit.legalize import legalize
from compiler_kit.legalize.graph import Graph
from compiler_kit.legalize.rewrites import REWRITES, Rewrite

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _relu_pool_model() -> Any:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_rewrites_are_listed_with_their_nodes_and_float_cost() -> None:
    found = legalize(_relu_pool_model())
    (row,) = found.rewrites
    assert row["name"] == "maxpool_padding" and row["status"] == "applied" and row["count"] == 1
    assert row["nodes"] == ["pool"] and row["max_relative_error"] < 1e-6
    assert found.output_shapes == {"y": [1, 3, 4, 4]}
    assert found.as_dict()["applied"] == 1 and "Pad" in {n.op_type for n in found.model.graph.node}


def test_a_rewrite_that_changes_the_outputs_is_undone_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def breaks_relu(g: Graph) -> list[str]:
        node = next(n for n in g.graph.node if n.op_type == "Relu")
        node.op_type = "Sigmoid"
        return [node.name]

    monkeypatch.setitem(REWRITES, "maxpool_padding", Rewrite("maxpool_padding", "broken on purpose", breaks_relu))
    model = _relu_pool_model()
    found = legalize(model)
    assert found.rewrites[0]["status"].startswith("reverted") and found.rewrites[0]["max_relative_error"] > 0.01
    assert [n.op_type for n in found.model.graph.node] == ["Relu", "MaxPool"]  # the model as it came


def test_skip_and_enabled_come_from_the_recipe() -> None:
    skipped = legalize(_relu_pool_model(), skip=frozenset({"maxpool_padding"}))
    assert [(r["name"], r["status"]) for r in skipped.rewrites] == [("maxpool_padding", "skipped (legalize.skip)")]
    assert [n.op_type for n in skipped.model.graph.node] == ["Relu", "MaxPool"]
    off = legalize(_relu_pool_model(), enabled=False)
    assert off.rewrites == [] and off.as_dict()["enabled"] is False


def test_a_model_onnxruntime_cannot_run_is_left_as_it_is() -> None:
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)], ir_version=10
    )
    found = legalize(model)
    assert found.model is model and found.rewrites == []
    assert "onnxruntime cannot run" in found.as_dict()["not_applied"]
    assert found.output_shapes == {"y": [-1, 8]}


def test_outputs_are_compared_by_name_and_nan_where_the_source_has_nan() -> None:
    reference = {"a": np.array([1.0, np.nan]), "b": np.array([2.0])}
    assert legalize_module.relative_error(reference, {"a": np.array([1.0, np.nan]), "b": np.array([2.0])}) == 0
    assert legalize_module.relative_error(reference, {"a": np.array([1.0, 0.0]), "b": np.array([2.0])}) == np.inf
    assert legalize_module.relative_error(reference, {"b": np.array([2.0])}) == np.inf


def test_a_rewrite_that_breaks_the_graph_is_undone_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    def dangling_input(g: Graph) -> list[str]:
        node = next(n for n in g.graph.node if n.op_type == "MaxPool")
        node.input[0] = "nowhere"
        return [node.name]

    monkeypatch.setitem(REWRITES, "maxpool_padding", Rewrite("maxpool_padding", "broken on purpose", dangling_input))
    found = legalize(_relu_pool_model())
    (row,) = found.rewrites
    assert row["status"].startswith("reverted: onnxruntime cannot run") and row["max_relative_error"] is None
    assert [n.op_type for n in found.model.graph.node] == ["Relu", "MaxPool"]
