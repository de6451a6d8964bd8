"""Ops left outside LiteRT's XNNPACK delegate, on tiny Keras models built here, float and full-integer int8."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from compiler_kit.runners.xnnpack import delegated_nodes, ops_outside_xnnpack
from tests.keras_tflite import keras_tflite

# from_keras_model with int8 model I/O warns that no input statistics were given: the calibration data sets them.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

SHAPE = (1, 16, 16, 3)


Layers = Callable[[Any], Any]


def _build(layers: Layers, folder: Path, name: str) -> dict[str, Path]:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE[1:], batch_size=SHAPE[0])  # a fixed batch: no SHAPE/PACK ops for a dynamic one
    model = keras.Model(inputs, layers(inputs))
    return {
        kind: keras_tflite(model, list(SHAPE), folder / f"{name}_{kind}.tflite", quantize=kind == "int8")
        for kind in ("float", "int8")
    }


def _conv_net(x: Any) -> Any:
    from keras import layers

    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.DepthwiseConv2D(3, activation="relu")(x)
    return layers.Dense(10)(layers.Flatten()(x))


def _mixed_net(x: Any) -> Any:
    """XNNPACK takes AVERAGE_POOL_2D and SOFTMAX in float only, GATHER in neither: 3 partitions in int8, 2 in float."""
    import tensorflow as tf
    from keras import layers

    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.Lambda(lambda t: tf.gather(t, [3, 0, 5, 1, 2, 4, 7, 6], axis=-1))(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.AveragePooling2D(2)(layers.Conv2D(8, 3, activation="relu")(x))
    return layers.Softmax()(layers.Dense(10)(layers.Flatten()(x)))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("xnnpack_models")
    nets = {"conv": _conv_net, "mixed": _mixed_net}
    return {name: _build(layers, folder, name) for name, layers in nets.items()}


@pytest.mark.parametrize("kind", ["float", "int8"])
def test_a_conv_net_is_delegated_whole(models, kind):
    assert ops_outside_xnnpack(models["conv"][kind], threads=1) == {}


def test_float_leaves_out_only_the_op_xnnpack_never_takes(models):
    assert ops_outside_xnnpack(models["mixed"]["float"], threads=2) == {"GATHER": 1}


def test_int8_leaves_out_the_ops_xnnpack_takes_in_float_only(models):
    outside = ops_outside_xnnpack(models["mixed"]["int8"], threads=2)
    assert outside == {"AVERAGE_POOL_2D": 2, "GATHER": 1, "SOFTMAX": 1}
    assert next(iter(outside)) == "AVERAGE_POOL_2D"  # most frequent first, not GATHER, the first met


def test_thread_count_does_not_change_the_partition(models):
    path = models["mixed"]["int8"]
    assert ops_outside_xnnpack(path, threads=1) == ops_outside_xnnpack(path, threads=4)


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`:UserWarning")  # meant here
@pytest.mark.parametrize("kind", ["float", "int8"])
def test_agrees_with_one_delegate_node_per_op(models, kind):
    """A second reading of the same truth: keeping every tensor makes XNNPACK wrap each op it takes in a DELEGATE
    node of its own, whose outputs are that op's."""
    from ai_edge_litert.interpreter import Interpreter

    path = models["mixed"][kind]
    interpreter = Interpreter(model_path=str(path), num_threads=1, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    nodes = interpreter._get_ops_details()
    producer = {t: node["index"] for node in nodes if node["op_name"] != "DELEGATE" for t in node["outputs"]}
    one_per_op = {producer[t] for node in nodes if node["op_name"] == "DELEGATE" for t in node["outputs"]}
    outside = [node["op_name"] for node in nodes if node["op_name"] != "DELEGATE" and node["index"] not in one_per_op]
    assert ops_outside_xnnpack(path, threads=1) == {op: outside.count(op) for op in set(outside)}


# --- the walk from a delegate node's boundary tensors back to the nodes it replaced, on hand-made node lists ---


def _node(index: int, op: str, inputs: list[int], outputs: list[int]) -> dict[str, Any]:
    return {"index": index, "op_name": op, "inputs": inputs, "outputs": outputs}


def test_walk_stops_at_the_partition_inputs():
    # t0 -> CONV(w1) -> t2 -> POOL -> t3 -> SOFTMAX -> t4 -> CONV(w5, bias -1) -> t6; XNNPACK took 0, 1 and 3.
    nodes = [
        _node(0, "CONV_2D", [0, 1], [2]),
        _node(1, "MAX_POOL_2D", [2], [3]),
        _node(2, "SOFTMAX", [3], [4]),
        _node(3, "CONV_2D", [4, 5, -1], [6]),
        _node(4, "DELEGATE", [0, 1], [3]),
        _node(5, "DELEGATE", [4, 5], [6]),
    ]
    assert delegated_nodes(nodes) == {0, 1, 3}


def test_no_delegate_node_means_nothing_delegated():
    nodes = [_node(0, "ADD", [0, 1], [2]), _node(1, "MUL", [2, 2], [3])]
    assert delegated_nodes(nodes) == set()
