"""ONNX frontend: an .onnx file -> onnx2tf -> a float SavedModel (NHWC), never quantized here.

Dynamic dimensions are fixed from the recipe's input shapes (the Edge TPU needs static shapes) in a copy of the
model (`model_static.onnx`), which onnx2tf converts in a subprocess: that isolates its global state, lets a
timeout stop it, puts the interpreter's bin folder on PATH (onnx2tf runs `onnxsim` by name) and runs it in a
scratch working directory holding the sample-image file onnx2tf otherwise downloads (see _OFFLINE_SAMPLE).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit import lazy
from compiler_kit.errors import BadInputError, describe_exception, strip_ansi
from compiler_kit.frontends.base import SAVED_MODEL, FloatModel, layout_perm
from compiler_kit.recipe import InputSpec, Source

STATIC_ONNX, ONNX2TF_LOG = "model_static.onnx", "onnx2tf.log"
SIGNATURE_KEY = "serving_default"
TIMEOUT_S = 1800
# onnx2tf 1.29.24 loads this file from the working directory whenever every input is 4-D with 3 channels (after
# its layout change) and downloads it when absent, even without quantization. We never use onnx2tf's own int8
# path, so its values do not matter: zeros of the right shape keep the conversion offline.
_OFFLINE_SAMPLE = ("calibration_image_sample_data_20x128x128x3_float32.npy", (20, 128, 128, 3))


def load_onnx(path: Path) -> Any:
    """Read and check an ONNX model; a missing, truncated or foreign file is a `BadInputError`."""
    import onnx

    if not path.is_file():
        raise BadInputError("model file not found", path=path, fix="check source.path in the recipe")
    try:
        model = onnx.load(str(path), load_external_data=False)
        _refuse_external_data_outside(model, path)
        onnx.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except BadInputError:
        raise
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError, OSError...
        raise BadInputError(
            f"not a valid ONNX model ({describe_exception(exc)})",
            path=path,
            fix="check the file is complete; re-export it with torch.onnx.export or your framework's exporter",
        ) from None
    if not model.graph.node:
        raise BadInputError("the ONNX model has no nodes (truncated or empty)", path=path)
    return model


def _refuse_external_data_outside(model: Any, path: Path) -> None:
    """External tensor data must be a file in the model's folder. onnx refuses '..' and absolute locations but
    follows symbolic links, and the data is copied into the build folder (model_static.onnx): a link to a private
    file would leak it into the build's artifacts."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    folder = path.parent.resolve()
    for tensor in _get_all_tensors(model):  # onnx's own walk over every tensor, subgraphs included
        location = ExternalDataInfo(tensor).location if uses_external_data(tensor) else ""
        if location and not (folder / location).resolve().is_relative_to(folder):
            raise BadInputError(
                f"tensor '{tensor.name}' keeps its data in '{location}', which leads outside the model's folder",
                path=path,
                fix="keep external data files in the model's folder (no links out of it), or save a single file",
            )


def graph_inputs(model: Any) -> list[Any]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def dims(value: Any) -> list[int | str | None]:
    """A value's shape: ints where fixed, the symbolic name (or None) where dynamic."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value.type.tensor_type.shape.dim]


def fix_input_shapes(model: Any, inputs: list[InputSpec], path: Path) -> None:
    """Set every input's dynamic dimensions from the recipe; contradictions name the input and dimension."""
    values = graph_inputs(model)
    if len(values) != len(inputs):
        raise BadInputError(f"the model has {len(values)} inputs, the recipe describes {len(inputs)}", path=path)
    for value, spec in zip(values, inputs, strict=True):
        shape = dims(value)
        if len(shape) != len(spec.shape):
            raise BadInputError(
                f"input '{value.name}' has rank {len(shape)} {shape}, the recipe's inputs '{spec.name}' gives "
                f"rank {len(spec.shape)} {spec.shape}",
                path=path,
                fix=f"set inputs[].shape to the model's {len(shape)}-D shape, in the model's layout",
            )
        for axis, (model_dim, wanted) in enumerate(zip(shape, spec.shape, strict=True)):
            if isinstance(model_dim, int) and model_dim != wanted:
                raise BadInputError(
                    f"input '{value.name}' dimension {axis} is {model_dim} in the model but {wanted} in the recipe "
                    f"(model shape {shape}, recipe {spec.shape} {spec.layout or ''})".rstrip(),
                    path=path,
                    fix="give inputs[].shape and layout in the model's own layout (NCHW for most ONNX files)",
                )
            value.type.tensor_type.shape.dim[axis].dim_value = wanted


def output_shapes(model: Any) -> list[list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    return [[d if isinstance(d, int) else -1 for d in dims(value)] for value in inferred.graph.output]


class OnnxFrontend:
    def convert(self, source: Source, inputs: list[InputSpec], out_dir: Path) -> FloatModel:
        assert source.path is not None
        return convert_onnx(source.path, inputs, out_dir)


def convert_onnx(onnx_path: Path, inputs: list[InputSpec], out_dir: Path) -> FloatModel:
    import onnx

    model = load_onnx(onnx_path)
    fix_input_shapes(model, inputs, onnx_path)
    onnx.save(model, str(out_dir / STATIC_ONNX))
    _run_onnx2tf(out_dir / STATIC_ONNX, out_dir, model)
    model_inputs, model_outputs = saved_model_shapes(out_dir / SAVED_MODEL)
    return FloatModel(
        out_dir,
        SIGNATURE_KEY,
        input_perms=[layout_perm(spec.shape, shape) for spec, shape in zip(inputs, model_inputs, strict=True)],
        output_perms=[layout_perm(s, m) for s, m in zip(output_shapes(model), model_outputs, strict=True)],
    )


def _run_onnx2tf(static_onnx: Path, out_dir: Path, model: Any) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory(prefix="ckit-onnx2tf-") as work:
        name, shape = _OFFLINE_SAMPLE
        np.save(Path(work) / name, np.zeros(shape, dtype=np.float32))
        command = [sys.executable, "-m", "onnx2tf.onnx2tf", "-i", str(static_onnx), "-o", str(Path(work) / "out")]
        try:
            done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BadInputError(f"onnx2tf did not finish within {TIMEOUT_S} s", path=static_onnx) from None
        log = strip_ansi(done.stdout + done.stderr)
        (out_dir / ONNX2TF_LOG).write_text(log)
        saved = Path(work) / "out"
        if done.returncode != 0 or not (saved / "saved_model.pb").exists():
            raise BadInputError(
                f"onnx2tf cannot convert the model: {_failure(log, model)}",
                path=static_onnx.parent / ONNX2TF_LOG,
                fix="replace that op in the source model (or export it at another opset) and build again",
            )
        (out_dir / SAVED_MODEL).mkdir()
        for part in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            if (saved / part).exists():
                shutil.move(str(saved / part), str(out_dir / SAVED_MODEL / part))


def _failure(log: str, model: Any) -> str:
    """Name the op and node onnx2tf stopped at, from either way it reports them."""
    op_of = {node.name: node.op_type for node in model.graph.node}
    if found := re.search(r"(\w+) OP is not yet implemented", log):
        op = found.group(1)
        nodes = [name for name, op_type in op_of.items() if op_type == op]
        return f"op {op} (node {', '.join(nodes) or '?'}) is not implemented by onnx2tf"
    if found := re.search(r"onnx_op_name: (\S+)", log):
        node = found.group(1)
        return f"op {op_of.get(node, '?')} (node {node}) failed to convert"
    errors = [line for line in log.splitlines() if "Error" in line or "ERROR" in line]
    return errors[-1].strip() if errors else "see the log"


def saved_model_shapes(saved_model_dir: Path) -> tuple[list[list[int]], list[list[int]]]:
    """Input and output shapes of the SavedModel's serving signature, in signature order."""
    tf = lazy.tensorflow()
    signature = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE_KEY]
    inputs = [spec.shape.as_list() for spec in signature.structured_input_signature[1].values()]
    outputs = [spec.shape.as_list() for spec in signature.structured_outputs.values()]
    return inputs, outputs
