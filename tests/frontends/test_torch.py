"""The PyTorch frontend: entry points, weights, files (TorchScript, ExportedProgram, refused pickles) and the ONNX
export. Untrained modules suffice: nothing here depends on what the weights are."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler_kit.errors import BadInputError
from compiler_kit.frontends.torch import (
    export_onnx,
    load_torch_file,
    load_torch_model,
    module_from_entry_point,
    runnable,
)
from compiler_kit.recipe import InputSpec, Source
from recipes.models.digits_torch import DigitsNet
from tests.conftest import TORCH_ENTRY_POINT

IMAGE = InputSpec(name="image", shape=[1, 1, 16, 16], layout="NCHW")


def _entry_point_source(entry_point: str, weights: Path | None = None, recipe_dir: Path | None = None) -> Source:
    data = {"framework": "torch", "entry_point": entry_point, "weights": str(weights) if weights else None}
    return Source.model_validate(data, context={"base_dir": recipe_dir} if recipe_dir else None)


def _bad_input(call, *fragments: str) -> str:
    with pytest.raises(BadInputError) as raised:
        call()
    assert raised.value.exit_code == 2
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def _sample(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((1, 1, 16, 16), dtype=np.float32))


# --- entry points ---


def test_the_entry_point_builds_the_module_and_loads_the_weights(tmp_path: Path) -> None:
    trained = DigitsNet().eval()
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    model = runnable(load_torch_model(_entry_point_source(TORCH_ENTRY_POINT, tmp_path / "w.pt")))
    x = _sample()
    torch.testing.assert_close(model(x), trained(x))


def test_an_entry_point_whose_module_does_not_import() -> None:
    _bad_input(
        lambda: load_torch_model(_entry_point_source("no_such_package.models:build_model")),
        "entry point 'no_such_package.models:build_model' failed",
        "ModuleNotFoundError",
    )


def test_an_entry_point_whose_attribute_is_missing() -> None:
    _bad_input(
        lambda: load_torch_model(_entry_point_source("recipes.models.digits_torch:no_such_factory")),
        "AttributeError",
        "no_such_factory",
    )


def test_an_entry_point_that_does_not_return_a_module() -> None:
    _bad_input(lambda: module_from_entry_point("builtins:dict", None), "returned a dict, not a torch.nn.Module")


def test_entry_points_import_from_the_recipe_folder(tmp_path: Path) -> None:
    (tmp_path / "ckit_test_factories.py").write_text(
        "import torch\n\n"
        "def linear():\n    return torch.nn.Linear(4, 2)\n\n"
        "def not_a_module():\n    return [1, 2, 3]\n\n"
        "def broken():\n    raise ValueError('needs a config file')\n"
    )
    module = load_torch_model(_entry_point_source("ckit_test_factories:linear", recipe_dir=tmp_path))
    assert isinstance(module, torch.nn.Linear)
    assert str(tmp_path) not in sys.path  # the folder is importable only while loading
    _bad_input(
        lambda: load_torch_model(_entry_point_source("ckit_test_factories:not_a_module", recipe_dir=tmp_path)),
        "returned a list, not a torch.nn.Module",
    )
    _bad_input(
        lambda: load_torch_model(_entry_point_source("ckit_test_factories:broken", recipe_dir=tmp_path)),
        "ValueError: needs a config file",
    )


# --- weights ---


def _weights(tmp_path: Path, change) -> Path:
    state = DigitsNet().state_dict()
    change(state)
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    return path


def _resize_first_conv(state: dict) -> None:
    state["features.0.weight"] = torch.zeros(8, 1, 3, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("features.0.weight"), "key 'features.0.weight' is missing"),
        (lambda s: s.pop("classifier.3.bias"), "key 'classifier.3.bias' is missing"),
        (lambda s: s.update({"head.weight": torch.zeros(2)}), "unexpected key 'head.weight'"),
        (_resize_first_conv, "'features.0.weight' has shape [8, 1, 3, 3] in the file and [16, 1, 3, 3] in the module"),
    ],
    ids=["missing-first", "missing-last", "unexpected", "wrong-shape"],
)
def test_weights_that_do_not_match_name_the_first_mismatching_key(tmp_path: Path, change, message) -> None:
    weights = _weights(tmp_path, change)
    _bad_input(
        lambda: load_torch_model(_entry_point_source(TORCH_ENTRY_POINT, weights)),
        str(weights),
        "the weights do not match the module",
        message,
    )


def test_a_missing_weights_file(tmp_path: Path) -> None:
    _bad_input(
        lambda: load_torch_model(_entry_point_source(TORCH_ENTRY_POINT, tmp_path / "absent.pt")),
        "weights file not found",
    )


def test_a_weights_file_holding_something_else_than_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    _bad_input(lambda: load_torch_model(_entry_point_source(TORCH_ENTRY_POINT, path)), "holds a list, not a state_dict")


# --- files ---


@pytest.fixture
def pickled_module(tmp_path: Path) -> Path:
    path = tmp_path / "whole_model.pt"
    torch.save(DigitsNet(), path)  # the whole module, pickled: refused, loading it could run any code
    return path


def test_a_pickled_module_as_weights_is_refused(pickled_module: Path) -> None:
    _bad_input(
        lambda: load_torch_model(_entry_point_source(TORCH_ENTRY_POINT, pickled_module)),
        str(pickled_module),
        "unsafe unpickling",
    )


def test_a_pickled_module_as_path_is_refused(pickled_module: Path) -> None:
    source = Source(framework="torch", path=pickled_module)
    _bad_input(lambda: load_torch_model(source), str(pickled_module), "unsafe unpickling")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.pt", "model file not found"),
        (lambda d: _write(d / "model.onnx", b"\x08\x08\x12\x07pytorch" + bytes(64)), "not a readable PyTorch file"),
        (lambda d: _write(d / "text.pt", b"hello, not a model\n"), "not a readable PyTorch file"),
        (lambda d: _write(d / "broken.pt2", b"PK\x03\x04 truncated"), "not a TorchScript file or ExportedProgram"),
    ],
    ids=["missing", "onnx-bytes", "text", "broken-pt2"],
)
def test_a_file_that_is_no_torch_model(tmp_path: Path, make, message) -> None:
    path = make(tmp_path)
    text = _bad_input(lambda: load_torch_file(path), str(path), message)
    assert "unsafe unpickling" not in text  # not a pickle at all: no reason to suspect one


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_torchscript_file_loads_and_exports(tmp_path: Path) -> None:
    import onnxruntime

    module = DigitsNet().eval()
    torch.jit.trace(module, torch.zeros(1, 1, 16, 16)).save(str(tmp_path / "scripted.pt"))
    model = load_torch_model(Source(framework="torch", path=tmp_path / "scripted.pt"))
    assert isinstance(model, torch.jit.ScriptModule)
    x = _sample()
    torch.testing.assert_close(runnable(model)(x), module(x))

    export_onnx(model, [IMAGE], tmp_path / "model.onnx", tmp_path / "export.log")  # TorchScript exporter
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [value.name for value in session.get_inputs()] == ["image"]
    (exported,) = session.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(exported, module(x).detach().numpy(), atol=1e-5)
    assert (tmp_path / "export.log").exists()


def test_an_exported_program_loads_and_exports(tmp_path: Path) -> None:
    import onnxruntime

    module = DigitsNet().eval()
    torch.export.save(torch.export.export(module, (torch.zeros(1, 1, 16, 16),)), str(tmp_path / "model.pt2"))
    model = load_torch_model(Source(framework="torch", path=tmp_path / "model.pt2"))
    assert isinstance(model, torch.export.ExportedProgram)
    x = _sample()
    torch.testing.assert_close(runnable(model)(x), module(x))

    export_onnx(model, [IMAGE], tmp_path / "model.onnx", tmp_path / "export.log")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(exported, module(x).detach().numpy(), atol=1e-5)


def test_a_shape_the_model_cannot_take_is_named(tmp_path: Path) -> None:
    rgb = InputSpec(name="image", shape=[1, 3, 16, 16], layout="NCHW")
    message = _bad_input(
        lambda: export_onnx(DigitsNet(), [rgb], tmp_path / "model.onnx", tmp_path / "export.log"),
        "the model does not run on inputs of shape [[1, 3, 16, 16]]",
        "NCHW",
    )
    assert "\x1b[" not in message  # no terminal colour codes from the exporter
    assert "channels" in message  # the real reason (the first conv takes 1 channel), not the exporter's preamble
    assert not (tmp_path / "model.onnx").exists()


def test_outputs_are_named_by_dict_keys_tuple_positions_or_output() -> None:
    from compiler_kit.frontends.torch import named_outputs

    assert [name for name, _ in named_outputs("t")] == ["output"]
    assert [name for name, _ in named_outputs(("a", "b"))] == ["output_0", "output_1"]
    nested = {"boxes": "b", "heads": {"cls": "c", "mask": ("m0", "m1")}}
    assert named_outputs(nested) == [
        ("boxes", "b"), ("heads.cls", "c"), ("heads.mask.0", "m0"), ("heads.mask.1", "m1")
    ]  # fmt: skip
