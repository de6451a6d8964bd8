"""Hostile model files of every format ckit reads: truncated, random bytes, or crafted to run code when loaded.

Each must end as a BadInputError (exit 2) that names the file, never another exception, and nothing in it may run:
a sentinel file that the payload would create must not appear. Every model is tiny and built here.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from compiler_kit.cli import app
from compiler_kit.edgetpu.analysis import analyze
from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError
from compiler_kit.frontends.keras import check_inputs, load_keras_model
from compiler_kit.frontends.onnx import load_onnx
from compiler_kit.frontends.torch import load_torch_file, load_weights
from compiler_kit.recipe import InputSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).relu()


class RunsCode:
    """Unpickling this creates `sentinel` (by calling `open`): what a malicious pickle would do, harmlessly."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.sentinel), "w")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One valid file per format: format name -> path."""
    import keras
    import onnx
    import tensorflow as tf
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("valid_models")
    inputs = keras.Input((4,))
    keras_model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, activation="relu")(inputs)))
    keras_model.save(folder / "model.keras")
    keras_model.save(folder / "model.h5")
    (folder / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [value("x", TensorProto.FLOAT, [1, 4])],
        [value("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph), folder / "model.onnx")
    net = TinyNet().eval()
    torch.jit.save(torch.jit.script(net), folder / "model.pt")
    torch.export.save(torch.export.export(net, (torch.zeros(1, 4),)), folder / "model.pt2")
    torch.save(net.state_dict(), folder / "weights.pt")
    names = {"keras": "model.keras", "h5": "model.h5", "tflite": "model.tflite", "onnx": "model.onnx"}
    names |= {"torchscript": "model.pt", "exported_program": "model.pt2", "state_dict": "weights.pt"}
    return {kind: folder / name for kind, name in names.items()}


LOADERS: dict[str, Callable[[Path], Any]] = {
    "keras": load_keras_model,
    "h5": load_keras_model,
    "onnx": load_onnx,
    "torchscript": load_torch_file,
    "exported_program": load_torch_file,
    "state_dict": lambda path: load_weights(TinyNet(), path),
    "tflite": analyze,
}


def refused(load: Callable[[Path], Any], path: Path, *fragments: str) -> str:
    with pytest.raises(BadInputError) as raised:
        load(path)
    message = str(raised.value)
    assert raised.value.exit_code == EXIT_BAD_INPUT and message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_every_valid_model_loads(models: dict[str, Path]) -> None:
    for kind, load in LOADERS.items():
        load(models[kind])


# --- truncated and random bytes ---

CORRUPTIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "one-byte": lambda data, rng: data[:1],
    "cut-10%": lambda data, rng: data[: len(data) // 10],
    "cut-50%": lambda data, rng: data[: len(data) // 2],
    "cut-90%": lambda data, rng: data[: len(data) * 9 // 10],
    "random": lambda data, rng: rng.bytes(len(data)),
    "magic-then-random": lambda data, rng: data[:8] + rng.bytes(len(data) - 8),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@pytest.mark.parametrize("kind", LOADERS)
def test_a_truncated_or_random_file_is_bad_input(models: dict[str, Path], tmp_path: Path, kind: str, corruption: str):
    valid = models[kind]
    path = tmp_path / valid.name
    path.write_bytes(CORRUPTIONS[corruption](valid.read_bytes(), np.random.default_rng(0)))
    refused(LOADERS[kind], path)


def test_random_damage_to_a_tflite_is_analyzed_or_bad_input(models: dict[str, Path], tmp_path: Path) -> None:
    """Flatbuffers check nothing: damaged bytes reach the analysis rules as nonsense shapes and indices."""
    data, rng, path = models["tflite"].read_bytes(), np.random.default_rng(7), tmp_path / "damaged.tflite"
    for _ in range(1500):
        damaged = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            start = int(rng.integers(8, len(data)))
            damaged[start : start + 2] = rng.bytes(2)
        path.write_bytes(bytes(damaged))
        try:
            analyze(path)
        except BadInputError as exc:
            assert str(exc).startswith(f"{path}: ")


def test_a_truncated_model_exits_2_through_the_cli(models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "cut.tflite"
    path.write_bytes(models["tflite"].read_bytes()[:300])
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"error: {path}: " in result.output and "Traceback" not in result.output


def test_a_truncated_source_model_stops_ckit_build_with_exit_2(
    models: dict[str, Path], digits_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "digits.onnx"
    model.write_bytes(models["onnx"].read_bytes()[:40])
    recipe = {
        "name": "truncated",
        "source": {"framework": "onnx", "path": str(model)},
        "inputs": [{"name": "image", "shape": [1, 1, 16, 16], "layout": "NCHW"}],
        "calibration": {"data": {"path": str(digits_dir / "calibration.npz"), "layout": "NHWC"}, "num_samples": 8},
        "verify": {"data": {"path": str(digits_dir / "eval.npz"), "layout": "NHWC"}, "num_samples": 8},
        "edgetpu": {"compile": "off"},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["build", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "build"), "-q"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"error: {model}: not a valid ONNX model" in result.output and "Traceback" not in result.output


# --- files crafted to run code when loaded ---


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    path = tmp_path / "sentinel"
    yield path
    assert not path.exists(), "loading the model ran code"


def _torch_save(obj: Any, **options: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **options)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the raw pickles' protocol 4
@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("state_dict", lambda s: _torch_save({"fc.weight": RunsCode(s)})),
        ("state_dict", lambda s: _torch_save({"fc.weight": RunsCode(s)}, _use_new_zipfile_serialization=False)),
        ("state_dict", lambda s: pickle.dumps(RunsCode(s), protocol=2)),
        ("torchscript", lambda s: _torch_save(RunsCode(s))),
        ("torchscript", lambda s: pickle.dumps(RunsCode(s))),
    ],
    ids=["weights-zip", "weights-legacy", "weights-raw-pickle", "path-zip", "path-raw-pickle"],
)
def test_a_torch_pickle_that_would_run_code_is_refused(tmp_path: Path, sentinel: Path, kind: str, payload) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(payload(sentinel))
    refused(LOADERS[kind], path)


def _rewrite_pt2(valid: Path, target: Path, change: Callable[[dict[str, bytes], str], None]) -> Path:
    """Copy an ExportedProgram archive with `change(files, root)` applied to its members (root: its folder)."""
    with zipfile.ZipFile(valid) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    change(files, next(iter(files)).split("/")[0])
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def _pickled_weight(sentinel: Path) -> Callable[[dict[str, bytes], str], None]:
    """A weight marked `use_pickle`: torch.export.load reads it with torch.load(weights_only=False)."""

    def change(files: dict[str, bytes], root: str) -> None:
        config_name = f"{root}/data/weights/model_weights_config.json"
        config = json.loads(files[config_name])
        config["config"]["fc.weight"]["use_pickle"] = True
        files[config_name] = json.dumps(config).encode()
        files[f"{root}/data/weights/{config['config']['fc.weight']['path_name']}"] = _torch_save(RunsCode(sentinel))

    return change


def _example_inputs(sentinel: Path) -> Callable[[dict[str, bytes], str], None]:
    """Example inputs that fail weights_only: torch.export.load retries them with weights_only=False."""

    def change(files: dict[str, bytes], root: str) -> None:
        files[f"{root}/data/sample_inputs/model.pt"] = _torch_save(RunsCode(sentinel))

    return change


def _opaque_constant(sentinel: Path) -> Callable[[dict[str, bytes], str], None]:
    """An "opaque object" constant: torch.export.load reads it with pickle.loads."""

    def change(files: dict[str, bytes], root: str) -> None:
        entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
        files[f"{root}/data/constants/model_constants_config.json"] = json.dumps({"config": {"c": entry}}).encode()
        files[f"{root}/data/constants/opaque_obj_0"] = pickle.dumps(RunsCode(sentinel))

    return change


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("craft", "fragment"),
    [
        (_pickled_weight, "unsafe unpickling"),
        (_example_inputs, "unsafe unpickling"),
        (_opaque_constant, "pickled Python objects ('data/constants/opaque_obj_0')"),
    ],
    ids=["pickled-weight", "example-inputs", "opaque-constant"],
)
def test_an_exported_program_that_would_unpickle_code_is_refused(
    models: dict[str, Path], tmp_path: Path, sentinel: Path, craft, fragment: str
) -> None:
    path = _rewrite_pt2(models["exported_program"], tmp_path / "crafted.pt2", craft(sentinel))
    refused(load_torch_file, path, fragment)


def test_an_exported_program_with_native_code_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    def add_library(files: dict[str, bytes], root: str) -> None:
        files[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF would be loaded and run"

    path = _rewrite_pt2(models["exported_program"], tmp_path / "aoti.pt2", add_library)
    refused(load_torch_file, path, "compiled code", "data/aotinductor/")


def _lambda_model(sentinel: Path) -> Any:
    import keras

    target = str(sentinel)  # the closure Keras serializes with the bytecode
    inputs = keras.Input((4,))
    code = keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1])(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(code))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras_lambda_layer_is_refused_unrun(tmp_path: Path, sentinel: Path, suffix: str) -> None:
    path = tmp_path / f"lambda{suffix}"
    _lambda_model(sentinel).save(path)
    sentinel.unlink(missing_ok=True)  # building the model ran the lambda, here; loading must not
    refused(load_keras_model, path, "holds Python code (a Lambda layer)")


def test_a_keras_config_naming_another_module_is_refused_unrun(
    models: dict[str, Path], tmp_path: Path, sentinel: Path
) -> None:
    with zipfile.ZipFile(models["keras"]) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    layer = config["config"]["layers"][1]
    layer.update(module="builtins", class_name="open", config={"file": str(sentinel), "mode": "w"})
    files["config.json"] = json.dumps(config).encode()
    path = tmp_path / "crafted.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    refused(load_keras_model, path, "not a readable Keras model")


# --- external data that leads out of the model's folder ---


def _onnx_with_external_data(folder: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.UINT8, [4], vals=b"\x00" * 4, raw=True)
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [value("x", TensorProto.FLOAT, [1])],
        [value("y", TensorProto.FLOAT, [1])],
        initializer=[weight],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.mark.parametrize("location", ["link.bin", "../private.bin", "/etc/hostname"])
def test_onnx_external_data_cannot_pull_in_a_file_from_elsewhere(tmp_path: Path, location: str) -> None:
    (tmp_path / "private.bin").write_bytes(b"secret")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(tmp_path / "private.bin")  # onnx itself follows links
    refused(load_onnx, _onnx_with_external_data(folder, location), "outside the model's folder")


def test_onnx_external_data_beside_the_model_loads(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x01\x02\x03\x04")
    model = load_onnx(_onnx_with_external_data(tmp_path, "weights.bin"))
    assert model.graph.initializer[0].raw_data == b"\x01\x02\x03\x04"


# --- recipe input names that the framework cannot take ---


@pytest.mark.parametrize("name", ["two words", "ünïcode", "_reserved", "a:0"])
def test_a_keras_input_name_tensorflow_cannot_take_is_bad_input(models: dict[str, Path], name: str) -> None:
    model = load_keras_model(models["keras"])
    spec = InputSpec(name=name, shape=[1, 4])
    refused(lambda path: check_inputs(model, [spec], path), models["keras"], "cannot name a TensorFlow signature")
