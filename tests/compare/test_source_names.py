"""Source-model layer names for the converted model's activations, matched by value."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from compiler_kit.compare.source_names import (
    TORCH_NAME_SCOPES,
    SourceTensor,
    _fingerprint,
    _node_name,
    _rank,
    _same_values,
)


def _tensor(shape: tuple[int, ...], order: int, name: str = "t") -> SourceTensor:
    return SourceTensor(name, shape, np.zeros(int(np.prod(shape))), order)


def test_values_match_whatever_the_layout_within_round_off() -> None:
    nchw = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    nhwc = nchw.transpose(0, 2, 3, 1)
    assert _same_values(_fingerprint([nchw]), _fingerprint([nhwc * (1 + 1e-6)]))
    assert not _same_values(_fingerprint([nchw]), _fingerprint([nhwc + 0.01]))
    assert not _same_values(_fingerprint([nchw]), _fingerprint([nhwc[:, :3]]))


def test_the_same_shape_wins_then_the_same_dimensions_then_graph_order() -> None:
    shape = (1, 4, 4, 8)
    flatten, pool, earlier = _tensor((1, 128), 5), _tensor((1, 8, 4, 4), 4), _tensor((1, 4, 4, 8), 9)
    assert min([flatten, pool], key=lambda t: _rank(t, shape)) is pool
    assert min([flatten, pool, earlier], key=lambda t: _rank(t, shape)) is earlier
    assert min([flatten, pool], key=lambda t: _rank(t, (1, 128))) is flatten


def test_a_torch_export_names_the_module_and_an_onnx_node_keeps_its_original_name() -> None:
    node = helper.make_node("Clip", ["x"], ["y"], name="n4_2")
    entry = node.metadata_props.add()
    entry.key, entry.value = TORCH_NAME_SCOPES, "['', 'features', 'features.1', 'features.1.block.0.2', 'hardtanh']"
    assert _node_name(node, {}) == "features.1.block.0.2 (Clip)"
    top_level = helper.make_node("Sigmoid", ["x"], ["y"], name="node_sigmoid")
    entry = top_level.metadata_props.add()
    entry.key, entry.value = TORCH_NAME_SCOPES, "['', 'sigmoid']"  # an op of forward() itself: no module
    assert _node_name(top_level, {}) == "node_sigmoid"
    renamed = helper.make_node("Conv", ["x", "w"], ["y"], name="Conv_0")
    assert _node_name(renamed, {"Conv_0": "Conv@0"}) == "Conv@0"  # ckit's sanitized name -> the file's


@pytest.mark.slow
def test_every_computed_layer_of_the_keras_build_is_named_after_its_keras_layer(built) -> None:
    names = [layer["source_name"] for layer in built.report["layers"]]
    assert names == [None, "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten", "dense", "logits"]
    assert "source model layer" in (built.build_dir / "report.md").read_text()
