"""ONNX frontend: an .onnx file -> onnx2tf -> a float SavedModel (NHWC), never quantized here.

ckit works on its own copy of the model (`model_static.onnx`): dynamic and -1 dimensions fixed from the recipe's
input shapes (the Edge TPU needs static shapes), names onnx2tf rejects renamed (onnx_names.py), simplified with
onnxsim (as onnx2tf would, but before the Edge TPU legalization, so that onnxsim's pad fusion cannot undo it), and
legalized (compiler_kit.legalize). onnx2tf then converts it in a subprocess (onnx2tf_worker.py, which stops it
after the SavedModel and reads its signature's shapes), without simplifying again: that isolates its global state,
lets a timeout stop it, keeps TensorFlow out of this process, and runs it in a scratch working directory holding
the sample-image file onnx2tf otherwise downloads (see _OFFLINE_SAMPLE). Output shapes come from onnxruntime running
that copy, so outputs whose shapes the file leaves open still map onto the converted model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.artifacts import process_alive
from compiler_kit.errors import BadInputError, describe_exception, strip_ansi
from compiler_kit.frontends.base import (
    DEFAULT_OPTIONS,
    SAVED_MODEL,
    ConvertOptions,
    FloatModel,
    ModelOutput,
    layout_perm,
    refuse_non_finite,
)
from compiler_kit.frontends.onnx2tf_worker import SHAPES_FILE, SIGNATURE_KEY
from compiler_kit.frontends.onnx_names import sanitize_names
from compiler_kit.legalize import legalize
from compiler_kit.processes import run_streaming
from compiler_kit.progress import NO_TASK, Tally, Task
from compiler_kit.recipe import InputSpec, Source

STATIC_ONNX, ONNX2TF_LOG = "model_static.onnx", "onnx2tf.log"
# Each conversion works in a temporary folder named after its process, `ckit-onnx2tf-<pid>-<random>`, so that the
# next conversion can tell a killed build's folder from a running one's (older names, without a pid, are left alone).
WORK_PREFIX = "ckit-onnx2tf-"
_WORK_DIR_NAME = re.compile(rf"{WORK_PREFIX}(\d+)-[^-]+")
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
        raise BadInputError(
            "the ONNX model has no nodes (truncated or empty)", path=path, fix="export or copy the model again"
        )
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


def non_finite_tensors(model: Any) -> list[str]:
    """Initializers and Constant values (subgraphs included) holding NaN or Inf, by name."""
    from onnx import TensorProto, numpy_helper
    from onnx.external_data_helper import _get_all_tensors

    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    return [
        tensor.name or "(a Constant node's unnamed value)"
        for tensor in _get_all_tensors(model)
        if tensor.data_type in floats and not np.isfinite(numpy_helper.to_array(tensor).astype(np.float64)).all()
    ]


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
        raise BadInputError(
            f"the model has {len(values)} inputs, the recipe describes {len(inputs)}",
            path=path,
            fix="describe each model input under inputs (ckit init MODEL writes them)",
        )
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
            if isinstance(model_dim, int) and model_dim > 0 and model_dim != wanted:  # 0 and -1 mean "any size"
                raise BadInputError(
                    f"input '{value.name}' dimension {axis} is {model_dim} in the model but {wanted} in the recipe "
                    f"(model shape {shape}, recipe {spec.shape} {spec.layout or ''})".rstrip(),
                    path=path,
                    fix="give inputs[].shape and layout in the model's own layout (NCHW for most ONNX files)",
                )
            value.type.tensor_type.shape.dim[axis].dim_value = wanted


class ConverterFailed(BadInputError):
    """onnx2tf could not convert the model. Its log travels with the error: the stage's scratch folder is
    deleted on failure, so the build keeps the log in the build folder and names that file."""

    fix = (
        "replace that op in the source model, or export it at another opset; if a legalization rewrite is named, "
        "build again with it in legalize.skip"
    )

    def __init__(self, problem: str, log: str) -> None:
        self.problem, self.log = problem, log
        super().__init__(problem, fix=self.fix)


class OnnxFrontend:
    def convert(
        self,
        source: Source,
        inputs: list[InputSpec],
        out_dir: Path,
        options: ConvertOptions = DEFAULT_OPTIONS,
    ) -> FloatModel:
        assert source.path is not None
        return convert_onnx(source.path, inputs, out_dir, options)


def convert_onnx(
    onnx_path: Path,
    inputs: list[InputSpec],
    out_dir: Path,
    options: ConvertOptions = DEFAULT_OPTIONS,
) -> FloatModel:
    import onnx

    model = load_onnx(onnx_path)
    refuse_non_finite(non_finite_tensors(model), onnx_path)
    fix_input_shapes(model, inputs, onnx_path)
    original_names = sanitize_names(model)
    with work_dir() as work:
        model = simplify(model, Path(work))
        settings = options.legalize
        remedies = frozenset(settings.remedies().values())
        legal = legalize(model, frozenset(settings.skip), settings.enabled, remedies, options.data)
        onnx.save(legal.model, str(out_dir / STATIC_ONNX))
        with options.reporter.task("onnx2tf nodes", len(legal.model.graph.node)) as task:
            names = _Names(legal.model, original_names)
            model_inputs, model_outputs = _run_onnx2tf(out_dir / STATIC_ONNX, out_dir, Path(work), names, task)
    outputs = []
    for position, output in enumerate(legal.model.graph.output):
        name, key = original_names.get(output.name, output.name), onnx2tf_output_key(position)
        perm = _output_perm(name, legal.output_shapes[output.name], model_outputs.get(key))
        outputs.append(ModelOutput(name, key, perm))
    return FloatModel(
        out_dir,
        SIGNATURE_KEY,
        input_perms=[layout_perm(spec.shape, shape) for spec, shape in zip(inputs, model_inputs, strict=True)],
        outputs=outputs,
        legalization=legal.as_dict(),
        renamed=original_names,
    )


def work_dir() -> tempfile.TemporaryDirectory[str]:
    """A fresh scratch folder named after this process, once those of killed conversions are gone."""
    remove_orphaned_work_dirs(Path(tempfile.gettempdir()))
    return tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-")


def remove_orphaned_work_dirs(temp_dir: Path) -> None:
    """Remove the scratch folders of conversions whose process is gone: SIGKILL skips TemporaryDirectory's cleanup
    and leaves onnx2tf's output behind (MBs each). A live process's folder stays, so concurrent builds are safe."""
    for folder in temp_dir.glob(f"{WORK_PREFIX}*"):
        owner = _WORK_DIR_NAME.fullmatch(folder.name)
        if owner and not process_alive(int(owner.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


def onnx2tf_output_key(position: int) -> str:
    """onnx2tf saves a Keras model whose outputs are the ONNX graph's outputs in order; TensorFlow keys the serving
    signature's outputs `output_<position>` in that order, and orders the signature (and the TFLite model's output
    tensors) by other rules (a two-head model came out heat map first, logits second)."""
    return f"output_{position}"


def _output_perm(name: str, source_shape: list[int], model_shape: list[int | None] | None) -> Any:
    if model_shape is None:
        raise BadInputError(
            f"onnx2tf's SavedModel has no output for '{name}'",
            fix="report the model; onnx2tf.log in the build folder shows what it converted",
        )
    try:
        return layout_perm(source_shape, model_shape)
    except ValueError:
        raise BadInputError(
            f"onnx2tf turned output '{name}' of shape {source_shape} into {model_shape}, which is no layout change "
            "ckit can undo",
            fix="export the model with that output in a plain layout (e.g. flatten it), or report the model",
        ) from None


def simplify(model: Any, work: Path) -> Any:
    """onnxsim's simplified model (three passes, as onnx2tf runs it, in a subprocess as onnx2tf does: onnxsim can
    crash), or the model as it is when onnxsim fails, as onnx2tf would go on too."""
    import onnx

    path = work / "simplified.onnx"
    onnx.save(model, str(path))
    onnxsim = Path(sys.executable).parent / "onnxsim"
    for _ in range(3):
        try:
            done = subprocess.run([str(onnxsim), str(path), str(path)], capture_output=True, timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return model
        if done.returncode != 0:
            return model
    return onnx.load(str(path))


@dataclass(frozen=True)
class _Names:
    """The converted model's op types by node name, and the way back to the user's names."""

    model: Any
    original: dict[str, str]

    def op(self, node: str) -> str:
        return next((n.op_type for n in self.model.graph.node if n.name == node), "?")

    def user(self, name: str) -> str:
        return self.original.get(name, name)


def _run_onnx2tf(
    static_onnx: Path, out_dir: Path, work: Path, names: _Names, task: Task = NO_TASK
) -> tuple[list[list[int | None] | None], dict[str, list[int | None] | None]]:
    """onnx2tf's SavedModel moved into out_dir, and its serving signature's input shapes in order and output shapes
    by key, as the worker read them."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    name, shape = _OFFLINE_SAMPLE
    np.save(work / name, np.zeros(shape, dtype=np.float32))
    # The worker stops onnx2tf after its SavedModel (see onnx2tf_worker.py). -nuo: the model is simplified already,
    # and onnxsim would fuse the legalization's Pad back into MaxPool.
    worker = "compiler_kit.frontends.onnx2tf_worker"
    command = [sys.executable, "-m", worker, str(work / "out"), "-i", str(static_onnx.resolve()), "-nuo"]
    lines = _Onnx2tfLines(task)
    done = run_streaming(command, cwd=work, env=env, timeout=TIMEOUT_S, on_line=lines.read)
    if done.expired:
        raise BadInputError(
            f"onnx2tf did not finish within {TIMEOUT_S} s",
            path=static_onnx,
            fix="report the model (onnx2tf is stuck on it); legalize.skip may avoid the construct it is stuck on",
        )
    log = strip_ansi(done.stdout.decode(errors="replace") + "".join(lines.lines))
    saved = work / "out"
    if done.code != 0 or not (saved / "saved_model.pb").exists() or not (saved / SHAPES_FILE).exists():
        raise ConverterFailed(f"onnx2tf cannot convert the model: {failure(log, names)}", log)
    (out_dir / ONNX2TF_LOG).write_text(log)
    (out_dir / SAVED_MODEL).mkdir()
    for part in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
        if (saved / part).exists():
            shutil.move(str(saved / part), str(out_dir / SAVED_MODEL / part))
    shapes = json.loads((saved / SHAPES_FILE).read_text())
    return shapes["inputs"], shapes["outputs"]


class _Onnx2tfLines:
    """onnx2tf's output as it comes (the worker sends it all to stderr, in order): kept for the log, and its
    `INFO: N / M` line per node counted into the task."""

    NODE = re.compile(r"INFO:\S*\s+\S*?(\d+) / (\d+)")

    def __init__(self, task: Task) -> None:
        self.tally, self.lines = Tally(task), list[str]()

    def read(self, line: str) -> None:
        self.lines.append(line)
        if found := self.NODE.search(strip_ansi(line)):
            self.tally.reach(int(found.group(1)))


def failure(log: str, names: _Names) -> str:
    """The node onnx2tf stopped at, its op and onnx2tf's own message, from each way onnx2tf reports them."""
    if found := re.search(r"(\w+) OP is not yet implemented", log):
        op = found.group(1)
        nodes = [names.user(n.name) for n in names.model.graph.node if n.op_type == op]
        return f"op {op} (node {', '.join(nodes[:5]) or '?'}) is not implemented by onnx2tf"
    message = _exception_message(log)
    if found := re.search(r"ERROR: onnx_op_name: (\S+)", log):
        node = found.group(1)
        return f"node {names.user(node)} (op {names.op(node)}) failed to convert: {message}"
    if found := re.search(r"ERROR: Generation of saved_model failed.*\nERROR: ([^/\s]+)", log):
        node = found.group(1)
        return f"node {names.user(node)} (op {names.op(node)}): saving the SavedModel failed: {message}"
    return message


def _exception_message(log: str) -> str:
    """onnx2tf's own words: the last line of the traceback it printed, else its first ERROR line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    traceback_end = next(
        (lines[i - 1] for i, line in enumerate(lines) if line.startswith("ERROR: input_onnx_file_path") and i), None
    )
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return traceback_end or (errors[0] if errors else "see the log")
