"""Static Edge TPU analysis on models built here: what maps, where the graph is cut and why, in the compiler's words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

from compiler_kit.edgetpu import hardware, statuses
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction, analyze
from compiler_kit.errors import EXIT_BAD_INPUT, BadInputError
from tests.keras_tflite import keras_tflite

# from_keras_model with int8 model I/O warns that no input statistics were given: the calibration data sets them.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")


def counts(prediction: EdgeTpuPrediction) -> dict[tuple[str, str], int]:
    return {(row["operator"], row["status"]): row["count"] for row in prediction.as_dict()["ops"]}


def kinds(prediction: EdgeTpuPrediction) -> list[str]:
    return [failure.kind for failure in prediction.failures]


# --- models built for these tests: tiny Keras graphs, full-integer int8 (TFLITE_BUILTINS_INT8 only) ---


ModelMaker = Callable[..., Path]


@pytest.fixture(scope="session")
def make_model(tmp_path_factory: pytest.TempPathFactory) -> ModelMaker:
    """`make(layers, input_shape, name, **convert_options)`: a Keras graph converted to TFLite (batch fixed at 1
    unless `dynamic_batch`)."""
    folder = tmp_path_factory.mktemp("analysis_models")

    def make(layers: Callable[[Any], Any], shape: list[int], name: str, dynamic_batch: bool = False, **kw: Any) -> Path:
        import keras

        keras.utils.set_random_seed(0)
        inputs = keras.Input(tuple(shape[1:]), batch_size=None if dynamic_batch else shape[0])
        return keras_tflite(keras.Model(inputs, layers(inputs)), shape, folder / f"{name}.tflite", **kw)

    return make


@pytest.fixture(scope="session")
def gather_model(make_model: ModelMaker) -> Path:
    """conv -> GATHER (int8, but not an Edge TPU op) -> conv -> reshape -> dense."""
    import keras

    def layers(x: Any) -> Any:
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        x = keras.ops.take(x, [3, 2, 1, 0], axis=-1)
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        return keras.layers.Dense(3)(keras.layers.Flatten()(x))

    return make_model(layers, [1, 8, 8, 1], "gather")


@pytest.fixture(scope="session")
def known_macs_model(make_model: ModelMaker) -> Path:
    """conv 3x3 valid [1,10,10,3] -> [1,8,8,8], depthwise 3x3 same, dense 5; float input and output."""
    import keras

    def layers(x: Any) -> Any:
        x = keras.layers.Conv2D(8, 3)(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        return keras.layers.Dense(5)(keras.layers.Flatten()(x))

    return make_model(layers, [1, 10, 10, 3], "known_macs", io_type="float32")


def _edit(source: Path, target: Path, change: Callable[[Any], None]) -> Path:
    """Rewrite a .tflite through the schema's object API: what no converter will emit on request."""
    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    change(model)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(bytes(builder.Output()))
    return target


# --- (a) the digits CNN: everything maps ---


@pytest.mark.slow
def test_full_int8_digits_cnn_maps_entirely(built) -> None:
    prediction = analyze(built.build_dir / "model_int8.tflite")
    mapped = statuses.MAPPED
    assert counts(prediction) == {
        ("CONV_2D", mapped): 2,
        ("MAX_POOL_2D", mapped): 2,
        ("RESHAPE", mapped): 1,
        ("FULLY_CONNECTED", mapped): 2,
    }
    assert (prediction.ops_on_edgetpu, prediction.ops_on_cpu, prediction.edgetpu_subgraphs) == (7, 0, 1)
    assert prediction.failures == []
    # int8 weights + int32 biases: conv 16x3x3x1, conv 32x3x3x16, dense 512->64, dense 64->10
    params = (16 * 9 + 16 * 4) + (32 * 9 * 16 + 32 * 4) + (64 * 512 + 64 * 4) + (10 * 64 + 10 * 4)
    assert prediction.parameter_bytes == prediction.on_chip_bytes == params
    assert prediction.off_chip_bytes == 0
    macs = 16 * 16 * 16 * 9 + 8 * 8 * 32 * 9 * 16 + 64 * 512 + 10 * 64
    assert prediction.macs == macs == 365_184
    assert prediction.ideal_latency_ms == pytest.approx(macs / hardware.PEAK_MACS_PER_SECOND * 1e3)


@pytest.mark.slow
def test_as_dict_speaks_like_the_compiler_log(built) -> None:
    result = analyze(built.build_dir / "model_int8.tflite").as_dict()
    assert result["predicted"] is True and result["compiler_version"] is None
    assert {"ops", "edgetpu_subgraphs", "ops_on_edgetpu", "ops_on_cpu", "on_chip_bytes", "off_chip_bytes"} <= set(
        result
    )
    assert {"failures", "per_op", "parameter_bytes", "macs", "ideal_latency_ms"} <= set(result)
    first = result["per_op"][0]
    assert first["operator"] == "CONV_2D" and first["mapped"] is True and first["reason"] == ""
    assert first["inputs"][0] == {"dtype": "int8", "shape": [1, 16, 16, 1]}
    assert first["inputs"][2]["dtype"] == "int32"  # the bias: int32 is fine there
    assert first["outputs"] == [{"dtype": "int8", "shape": [1, 16, 16, 16]}]


# --- (b) an unsupported op in the middle cuts the graph there ---


def test_unsupported_op_cuts_the_graph(gather_model: Path) -> None:
    prediction = analyze(gather_model)
    assert [op.operator for op in prediction.per_op] == ["CONV_2D", "GATHER", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    more = statuses.MORE_THAN_ONE_SUBGRAPH
    assert counts(prediction) == {
        ("CONV_2D", statuses.MAPPED): 1,
        ("GATHER", statuses.NOT_SUPPORTED): 1,
        ("CONV_2D", more): 1,
        ("RESHAPE", more): 1,
        ("FULLY_CONNECTED", more): 1,
    }
    assert (prediction.ops_on_edgetpu, prediction.ops_on_cpu, prediction.edgetpu_subgraphs) == (1, 4, 1)
    assert "#1 GATHER" in prediction.per_op[4].reason
    assert kinds(prediction) == ["partially_mapped"]
    # Only the mapped conv's weights and bias sit in the Edge TPU's cache.
    assert prediction.on_chip_bytes == 4 * 9 + 4 * 4 < prediction.parameter_bytes


# --- (c) the float twin is not quantized ---


@pytest.mark.slow
def test_float_model_is_not_quantized(built) -> None:
    prediction = analyze(built.build_dir / "model_float.tflite")
    assert prediction.ops_on_edgetpu == 0 and prediction.edgetpu_subgraphs == 0
    assert {op.status for op in prediction.per_op} == {statuses.UNSUPPORTED_DATA_TYPE}
    assert "float32" in prediction.per_op[0].reason
    assert kinds(prediction) == ["not_quantized"]
    assert "Model not quantized" in prediction.failures[0].message
    assert prediction.on_chip_bytes == 0 and prediction.parameter_bytes > 0


# --- (d) a dynamic batch ---


def test_dynamic_batch_is_flagged(make_model: ModelMaker) -> None:
    import keras

    path = make_model(lambda x: keras.layers.Conv2D(4, 3)(x), [1, 8, 8, 1], "dynamic", dynamic_batch=True)
    prediction = analyze(path)
    assert prediction.per_op[0].as_dict()["inputs"][0]["shape"] == [-1, 8, 8, 1]
    assert kinds(prediction) == ["dynamic_shape"]
    assert prediction.failures[0].message.startswith("dynamic shapes: the compiler rejects")
    assert prediction.ops_on_edgetpu == 0 and not prediction.per_op[0].mapped


# --- (e) rank 5 with more than three dimensions above 1 ---


def test_rank_five_tensor_is_unsupported_rank(make_model: ModelMaker) -> None:
    import keras

    def layers(x: Any) -> Any:
        x = keras.layers.Conv2D(4, 1)(x)
        x = keras.layers.Reshape((2, 2, 4, 4))(x)
        x = keras.layers.Concatenate(axis=1)([x, x])  # keeps the 5-D tensor (a lone reshape pair folds away)
        return keras.layers.Conv2D(2, 1)(keras.layers.Reshape((8, 4, 4))(x))

    prediction = analyze(make_model(layers, [1, 4, 4, 4], "rank5"))
    rank = statuses.UNSUPPORTED_RANK
    assert counts(prediction) == {
        ("CONV_2D", statuses.MAPPED): 1,
        ("RESHAPE", rank): 2,
        ("CONCATENATION", rank): 1,
        ("CONV_2D", statuses.MORE_THAN_ONE_SUBGRAPH): 1,
    }
    assert "[1, 2, 2, 4, 4]" in prediction.per_op[1].reason


# --- (f) multiply-accumulates, and float model I/O ---


def test_macs_of_known_layers(known_macs_model: Path) -> None:
    prediction = analyze(known_macs_model)
    macs = {op.operator: op.macs for op in prediction.per_op if op.macs}
    assert macs == {
        "CONV_2D": 8 * 8 * 8 * (3 * 3 * 3),  # output elements x kernel window x input channels
        "DEPTHWISE_CONV_2D": 8 * 8 * 8 * (3 * 3),
        "FULLY_CONNECTED": 5 * 512,
    }
    assert prediction.macs == 13_824 + 4_608 + 2_560


def test_float_io_conversions_stay_on_cpu_without_cutting(known_macs_model: Path) -> None:
    prediction = analyze(known_macs_model)
    first, last = prediction.per_op[0], prediction.per_op[-1]
    assert (first.operator, first.status) == ("QUANTIZE", statuses.UNSPECIFIED_LIMITATION)
    assert (last.operator, last.status) == ("DEQUANTIZE", statuses.UNSUPPORTED_DATA_TYPE)
    assert all(op.mapped for op in prediction.per_op[1:-1])
    assert (prediction.ops_on_cpu, prediction.edgetpu_subgraphs, prediction.failures) == (2, 1, [])


# --- rules that need an edited file: op versions, constant weights, fused activations ---


def _opcode(model: Any, name: str) -> Any:
    return next(c for c in model.operatorCodes if c.builtinCode == getattr(schema.BuiltinOperator, name))


@pytest.mark.slow
def test_op_version_too_new_for_compiler_16(built, tmp_path: Path) -> None:
    def bump_conv_version(model: Any) -> None:
        _opcode(model, "CONV_2D").version = 6  # what TF >= 2.9 may emit; compiler 16 parses up to 5

    prediction = analyze(_edit(built.build_dir / "model_int8.tflite", tmp_path / "v6.tflite", bump_conv_version))
    assert counts(prediction)[("CONV_2D", statuses.VERSION_NOT_SUPPORTED)] == 2
    assert prediction.ops_on_edgetpu == 0  # the first op is cut: everything after it is on the CPU
    assert kinds(prediction) == ["op_version"]
    assert "Didn't find op for builtin opcode 'CONV_2D' version '6'" in prediction.failures[0].message


@pytest.mark.slow
def test_a_version_the_compiler_cannot_parse_fails_the_whole_model_even_at_the_end(built, tmp_path: Path) -> None:
    """The compiler stops at "Model could not be parsed": the ops before the last one do not map either."""

    def bump_dense_version(model: Any) -> None:
        _opcode(model, "FULLY_CONNECTED").version = 99

    prediction = analyze(_edit(built.build_dir / "model_int8.tflite", tmp_path / "fc.tflite", bump_dense_version))
    assert prediction.ops_on_edgetpu == 0 and prediction.edgetpu_subgraphs == 0
    dense = [op.operator == "FULLY_CONNECTED" for op in prediction.per_op]
    assert dense[-1] and {op.status for op, fc in zip(prediction.per_op, dense, strict=True) if fc} == {
        statuses.VERSION_NOT_SUPPORTED
    }
    assert {op.status for op, fc in zip(prediction.per_op, dense, strict=True) if not fc} == {statuses.MODEL_NOT_PARSED}
    (failure,) = prediction.failures
    assert "no op runs on the Edge TPU" in failure.message and "TensorFlow of about" not in failure.advice


@pytest.mark.slow
def test_weights_computed_at_run_time_are_not_constant(built, tmp_path: Path) -> None:
    def drop_last_dense_weights(model: Any) -> None:
        graph = model.subgraphs[0]
        graph.tensors[graph.operators[-1].inputs[1]].buffer = 0  # buffer 0 is the empty one: no constant data

    prediction = analyze(_edit(built.build_dir / "model_int8.tflite", tmp_path / "w.tflite", drop_last_dense_weights))
    assert prediction.per_op[-1].status == statuses.NOT_CONSTANT
    assert prediction.ops_on_edgetpu == 6


@pytest.mark.slow
def test_fused_activation_on_pooling_is_a_limitation(built, tmp_path: Path) -> None:
    def fuse_relu(model: Any) -> None:
        pool = model.subgraphs[0].operators[1]
        pool.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU

    prediction = analyze(_edit(built.build_dir / "model_int8.tflite", tmp_path / "relu.tflite", fuse_relu))
    assert prediction.per_op[1].status == statuses.UNSPECIFIED_LIMITATION
    assert "fused activation RELU" in prediction.per_op[1].reason
    assert prediction.ops_on_edgetpu == 1 and prediction.ops_on_cpu == 6


@pytest.fixture(scope="session")
def pad_dense_model(make_model: ModelMaker) -> Path:
    """PAD (constant int32 paddings) -> reshape -> dense: the ops whose constants and shapes the rules read."""
    import keras

    return make_model(lambda x: keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.ZeroPadding2D(1)(x))),
                      [1, 4, 4, 1], "pad_dense")  # fmt: skip


def _operator(model: Any, name: str) -> Any:
    code = model.operatorCodes.index(_opcode(model, name))
    return next(op for op in model.subgraphs[0].operators if op.opcodeIndex == code)


def _filter_without_shape(model: Any) -> None:
    weights = model.subgraphs[0].tensors[_operator(model, "FULLY_CONNECTED").inputs[1]]
    weights.shape, weights.shapeSignature = [], None


def _odd_sized_paddings(model: Any) -> None:
    paddings = model.subgraphs[0].tensors[_operator(model, "PAD").inputs[1]]
    model.buffers[paddings.buffer].data = model.buffers[paddings.buffer].data[:5]


def _no_tensor_table(model: Any) -> None:
    model.subgraphs[0].tensors = None


@pytest.mark.parametrize("damage", [_filter_without_shape, _odd_sized_paddings, _no_tensor_table])
def test_a_damaged_model_is_analyzed_or_bad_input_never_a_crash(pad_dense_model: Path, tmp_path: Path, damage) -> None:
    """Flatbuffers verify nothing: a damaged file reaches the rules as shapes and buffers no converter writes."""
    path = _edit(pad_dense_model, tmp_path / "damaged.tflite", damage)
    try:
        analyze(path)
    except BadInputError as caught:
        assert caught.exit_code == EXIT_BAD_INPUT and str(caught).startswith(f"{path}: ")


# --- (g) files that are not TFLite models ---


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"\x1c\x00\x00\x00TF", "truncated"),
        (b"name: digits\nsource: {}\n", "no 'TFL3' file identifier"),
    ],
)
def test_bad_files_are_bad_input(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=fragment) as caught:
        analyze(path)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_truncated_model_is_bad_input(built, tmp_path: Path, fraction: float) -> None:
    data = (built.build_dir / "model_int8.tflite").read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        analyze(path)


def test_a_symbolic_link_that_loops_is_named_as_such(tmp_path: Path) -> None:
    loop = tmp_path / "model.tflite"
    loop.symlink_to(tmp_path / "other.tflite")
    (tmp_path / "other.tflite").symlink_to(loop)
    with pytest.raises(BadInputError, match="is a symbolic link that loops") as raised:
        analyze(loop)
    assert str(raised.value).startswith(str(loop)) and "fix: pass the path of a .tflite file" in str(raised.value)
    dangling = tmp_path / "dangling.tflite"
    dangling.symlink_to(tmp_path / "nowhere.tflite")
    with pytest.raises(BadInputError, match="is a symbolic link to nothing"):
        analyze(dangling)
