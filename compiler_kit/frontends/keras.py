"""Keras frontend: a `.keras` (Keras 3) or `.h5` model -> a float SavedModel with the recipe's static shapes.

A Keras model usually has a dynamic batch dimension; the Edge TPU needs static shapes, so the SavedModel is
exported with an input signature taken from the recipe (batch 1).

Models load in Keras's safe mode, for .keras and legacy .h5 files alike (Keras 3.15): a Lambda layer's Python
bytecode is never deserialized, since it would run.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.errors import BadInputError, describe_exception
from compiler_kit.frontends.base import (
    DEFAULT_OPTIONS,
    SAVED_MODEL,
    ConvertOptions,
    FloatModel,
    ModelOutput,
    refuse_non_finite,
)
from compiler_kit.recipe import InputSpec, Legalize, Source

SUFFIXES = (".keras", ".h5", ".hdf5")
SIGNATURE_KEY = "serve"
# The recipe's input names name the SavedModel signature's arguments, so they must be TensorFlow op names.
_TF_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_./>-]*")


def load_keras_model(path: Path) -> Any:
    """Load a Keras model file, turning every way it can be wrong into one clear `BadInputError`."""
    if not path.is_file():
        raise BadInputError("model file not found", path=path, fix="check source.path in the recipe")
    if path.suffix.lower() not in SUFFIXES:
        raise BadInputError(
            f"a Keras model file must end in {', '.join(SUFFIXES)}",
            path=path,
            fix="save the model with model.save('name.keras'), or set source.framework to its framework",
        )
    if path.stat().st_size == 0:
        raise BadInputError("the model file is empty", path=path, fix="save the model again")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise BadInputError(
            "not a .keras archive (a zip file): truncated, or a model of another format",
            path=path,
            fix="save the model again with model.save('name.keras'), or set source.framework to its framework",
        )
    keras = lazy.keras()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types (ValueError, OSError, BadZipFile, KeyError...)
        if "arbitrary code execution" in str(exc):  # safe mode refusing a Lambda layer's bytecode
            raise BadInputError(
                "the model holds Python code (a Lambda layer); it is not loaded, since loading would run it",
                path=path,
                fix="replace the Lambda layer with built-in Keras layers and save the model again",
            ) from None
        raise BadInputError(
            f"not a readable Keras model ({describe_exception(exc)})",
            path=path,
            fix="check the file is complete and was written by model.save() with Keras 3 or as .h5",
        ) from None
    floats = [weight for weight in model.weights if "float" in str(weight.dtype)]
    refuse_non_finite([w.path for w in floats if not np.isfinite(np.asarray(w.numpy())).all()], path)
    return model


def check_inputs(model: Any, inputs: list[InputSpec], path: Path) -> None:
    """The recipe's input shapes must match the model's where the model fixes a dimension."""
    model_inputs = model.inputs
    if len(model_inputs) != len(inputs):
        raise BadInputError(
            f"the model has {len(model_inputs)} inputs, the recipe describes {len(inputs)}",
            path=path,
            fix="describe each model input under inputs",
        )
    for tensor, spec in zip(model_inputs, inputs, strict=True):
        if spec.name and not _TF_NAME.fullmatch(spec.name):
            raise BadInputError(
                f"inputs '{spec.name}' cannot name a TensorFlow signature argument",
                path=path,
                fix="use letters, digits and _ . / - > in inputs[].name, starting with a letter, digit or '.'",
            )
        model_shape = list(tensor.shape)
        fixed = all(m is None or m == r for m, r in zip(model_shape, spec.shape, strict=False))
        if len(model_shape) != len(spec.shape) or not fixed:
            raise BadInputError(
                f"inputs '{spec.name}' has shape {spec.shape} but the model takes "
                f"{['?' if d is None else d for d in model_shape]}",
                path=path,
                fix="set inputs[].shape to the model's input shape, batch 1",
            )


def keras_output_names(model: Any) -> list[str]:
    """The model's output names, in the order it returns its outputs: its output layers' names (a model that has none,
    or uses one layer twice, gets `output_<k>` for them)."""
    count = len(model.outputs)
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count or len(set(names)) != count:
        names = [f"output_{k}" for k in range(count)]
    return names


# Keras layers reach TFLite through TensorFlow's own converter, which writes the builtins the Edge TPU maps (a
# ZeroPadding2D is a PAD, a DepthwiseConv2D a DEPTHWISE_CONV_2D): the ONNX rewrites have nothing to fix here.
NOT_LEGALIZED = {"enabled": False, "reason": "Keras models convert without onnx2tf: no rewrite applies"}


def not_legalized(settings: Legalize) -> dict[str, object]:
    """The legalization section of a Keras build; remedies the recipe asks for are named (`ignored`), so that a
    build with `legalize.bias_correction: true` says it ran without it (the report's findings repeat it)."""
    ignored = [f"legalize.{field}" for field in settings.remedies()]
    return {**NOT_LEGALIZED, **({"ignored": ignored} if ignored else {})}


class KerasFrontend:
    def convert(
        self,
        source: Source,
        inputs: list[InputSpec],
        out_dir: Path,
        options: ConvertOptions = DEFAULT_OPTIONS,
    ) -> FloatModel:
        tf = lazy.tensorflow()
        assert source.path is not None
        model = load_keras_model(source.path)
        check_inputs(model, inputs, source.path)
        signature = [tf.TensorSpec(spec.shape, tf.float32, name=spec.name) for spec in inputs]
        names = keras_output_names(model)

        def serve(*tensors: Any) -> dict[str, Any]:
            """The model's outputs keyed by their Keras names: the signature (and the TFLite model's) keeps them."""
            outputs = model(tensors[0] if len(tensors) == 1 else list(tensors), training=False)
            if isinstance(outputs, dict):
                return {name: outputs[name] for name in names}
            return dict(zip(names, outputs if isinstance(outputs, list | tuple) else [outputs], strict=True))

        archive = lazy.keras().export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE_KEY, serve, input_signature=signature)
        archive.write_out(str(out_dir / SAVED_MODEL), verbose=False)
        return FloatModel(
            out_dir,
            SIGNATURE_KEY,
            input_perms=[None] * len(inputs),
            outputs=[ModelOutput(name, name, None) for name in names],
            legalization=not_legalized(options.legalize),
        )
