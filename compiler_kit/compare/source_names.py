"""Which layer of the SOURCE model each float TFLite activation is: the names users can find in their own model.

Converters rename everything (onnx2tf's `tf.nn.convolution_3`, fused `conv/Relu;conv/BiasAdd;...` names), so the
activations are matched by value: the source model runs on a few verification samples with every intermediate
tensor kept (onnxruntime with each node's output made a graph output; Keras with each layer's output), the float
TFLite model on the same samples, and each TFLite activation takes the source tensor holding the same values. Values
are compared by layout-blind moments per sample (count, mean, RMS, min, max: layouts differ, NCHW against NHWC)
within a float32 round-off tolerance. Where several source
tensors hold the same values (a Flatten keeps its input's values), the one of the same shape wins, then the one of
the same shape up to axis order, then the earliest.

Names: an ONNX node's name (the original name where ckit renamed it for the converter); for a torch model exported
by ckit, the module path torch's exporter records in each node's metadata and the ONNX op (`features.0.2 (Clip)`);
a Keras layer's name. A TFLite activation with no counterpart (a layout TRANSPOSE onnx2tf added) gets none.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.compare.layers import TensorGraph
from compiler_kit.frontends.base import FloatModel, Perm
from compiler_kit.recipe import Source

SAMPLES = 2  # values of two samples: a tensor that happens to be all zeros on one sample is rarely so on both
TORCH_NAME_SCOPES = "pkg.torch.onnx.name_scopes"  # the module path of a node, in torch's dynamo exporter
TOLERANCE = 1e-4  # of the tensor's largest magnitude: conversion is lossless to about float32 round-off


@dataclass(frozen=True)
class SourceTensor:
    name: str  # the source layer (node, module or Keras layer) that produces it
    shape: tuple[int, ...]
    fingerprint: np.ndarray  # _fingerprint of its values on the samples
    order: int  # position in the source graph


def _fingerprint(arrays: list[np.ndarray]) -> np.ndarray:
    """Per sample: element count, mean, root mean square, min and max. Layout-blind like a sort of the values, but
    one pass over them (sorting every activation of a 640x640 detector took most of a minute)."""
    moments = []
    for array in arrays:
        values = array.astype(np.float64).ravel()
        moments += [values.size, values.mean(), np.sqrt(np.mean(values**2)), values.min(), values.max()]
    return np.asarray(moments)


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    counts = slice(0, None, 5)
    if a.shape != b.shape or not np.array_equal(a[counts], b[counts]):
        return False
    extremes = np.abs(np.concatenate([a[3::5], a[4::5], b[3::5], b[4::5]]))
    scale = max(float(extremes.max(initial=0.0)), 1e-12)
    return bool(np.abs(a - b).max(initial=0.0) <= TOLERANCE * scale)


def _rank(tensor: SourceTensor, shape: tuple[int, ...]) -> tuple[int, int]:
    """Lower is better: the same shape, then the same dimensions in another order, then any; then graph order."""
    fit = 0 if tensor.shape == shape else 1 if sorted(tensor.shape) == sorted(shape) else 2
    return fit, tensor.order


def match_source_names(
    float_tflite: Path, source: list[SourceTensor], samples: list[np.ndarray], input_perm: Perm
) -> dict[str, str]:
    """TFLite float tensor name -> the source layer whose output holds the same values."""
    graph = TensorGraph(float_tflite, 1)
    wanted = list(graph.activations)
    runs = [graph.run(_to_model(x, input_perm), wanted) for x in samples]
    names: dict[str, str] = {}
    for index in wanted:
        if not np.issubdtype(np.dtype(graph.tensors[index]["dtype"]), np.floating):
            continue
        arrays = [run[index] for run in runs]
        if not any(np.any(array) for array in arrays):
            continue  # all zeros: it would match any other zero tensor
        values, shape = _fingerprint(arrays), graph.shape(index)
        candidates = [tensor for tensor in source if _same_values(tensor.fingerprint, values)]
        if candidates:
            names[graph.tensors[index]["name"]] = min(candidates, key=lambda t: _rank(t, shape)).name
    return names


def _to_model(sample: np.ndarray, perm: Perm) -> np.ndarray:
    x = sample if perm is None else np.ascontiguousarray(sample.transpose(perm))
    return np.asarray(x, dtype=np.float32)


def onnx_tensors(path: Path, samples: list[np.ndarray], renamed: dict[str, str]) -> list[SourceTensor]:
    """Every float node output of an ONNX model over `samples`, named after its node (see the module's rule)."""
    import onnx

    model = onnx.load(str(path))
    producer: dict[str, tuple[str, int]] = {}
    for order, node in enumerate(model.graph.node):
        for output in node.output:
            if output:
                producer[output] = (_node_name(node, renamed), order)
    runs = onnx_intermediates(model, list(producer), samples)
    return _tensors(producer, list(producer), runs)


def onnx_intermediates(model: Any, wanted: list[str], samples: Iterable[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The `wanted` tensors of an ONNX model (onnx.ModelProto, edited in place) on each sample: each made a graph
    output, every node kept (no graph optimization fuses them away)."""
    import onnx
    import onnxruntime

    present = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted if name not in present)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [output.name for output in session.get_outputs()]
    return [dict(zip(names, session.run(None, {input_name: x}), strict=True)) for x in samples]


def _tensors(
    producer: dict[str, tuple[str, int]], names: Iterable[str], runs: list[dict[str, Any]]
) -> list[SourceTensor]:
    tensors = []
    for name in names:
        if name not in producer:
            continue
        arrays = [np.asarray(run[name]) for run in runs]
        if not np.issubdtype(arrays[0].dtype, np.floating):
            continue
        layer, order = producer[name]
        tensors.append(SourceTensor(layer, tuple(arrays[0].shape), _fingerprint(arrays), order))
    return tensors


def _node_name(node: Any, renamed: dict[str, str]) -> str:
    """The module path torch's exporter records in the node's metadata (`features.0.2 (Clip)`), else the node's
    original name."""
    scopes = next((p.value for p in node.metadata_props if p.key == TORCH_NAME_SCOPES), None)
    if scopes:
        path = ast.literal_eval(scopes)  # ['', 'features', 'features.0', 'features.0.2', 'hardtanh']
        if len(path) > 2:
            return f"{path[-2]} ({node.op_type})"
    return renamed.get(node.name, node.name)


def keras_tensors(path: Path, samples: list[np.ndarray]) -> list[SourceTensor]:
    """Every float layer output of a Keras model over `samples`, named after its layer."""
    from compiler_kit.frontends.keras import load_keras_model

    keras = lazy.keras()
    model = load_keras_model(path)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    runs = keras_intermediates(model, [layer.output for layer in layers], samples)
    producer = {layer.name: (layer.name, order) for order, layer in enumerate(layers)}
    return _tensors(producer, producer, [dict(zip(producer, run, strict=True)) for run in runs])


Samples = list[np.ndarray]
# The source model's activations, by the recipe's source.framework: the Keras model, the ONNX file, or the ONNX
# file ckit exported from the torch module (its runner `onnx` in the chain).
SOURCE_ACTIVATIONS: dict[str, Callable[[Source, FloatModel, Samples], list[SourceTensor]]] = {
    "keras": lambda source, _, samples: keras_tensors(_path(source), samples),
    "onnx": lambda source, float_model, samples: onnx_tensors(_path(source), samples, float_model.renamed),
    "torch": lambda _, float_model, samples: onnx_tensors(
        float_model.root / float_model.intermediates["onnx"], samples, {}
    ),
}


def _path(source: Source) -> Path:
    assert source.path is not None  # Keras and ONNX sources are files
    return source.path


def source_names(source: Source, float_model: FloatModel, float_tflite: Path, samples: Samples) -> dict[str, str]:
    """Float TFLite tensor name -> the source layer it is (see the module's rule), on the first samples."""
    chosen = samples[:SAMPLES]
    tensors = SOURCE_ACTIVATIONS[source.framework](source, float_model, chosen)
    return match_source_names(float_tflite, tensors, chosen, float_model.input_perms[0])


def keras_intermediates(model: Any, tensors: list[Any], samples: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The given symbolic tensors of a Keras model on each sample."""
    probe = lazy.keras().Model(model.inputs, tensors)
    return [[np.asarray(y) for y in probe([x], training=False)] for x in samples]  # a list: the inputs' structure
