"""The ONNX frontend: reading and checking the file, fixing dynamic shapes from the recipe, and onnx2tf (NCHW ->
NHWC, offline, an unconvertible op named)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from compiler_kit.errors import BadInputError
from compiler_kit.frontends.base import FloatModel, layout_perm
from compiler_kit.frontends.onnx import (
    STATIC_ONNX,
    WORK_PREFIX,
    ConverterFailed,
    convert_onnx,
    dims,
    fix_input_shapes,
    graph_inputs,
    load_onnx,
    remove_orphaned_work_dirs,
)
from compiler_kit.recipe import InputSpec

IMAGE = InputSpec(name="image", shape=[1, 1, 16, 16], layout="NCHW")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, real: _write(d / "cut.onnx", real.read_bytes()[: real.stat().st_size // 2]), "not a valid ONNX"),
        (lambda d, real: _write(d / "text.onnx", b"name: not a model\n" * 4), "not a valid ONNX"),
        (lambda d, real: _write(d / "empty.onnx", b""), "not a valid ONNX"),
        (lambda d, real: d / "absent.onnx", "model file not found"),
    ],
    ids=["truncated", "text", "empty", "missing"],
)
def test_a_bad_file_is_bad_input_naming_the_path(torch_models, tmp_path: Path, make, message) -> None:
    path = make(tmp_path, torch_models["onnx"])
    with pytest.raises(BadInputError, match=message) as raised:
        load_onnx(path)
    assert raised.value.exit_code == 2
    assert str(path) in str(raised.value)


@pytest.mark.slow
def test_the_dynamic_batch_is_fixed_from_the_recipe(torch_models) -> None:
    model = load_onnx(torch_models["onnx"])
    (value,) = graph_inputs(model)
    assert not isinstance(dims(value)[0], int)  # the exported batch is dynamic
    fix_input_shapes(model, [IMAGE], torch_models["onnx"])
    assert dims(graph_inputs(model)[0]) == [1, 1, 16, 16]


@pytest.mark.slow
@pytest.mark.parametrize("written", [-1, 0], ids=["minus-one", "unknown"])
def test_a_batch_written_as_minus_one_or_unknown_is_fixed_from_the_recipe(torch_models, written: int) -> None:
    """Real projects ship `dim_value: -1` (not symbolic) and dimensions with neither a size nor a name."""
    model = load_onnx(torch_models["onnx"])
    batch = graph_inputs(model)[0].type.tensor_type.shape.dim[0]
    batch.Clear()
    if written:
        batch.dim_value = written
    fix_input_shapes(model, [IMAGE], torch_models["onnx"])
    assert dims(graph_inputs(model)[0]) == [1, 1, 16, 16]


@pytest.mark.slow
def test_a_rank_mismatch_names_the_input_and_both_ranks(torch_models) -> None:
    model = load_onnx(torch_models["onnx"])
    flat = InputSpec(name="pixels", shape=[1, 256])
    with pytest.raises(BadInputError, match=r"input 'image' has rank 4 .*'pixels' gives rank 2 \[1, 256\]") as raised:
        fix_input_shapes(model, [flat], torch_models["onnx"])
    assert raised.value.exit_code == 2 and str(torch_models["onnx"]) in str(raised.value)


@pytest.mark.slow
def test_a_fixed_dimension_contradicting_the_recipe_names_axis_and_values(torch_models) -> None:
    model = load_onnx(torch_models["onnx"])
    nhwc = InputSpec(name="image", shape=[1, 16, 16, 1], layout="NHWC")
    with pytest.raises(BadInputError) as raised:
        fix_input_shapes(model, [nhwc], torch_models["onnx"])
    message = str(raised.value)
    assert "input 'image' dimension 1 is 1 in the model but 16 in the recipe" in message
    assert "1, 16, 16]" in message and "recipe [1, 16, 16, 1] NHWC" in message  # model and recipe shapes


@pytest.mark.slow
def test_a_different_number_of_inputs_is_refused(torch_models) -> None:
    model = load_onnx(torch_models["onnx"])
    with pytest.raises(BadInputError, match="the model has 1 inputs, the recipe describes 2"):
        fix_input_shapes(model, [IMAGE, InputSpec(name="extra", shape=[1, 4])], torch_models["onnx"])


def _nan_initializer_model(path: Path) -> Path:
    """y = x @ weight + bias with one NaN in the weight and an Inf in a Constant node's value."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.ones((4, 2), dtype=np.float32)
    weight[1, 0] = np.nan
    nodes = [
        helper.make_node("Constant", [], ["bias"], value=numpy_helper.from_array(np.array([0.0, np.inf], np.float32))),
        helper.make_node("MatMul", ["x", "fc.weight"], ["h"]),
        helper.make_node("Add", ["h", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(weight, "fc.weight")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_nan_and_inf_weights_are_named_with_the_file(tmp_path: Path) -> None:
    path = _nan_initializer_model(tmp_path / "nan.onnx")
    with pytest.raises(BadInputError) as raised:
        convert_onnx(path, [InputSpec(name="x", shape=[1, 4])], tmp_path)
    message = str(raised.value)
    assert raised.value.exit_code == 2
    assert f"{path}: the model's weights hold NaN or Inf: 'fc.weight', " in message
    assert "Constant" in message and "fix: retrain or fix the checkpoint" in message
    assert not (tmp_path / STATIC_ONNX).exists()  # refused before any conversion


def test_layout_perm() -> None:
    assert layout_perm([1, 1, 16, 16], [1, 1, 16, 16]) is None
    assert layout_perm([1, 3, 32, 24], [1, 32, 24, 3]) == (0, 2, 3, 1)
    assert layout_perm([1, 4, 10], [1, 10, 4]) == (0, 2, 1)
    assert layout_perm([-1, 2], [1, 2]) is None  # a size the ONNX file leaves open matches the converted one
    assert layout_perm([1, 3, -1, -1], [1, 7, 9, 3]) == (0, 2, 3, 1)
    with pytest.raises(ValueError, match="cannot map shape"):
        layout_perm([1, 3, 32, 24], [1, 24, 32, 3])  # not a channels-first -> channels-last move
    with pytest.raises(ValueError):
        layout_perm([1, 8], [1, 4])


@pytest.mark.slow
def test_the_digits_model_converts_to_an_nhwc_saved_model(digits_onnx_float: FloatModel, torch_models) -> None:
    import onnx

    assert (digits_onnx_float.saved_model_dir / "saved_model.pb").is_file()
    assert digits_onnx_float.input_perms == [(0, 2, 3, 1)]
    [logits] = digits_onnx_float.outputs
    assert logits.perm is None and logits.key == "output_0"  # (1, 10) logits need no permutation
    static = onnx.load(str(digits_onnx_float.root / STATIC_ONNX))
    assert dims(graph_inputs(static)[0]) == [1, 1, 16, 16]
    assert not isinstance(dims(graph_inputs(onnx.load(str(torch_models["onnx"])))[0])[0], int)  # source untouched


@pytest.mark.slow
def test_the_saved_model_computes_what_the_onnx_model_does(digits_onnx_float: FloatModel, torch_models) -> None:
    import onnxruntime
    import tensorflow as tf

    x = np.random.default_rng(0).random((1, 1, 16, 16), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(torch_models["onnx"]), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"image": x})
    served = tf.saved_model.load(str(digits_onnx_float.saved_model_dir)).signatures[digits_onnx_float.signature_key]
    (name,) = served.structured_input_signature[1]
    (got,) = served(**{name: tf.constant(digits_onnx_float.to_model_layout(x))}).values()
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_the_worker_reads_the_signature_shapes_as_tensorflow_loads_them(tmp_path: Path) -> None:
    """The shapes come from saved_model.pb's SignatureDef, not from loading the model: the same as the loaded
    signature says, an unknown size as None, outputs by key."""
    import tensorflow as tf

    from compiler_kit.frontends.onnx2tf_worker import SIGNATURE_KEY, signature_shapes

    module = tf.Module()
    module.serve = tf.function(
        lambda x: {"output_0": tf.reduce_mean(x, axis=1), "output_1": x[:, :2]},  # a slice of the open size
        input_signature=[tf.TensorSpec([1, None, 3], tf.float32, name="x")],
    )
    tf.saved_model.save(module, str(tmp_path), signatures={SIGNATURE_KEY: module.serve})
    shapes = signature_shapes(tmp_path)
    assert shapes == {"inputs": [[1, None, 3]], "outputs": {"output_0": [1, 3], "output_1": [1, None, 3]}}
    served = tf.saved_model.load(str(tmp_path)).signatures[SIGNATURE_KEY]
    assert [spec.shape.as_list() for spec in served.structured_input_signature[1].values()] == shapes["inputs"]
    assert {key: spec.shape.as_list() for key, spec in served.structured_outputs.items()} == shapes["outputs"]


def _fancy_model(path: Path) -> Path:
    """One node of an op nobody implements, in a custom domain: onnx.checker accepts it, onnx2tf cannot."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy_1", domain="com.example")
    graph = helper.make_graph(
        [node],
        "fancy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_an_op_onnx2tf_cannot_convert_is_named_with_its_node(tmp_path: Path) -> None:
    model = _fancy_model(tmp_path / "fancy.onnx")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        ConverterFailed, match=r"onnx2tf cannot convert the model: op FancyOp \(node fancy_1\)"
    ) as raised:
        convert_onnx(model, [InputSpec(name="x", shape=[1, 8])], out)
    assert raised.value.exit_code == 2
    assert "FancyOp" in raised.value.log and not (out / "saved_model").exists()  # the build keeps the log


# --- scratch folders a killed conversion leaves behind ---


def _dead_pid() -> int:
    """The PID of a real process that has ended (and been reaped): no process has it now."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def _planted_folder(temp_dir: Path, pid: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{pid}-", dir=temp_dir))
    (folder / "out").mkdir()  # as onnx2tf leaves it: files inside
    (folder / "out" / "saved_model.pb").write_bytes(b"x" * 1024)
    return folder


def test_only_scratch_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead, own = _planted_folder(tmp_path, _dead_pid()), _planted_folder(tmp_path, os.getpid())
    older = tmp_path / f"{WORK_PREFIX}k3x_9a2b"  # a name from before folders carried a PID: whose, nobody knows
    unrelated = tmp_path / "ckit-compiler-version-1234-abc"
    for folder in (older, unrelated):
        folder.mkdir()
    remove_orphaned_work_dirs(tmp_path)
    assert not dead.exists()
    assert own.is_dir() and (own / "out" / "saved_model.pb").is_file()
    assert older.is_dir() and unrelated.is_dir()


def test_a_running_build_keeps_its_scratch_folder_until_it_is_killed(tmp_path: Path) -> None:
    """Another build, really running: its scratch folder (from the function convert_onnx takes it from) is not
    touched until that process is killed (SIGKILL skips its own cleanup)."""
    code = (
        "import time\n"
        "from compiler_kit.frontends.onnx import work_dir\n"
        "folder = work_dir()\n"
        "print(folder.name, flush=True)\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    try:
        folder = Path(other.stdout.readline().strip())
        assert folder.parent == tmp_path and folder.name.startswith(f"{WORK_PREFIX}{other.pid}-")
        remove_orphaned_work_dirs(tmp_path)
        assert folder.is_dir()
    finally:
        other.kill()
        other.wait()
        other.stdout.close()
    remove_orphaned_work_dirs(tmp_path)
    assert not folder.exists()


@pytest.mark.slow
def test_a_conversion_removes_dead_builds_folders_and_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """convert_onnx cleans up at its start and after itself, even when onnx2tf fails."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _planted_folder(tmp_path / "tmp", _dead_pid())
    own = _planted_folder(tmp_path / "tmp", os.getpid())
    (tmp_path / "out").mkdir()
    with pytest.raises(ConverterFailed):
        convert_onnx(_fancy_model(tmp_path / "fancy.onnx"), [InputSpec(name="x", shape=[1, 8])], tmp_path / "out")
    assert sorted((tmp_path / "tmp").iterdir()) == [own]


@pytest.mark.slow
def test_conversion_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx2tf 1.29.24 downloads a sample file when every input is 4-D with 3 channels; the frontend provides it.

    Every proxy points at a closed port, so any download attempt fails the conversion."""
    import torch

    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    path = tmp_path / "rgb.onnx"
    torch.manual_seed(0)
    torch.onnx.export(
        torch.nn.Conv2d(3, 4, 3).eval(),
        (torch.zeros(1, 3, 32, 32),),
        str(path),
        input_names=["image"],
        dynamo=True,
        external_data=False,
    )
    out = tmp_path / "out"
    out.mkdir()
    rgb = InputSpec(name="image", shape=[1, 3, 32, 32], layout="NCHW")
    float_model = convert_onnx(path, [rgb], out)
    assert (float_model.saved_model_dir / "saved_model.pb").is_file()
    assert float_model.input_perms == [(0, 2, 3, 1)] and [o.perm for o in float_model.outputs] == [(0, 2, 3, 1)]


LOGS = Path(__file__).resolve().parent / "logs"


def test_a_saved_model_name_failure_names_the_node_by_its_original_name() -> None:
    """The tail of a real onnx2tf 1.29.24 log (a model whose node names have '@'), before ckit renamed them."""
    from onnx import helper

    from compiler_kit.frontends.onnx import _Names, failure

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="Conv@3")], "g", [], [])
    names = _Names(helper.make_model(graph), {"Conv_3": "Conv@3"})
    message = failure((LOGS / "onnx2tf_scope_name.log").read_text(), names)
    assert message.startswith("node Conv@3 (op Relu): saving the SavedModel failed: Generation of saved_model failed")


def test_an_output_onnx2tf_reshaped_beyond_a_layout_change_is_bad_input_naming_it() -> None:
    from compiler_kit.frontends.onnx import _output_perm

    with pytest.raises(BadInputError, match=r"onnx2tf turned output 'boxes' of shape \[1, 3, 32, 24\]") as raised:
        _output_perm("boxes", [1, 3, 32, 24], [1, 24, 32, 3])
    assert raised.value.exit_code == 2 and "fix:" in str(raised.value)
