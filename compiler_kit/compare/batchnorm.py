"""The source model's first BatchNorm, and what it sees now: evidence of how the model's training data was scaled.

A BatchNorm layer keeps the running mean and variance of its input over training. Fed the calibration samples
through the source model, its input's per-channel statistics should land near them; data preprocessed otherwise
than in training does not (compiler_kit.compare.diagnoses judges it). The first BatchNorm is the one the input's
preprocessing reaches most directly. Found in a torch module (named_modules order), a Keras model (its layers), or
an ONNX graph that keeps BatchNormalization nodes (exporters often fold them into convolutions: then nothing is
found).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from compiler_kit import lazy
from compiler_kit.compare.diagnoses import BatchNormEvidence, statistics_of
from compiler_kit.compare.source_names import keras_intermediates, onnx_intermediates
from compiler_kit.recipe import Source

Samples = list[np.ndarray]


def torch_first_batchnorm(source: Source, samples: Samples) -> BatchNormEvidence | None:
    import torch

    from compiler_kit.frontends.torch import load_torch_model, runnable

    model = runnable(load_torch_model(source))
    found = next(
        (
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None
        ),
        None,
    )
    if found is None:
        return None
    name, layer = found
    seen: list[np.ndarray] = []
    hook = layer.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().numpy()))
    try:
        with torch.no_grad():
            for x in samples:
                model(torch.from_numpy(np.ascontiguousarray(x)))
    finally:
        hook.remove()
    assert layer.running_mean is not None and layer.running_var is not None  # tracked: the search above wants it
    return statistics_of(name, layer.running_mean.numpy(), layer.running_var.numpy(), seen, axis=1)


def keras_first_batchnorm(source: Source, samples: Samples) -> BatchNormEvidence | None:
    from compiler_kit.frontends.keras import load_keras_model

    assert source.path is not None
    keras = lazy.keras()
    model = load_keras_model(source.path)
    layer = next((layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)), None)
    if layer is None:
        return None
    seen = [run[0] for run in keras_intermediates(model, [layer.input], samples)]
    axis = layer.axis[0] if isinstance(layer.axis, list | tuple) else layer.axis
    mean, var = np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)
    return statistics_of(layer.name, mean, var, seen, axis=axis % seen[0].ndim)


def onnx_first_batchnorm(source: Source, samples: Samples) -> BatchNormEvidence | None:
    import onnx
    from onnx import numpy_helper

    assert source.path is not None
    model = onnx.load(str(source.path))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = next(
        (
            n
            for n in model.graph.node
            if n.op_type == "BatchNormalization" and n.input[3] in constants and n.input[4] in constants
        ),
        None,
    )
    if node is None:
        return None
    seen = [run[node.input[0]] for run in onnx_intermediates(model, [node.input[0]], samples)]
    return statistics_of(node.name, constants[node.input[3]], constants[node.input[4]], seen, axis=1)


FIRST_BATCHNORM: dict[str, Callable[[Source, Samples], BatchNormEvidence | None]] = {
    "torch": torch_first_batchnorm,
    "keras": keras_first_batchnorm,
    "onnx": onnx_first_batchnorm,
}


def first_batchnorm(source: Source, samples: Samples) -> BatchNormEvidence | None:
    return FIRST_BATCHNORM[source.framework](source, samples)
