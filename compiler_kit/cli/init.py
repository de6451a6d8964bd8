"""`ckit init MODEL`: write a commented starter recipe for a model file, to edit and then `ckit build`.

The framework comes from the suffix. What can be read cheaply is read: an ONNX file's input name and shape (with
`onnx`), a Keras file's input layer from its saved config (a .keras zip's config.json, an .h5 file's
`model_config` with h5py), without importing TensorFlow or torch. Whatever cannot be known (a state_dict's module,
a torch model's input shape, the data) is written as a placeholder that validates, marked `# TODO`, and listed on
stdout. The file is written atomically and never replaces an existing one without --force.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from compiler_kit.artifacts import write_atomically
from compiler_kit.cli.errors import exits_cleanly
from compiler_kit.errors import BadInputError

FRAMEWORKS = {".keras": "keras", ".h5": "keras", ".onnx": "onnx", ".pt2": "torch", ".pt": "torch", ".pth": "torch"}
SUPPORTED = ", ".join(FRAMEWORKS)
COMMENT_COLUMN = 40
DYNAMIC_BATCH = "was dynamic: fixed to 1 for the Edge TPU"


@dataclass
class ModelFacts:
    """What the starter recipe says about the model: the source section's lines and the input."""

    framework: str
    source: list[tuple[str, str]]  # (line, comment) of the source section
    input_name: str = "input"
    shape: list[int] = field(default_factory=lambda: [1, 3, 224, 224])
    shape_comment: str = "TODO: the model's input shape (batch 1); this one is a guess"
    layout: str | None = "NCHW"
    notes: list[str] = field(default_factory=list)  # extra comment lines under the input
    todos: list[str] = field(default_factory=list)


@exits_cleanly
def init(
    model: Annotated[Path, typer.Argument(help=f"Trained model file ({SUPPORTED}).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Recipe file to write.")] = Path("recipe.yaml"),
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the recipe file if it exists.")] = False,
) -> None:
    """Write a commented starter recipe for MODEL: framework from the suffix, the input read from the file where
    that is cheap (ONNX, Keras), placeholders for the calibration and verification data, the gates commented.

    Exit codes: 0 written · 2 the model file is missing or of an unknown kind, or the recipe file exists (pass
    --force to overwrite it).
    """
    suffix = model.suffix.lower()
    if suffix not in FRAMEWORKS:
        raise BadInputError(
            f"unknown model file suffix {model.suffix or '(none)'!r}",
            path=model,
            fix=f"ckit init takes {SUPPORTED} files (Keras, ONNX, PyTorch)",
        )
    if not model.is_file():
        raise BadInputError("model file not found", path=model, fix="check the path")
    if out.is_dir():
        raise BadInputError("is a folder", path=out, fix="give --out a file name, e.g. --out recipe.yaml")
    if out.exists() and not force:
        raise BadInputError("the recipe file already exists", path=out, fix="pass --force to overwrite it")
    if out.resolve() == model.resolve():
        raise BadInputError("--out names the model file itself", path=out, fix="give --out a .yaml file")

    facts = _read_model(model, suffix, _relative(model, out.parent))
    _write_atomically(out, render(facts, _name_for(model)))
    typer.echo(f"wrote {out}")
    todos = [*facts.todos, *DATA_TODOS]
    typer.echo("before `ckit build`, edit the lines marked TODO:")
    typer.echo("\n".join(f"  - {todo}" for todo in todos))
    typer.echo(f"then: ckit build {out}")


DATA_TODOS = [
    "calibration.data.path: a few hundred samples from the TRAINING distribution (never the evaluation split)",
    "verify.data.path: held-out samples, with labels for accuracy",
    "calibration.preprocess: the exact preprocessing the model was trained with",
]


# --- reading the model -------------------------------------------------------------------------------------------


def _read_model(model: Path, suffix: str, rel: str) -> ModelFacts:
    framework = FRAMEWORKS[suffix]
    path_line = f"path: {_scalar(rel)}"
    if framework == "onnx":
        return _onnx_facts(model, path_line)
    if framework == "keras":
        return _keras_facts(model, path_line)
    todo = "inputs[0].shape and layout: the torch model's input (a guess is written)"
    if suffix == ".pt2" or _is_torchscript(model):
        kind = "ExportedProgram (.pt2)" if suffix == ".pt2" else "TorchScript module"
        source = [(path_line, f"a {kind}: it carries its own code and weights")]
        return ModelFacts("torch", source, todos=[todo])
    source = [
        ("# A state_dict holds weights only: name the code that builds the module with `entry_point`", ""),
        ("# (package.module:factory, a callable returning the nn.Module; importable from this recipe's folder", ""),
        ("# or the working directory). If the file is a whole pickled module, save `model.state_dict()`", ""),
        ("# instead: ckit loads with weights_only=True and refuses pickled modules (unpickling can run code).", ""),
        ("entry_point: your_package.your_module:build_model", "TODO: your model's factory"),
        (f"weights: {_scalar(rel)}", "state_dict, loaded with weights_only=True"),
    ]
    return ModelFacts("torch", source, todos=["source.entry_point: the factory that builds your nn.Module", todo])


def _onnx_facts(model: Path, path_line: str) -> ModelFacts:
    from compiler_kit.frontends.onnx import dims, graph_inputs, load_onnx

    inputs = graph_inputs(load_onnx(model))
    if len(inputs) != 1:
        names = ", ".join(value.name for value in inputs) or "none"
        raise BadInputError(
            f"the ONNX model has {len(inputs)} inputs ({names}); ckit builds single-input models for now",
            path=model,
            fix="export the model with one input (fold the others into constants)",
        )
    value = inputs[0]
    raw = dims(value)
    facts = ModelFacts("onnx", [(path_line, "")], input_name=value.name, layout=None)
    if not raw:
        raise BadInputError(
            f"input {value.name!r} has no known rank in the ONNX file",
            path=model,
            fix="export the model with its input's shape (e.g. torch.onnx.export with an example input)",
        )
    shape: list[int] = []
    comments: list[str] = []
    for axis, dim in enumerate(raw):
        size = dim if isinstance(dim, int) and dim > 0 else None  # None: dynamic (a name, or unknown)
        fixed = size is not None
        shape.append(size if size is not None else 1)
        label = f"{dim!r}" if dim else "unnamed"
        if axis == 0 and not fixed:
            comments.append(f"axis 0 ({label}) {DYNAMIC_BATCH}")
        elif axis == 0 and dim != 1:
            shape[0] = 1
            comments.append(f"the file fixes the batch to {dim}: re-export with batch 1 or a dynamic batch")
            facts.todos.append("source: re-export the ONNX model with batch 1 or a dynamic batch")
        elif not fixed:
            comments.append(f"axis {axis} ({label}) was dynamic: fixed to 1 - TODO set the size you deploy")
            facts.todos.append(f"inputs[0].shape axis {axis}: dynamic in the ONNX file, set its size")
    facts.shape = shape
    facts.shape_comment = "; ".join(comments) or "from the ONNX file"
    elem_type = value.type.tensor_type.elem_type
    if elem_type != 1:  # onnx.TensorProto.FLOAT
        facts.notes.append(f"# NOTE: the ONNX input's element type is {elem_type} (not FLOAT); ckit feeds float32")
    if len(shape) == 4 and shape[1] in (1, 3):
        facts.layout = "NCHW"
    elif len(shape) == 4 and shape[3] in (1, 3):
        facts.layout = "NHWC"
    elif len(shape) == 4:
        facts.notes.append("# layout: NCHW                 # TODO for an image input: NCHW or NHWC")
    return facts


def _keras_facts(model: Path, path_line: str) -> ModelFacts:
    facts = ModelFacts("keras", [(path_line, "")], layout="NHWC", shape=[1, 224, 224, 3])
    config = _keras_config(model)
    found = _keras_input(config) if config else None
    if found is None:
        facts.shape_comment = "TODO: the model's input shape (batch 1), not readable from the file: a guess"
        facts.todos.append("inputs[0]: name and shape of the Keras model's input (model.inputs)")
        return facts
    name, shape = found
    facts.input_name = name or "input"
    dynamic = [axis for axis, dim in enumerate(shape[1:], start=1) if not dim]
    facts.shape = [1, *(dim or 1 for dim in shape[1:])]
    comments = [f"axis 0 {DYNAMIC_BATCH}" if not shape[0] else "from the Keras config"]
    for axis in dynamic:
        comments.append(f"axis {axis} was dynamic: fixed to 1 - TODO set the size you deploy")
        facts.todos.append(f"inputs[0].shape axis {axis}: dynamic in the Keras model, set its size")
    facts.shape_comment = "; ".join(comments)
    facts.layout = "NHWC" if len(facts.shape) == 4 else None
    return facts


def _keras_config(model: Path) -> dict[str, Any] | None:
    """The saved model config, read without Keras: config.json in a .keras zip, `model_config` in an .h5 file."""
    try:
        if zipfile.is_zipfile(model):
            with zipfile.ZipFile(model) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(model, "r") as handle:
            text = handle.attrs.get("model_config")
        return json.loads(text.decode() if isinstance(text, bytes) else text) if text else None
    except Exception:  # a foreign or damaged file: ckit build says what is wrong with it; here, a TODO
        return None


def _keras_input(config: dict[str, Any]) -> tuple[str | None, list[int | None]] | None:
    """(name, batch shape) of the model's single input, from Keras 3 or Keras 2 config JSON."""
    body = config.get("config") or {}
    layers = body.get("layers") or []
    found = []
    for layer in layers:
        layer_config = layer.get("config") or {}
        shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
        if layer.get("class_name") == "InputLayer" and shape:
            found.append((layer_config.get("name"), list(shape)))
    if not found and layers:  # Keras 2 Sequential: the first layer carries batch_input_shape
        first = layers[0].get("config") or {}
        if shape := first.get("batch_input_shape") or first.get("batch_shape"):
            found.append((None, list(shape)))
    if not found and (shape := (config.get("build_config") or {}).get("input_shape")):
        found.append((None, list(shape)))
    if len(found) != 1 or not all(dim is None or isinstance(dim, int) for dim in found[0][1]):
        return None
    return found[0]


def _is_torchscript(model: Path) -> bool:
    """TorchScript archives carry their code (`<name>/code/...`); a torch.save state_dict does not."""
    try:
        with zipfile.ZipFile(model) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


# --- writing the recipe ------------------------------------------------------------------------------------------


def render(facts: ModelFacts, name: str) -> str:
    """The recipe text. Every placeholder validates, so the file loads as soon as it is written."""
    layout = (
        [_commented(f"    layout: {facts.layout}", _layout_comment(facts))]
        if facts.layout
        else ["    # layout: NCHW or NHWC, for a 4-D image input"]
    )
    stored = "NHWC" if facts.layout == "NCHW" else "NCHW"
    data_layout = (
        [_commented(f"    # layout: {stored}", f"when the arrays are stored {stored}, not {facts.layout}")]
        if facts.layout
        else []
    )
    lines = [
        f"# Starter recipe written by `ckit init` for {facts.framework}. Edit the lines marked TODO, then run",
        "# `ckit build` on this file. Paths are relative to this file; `ckit schema` prints the schema of every key.",
        _commented(f"name: {name}", "build name: the build folder defaults to build/<name> beside this file"),
        "source:",
        f"  framework: {facts.framework}",
        *(_commented(f"  {text}", comment) for text, comment in facts.source),
        "inputs:",
        _commented(f"  - name: {_scalar(facts.input_name)}", "the model's input name"),
        _commented(f"    shape: [{', '.join(str(dim) for dim in facts.shape)}]", facts.shape_comment),
        *layout,
        *(f"    {note}" for note in facts.notes),
        "",
        "# Calibration sets the int8 ranges: a few hundred samples from the TRAINING distribution, never from the",
        "# evaluation split. A data set is an .npz (samples_key, labels_key), an .npy (labels_path) or a folder of",
        "# images (one subfolder per class; decoded, resized to preprocess.resize, laid out as the input).",
        "calibration:",
        "  data:",
        _commented("    path: data/calibration.npz", "TODO: training-distribution samples"),
        _commented("    samples_key: x", "npz: the array of samples"),
        *data_layout,
        _commented("  num_samples: 200", "drawn with the seed below; all of them if fewer"),
        "  seed: 0",
        "  # How raw samples become model input, for calibration AND verification: exactly as in training.",
        "  # Order: resize (images), then x * scale, then (x - mean) / std per channel.",
        "  preprocess:",
        _commented("    scale: 1.0", "TODO: e.g. 0.00392156862745098 for uint8 pixels -> [0, 1]"),
        _commented("    mean: [0.0]", "per channel, or one value for all"),
        _commented("    std: [1.0]", "per channel, or one value for all"),
        _commented("    # resize: [224, 224]", "images folders: [height, width]"),
        _commented("    # color: rgb", "images folders: rgb or grayscale"),
        "",
        "# Full-integer int8 (every op integer, as the Edge TPU requires).",
        "quantization:",
        _commented("  input_type: int8", "int8 | uint8 | float32"),
        _commented("  output_type: int8", "int8 | uint8 | float32"),
        _commented("  granularity: per-channel", "per-channel | per-tensor"),
        "",
        "# Verification: HELD-OUT samples (never used to train or calibrate) fed identically to every runner;",
        "# labels make accuracy measurable, without them the report measures agreement and drift only.",
        "verify:",
        "  data:",
        _commented("    path: data/verify.npz", "TODO: held-out samples"),
        _commented("    samples_key: x", "npz: the array of samples"),
        _commented("    labels_key: y", "npz: integer labels; delete this line when there are none"),
        *data_layout,
        _commented("  # num_samples: 1000", "a seeded subset; all samples when absent"),
        _commented("  threads: 1", "CPU threads for every runner"),
        "  latency:",
        _commented("    warmup: 10", "untimed runs first (the first inference is reported separately)"),
        _commented("    runs: 100", "timed runs, batch 1"),
        "",
        _commented("edgetpu:", "the Edge TPU stage"),
        _commented("  compile: auto", "auto: compile when edgetpu_compiler is found, else predict | required | off"),
        "",
        "# Gates: the build exits 3 when one fails (the report is still written). Drift gates judge",
        "# source -> tflite-int8. Uncomment the section and the gates you want:",
        "# gates:",
        _commented("#   max_accuracy_drop_pp: 1.0", "percentage points; needs verify labels"),
        _commented("#   min_top1_agreement: 0.97", "share of equal top-1 predictions"),
        _commented("#   min_snr_db: 15", "signal-to-noise ratio of the int8 outputs"),
        _commented("#   min_cosine: 0.99", "mean cosine similarity of the outputs"),
        "#   max_latency_p50_ms:",
        _commented("#     tflite-int8: 5.0", "median latency per runner, in ms"),
        _commented("#   min_ops_on_edgetpu_fraction: 0.9", "ops mapped to the Edge TPU (compiled, or predicted)"),
        "#   max_predicted_edgetpu_ms:",
        _commented("#     usb: 10.0", "PREDICTED Edge TPU latency (cost model): usb | devboard | pcie"),
        "",
        "# output:",
        _commented(f"#   dir: build/{name}", "the default; `ckit build --out DIR` overrides it"),
    ]
    return "\n".join(lines) + "\n"


def _layout_comment(facts: ModelFacts) -> str:
    if facts.framework == "keras":
        return "channels last, as Keras models take it"
    if facts.framework == "onnx":
        return "channels second in the ONNX file; onnx2tf makes the TFLite model NHWC"
    return "TODO: the torch model's own layout (usually NCHW)"


def _commented(text: str, comment: str) -> str:
    return f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}" if comment else text


def _scalar(value: str) -> str:
    """`value` as a YAML scalar, quoted only when it needs to be."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n").removesuffix("\n...")


def _name_for(model: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.stem).lstrip("_.-")
    return name or "model"


def _relative(target: Path, folder: Path) -> str:
    """`target` relative to `folder`; absolute when they share nothing but the filesystem root."""
    target, folder = target.resolve(), folder.resolve()
    try:
        if Path(os.path.commonpath([target, folder])) == Path(target.anchor):
            return target.as_posix()
        return Path(os.path.relpath(target, folder)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return target.as_posix()


def _write_atomically(out: Path, text: str) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as exc:
        raise BadInputError(
            f"cannot write the recipe: {exc.strerror or exc}", path=out, fix="write it elsewhere with --out"
        ) from None
