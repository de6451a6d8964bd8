"""The PyTorch frontend: entry points, weights, files (TorchScript, ExportedProgram, refused pickles) and the ONNX
export. Untrained modules suffice: nothing here depends on what the weights are."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

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


class StatefulNet(torch.nn.Module):
    """A BatchNorm (with its int64 num_batches_tracked buffer) and extra state: the entries of a state_dict that are
    not float parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.bn = torch.nn.BatchNorm2d(2)
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) * self.scale

    def get_extra_state(self) -> dict[str, float]:
        return {"scale": self.scale}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.scale = state["scale"]


STATEFUL_ENTRY_POINT = "tests.frontends.test_torch:StatefulNet"


def test_weights_without_num_batches_tracked_and_with_extra_state_load_as_torch_loads_them(tmp_path: Path) -> None:
    """torch's load_state_dict fills in a missing num_batches_tracked when the state_dict carries no BatchNorm
    version (a plain dict, as converters write, or one from before torch 0.4.1) and hands extra state, any Python
    value, to set_extra_state: ckit accepts what torch accepts."""
    trained = StatefulNet()
    trained.scale = 2.5
    state = trained.state_dict()
    del state["bn.num_batches_tracked"]
    torch.save(dict(state), tmp_path / "converted.pt")  # a plain dict: no version metadata
    module = load_torch_model(_entry_point_source(STATEFUL_ENTRY_POINT, tmp_path / "converted.pt"))
    assert module.scale == 2.5 and int(module.bn.num_batches_tracked) == 0
    torch.testing.assert_close(module.conv.weight, trained.conv.weight)


def test_a_versioned_state_dict_without_num_batches_tracked_is_refused_as_torch_refuses_it(tmp_path: Path) -> None:
    state = StatefulNet().state_dict()  # it says BatchNorm version 2, which has the buffer
    del state["bn.num_batches_tracked"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(RuntimeError, match=r"Missing key.*bn\.num_batches_tracked"):
        StatefulNet().load_state_dict(state)
    _bad_input(
        lambda: load_torch_model(_entry_point_source(STATEFUL_ENTRY_POINT, tmp_path / "w.pt")),
        "key 'bn.num_batches_tracked' is missing",
    )


@pytest.mark.parametrize(
    ("make", "listed"),
    [
        (lambda state: {**state, "bn.num_batches_tracked": 5}, "'bn.num_batches_tracked' (int)"),
        (lambda state: {**state, "num_batches": 5}, "'num_batches' (int)"),
        (lambda state: {"model": state, "epoch": 3}, "'model' (OrderedDict), 'epoch' (int)"),
    ],
    ids=["int-buffer", "extra-int", "training-checkpoint"],
)
def test_a_state_dict_holding_values_that_are_not_tensors_names_them(tmp_path: Path, make, listed: str) -> None:
    path = tmp_path / "weights.pt"
    torch.save(make(StatefulNet().state_dict()), path)
    _bad_input(
        lambda: load_torch_model(_entry_point_source(STATEFUL_ENTRY_POINT, path)),
        str(path),
        f"the weights file holds values that are not tensors: {listed}",
        "fix: save the module's state_dict alone: torch.save(model.state_dict(), path)",
    )


def test_nan_and_inf_weights_are_named_with_the_weights_file(tmp_path: Path) -> None:
    state = DigitsNet().state_dict()
    state["features.0.weight"][0, 0, 1, 1] = float("nan")
    state["classifier.3.bias"][4] = float("inf")
    torch.save(state, tmp_path / "diverged.pt")
    _bad_input(
        lambda: load_torch_model(_entry_point_source(TORCH_ENTRY_POINT, tmp_path / "diverged.pt")),
        f"{tmp_path / 'diverged.pt'}: the model's weights hold NaN or Inf: 'features.0.weight', 'classifier.3.bias'",
        "fix: retrain or fix the checkpoint",
    )


def nan_linear() -> torch.nn.Module:
    """An entry point whose module is NaN before any weights are loaded."""
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.bias[0] = float("nan")
    return module


def test_nan_weights_from_the_entry_point_itself_name_it() -> None:
    entry_point = "tests.frontends.test_torch:nan_linear"
    _bad_input(
        lambda: load_torch_model(_entry_point_source(entry_point)),
        f"entry point '{entry_point}': the model's weights hold NaN or Inf: 'bias'",
    )


class NanConstant(torch.nn.Module):
    """Its code makes a tensor, which torch.export lifts into a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tensor([0.0, float("nan")])


def _torchscript_with_nan_buffer(path: Path) -> str:
    module = StatefulNet().eval()
    module.bn.running_var[1] = float("nan")
    torch.jit.trace(module, torch.zeros(1, 1, 8, 8)).save(str(path))
    return "'bn.running_var'"


def _exported_with_inf_parameter(path: Path) -> str:
    module = StatefulNet().eval()
    with torch.no_grad():
        module.conv.weight[0, 0, 0, 0] = float("-inf")
    torch.export.save(torch.export.export(module, (torch.zeros(1, 1, 8, 8),)), str(path))
    return "'conv.weight'"


def _exported_with_nan_constant(path: Path) -> str:
    torch.export.save(torch.export.export(NanConstant(), (torch.zeros(2),)), str(path))
    return "'lifted_tensor_0'"


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("scripted.pt", _torchscript_with_nan_buffer),
        ("inf.pt2", _exported_with_inf_parameter),
        ("constant.pt2", _exported_with_nan_constant),
    ],
    ids=["torchscript-buffer", "exported-parameter", "exported-constant"],
)
def test_nan_or_inf_in_a_model_file_is_named_with_the_file(tmp_path: Path, name: str, make) -> None:
    path = tmp_path / name
    named = make(path)
    _bad_input(
        lambda: load_torch_model(Source(framework="torch", path=path)),
        f"{path}: the model's weights hold NaN or Inf: {named}",
        "fix:",
    )


def _nan_first_conv(state: dict) -> dict:
    state["features.0.weight"][3, 0, 0, 0] = float("nan")
    return state


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda state: {**state, "features.3.bias": 5},
            "the weights file holds values that are not tensors: 'features.3.bias' (int)",
        ),
        (_nan_first_conv, "the model's weights hold NaN or Inf: 'features.0.weight'"),
    ],
    ids=["not-a-tensor", "nan"],
)
def test_ckit_build_with_such_weights_exits_2_with_one_message(
    torch_recipe: dict, tmp_path: Path, change, message: str
) -> None:
    from typer.testing import CliRunner

    from compiler_kit.cli import app

    weights = tmp_path / "weights.pt"
    torch.save(change(DigitsNet().state_dict()), weights)
    recipe = {**torch_recipe, "source": {**torch_recipe["source"], "weights": str(weights)}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**recipe, "output": {"dir": str(tmp_path / "build")}}, sort_keys=False))
    result = CliRunner().invoke(app, ["build", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"error: {weights}: {message}" in result.output and "fix: " in result.output


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
