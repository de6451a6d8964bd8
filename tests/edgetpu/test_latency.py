"""The Edge TPU latency estimator on tiny int8 models built here: compute, parameter streaming and the CPU part."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from compiler_kit import lazy
from compiler_kit.edgetpu.analysis import EdgeTpuPrediction, analyze
from compiler_kit.edgetpu.hardware import ON_CHIP_CACHE_BYTES
from compiler_kit.edgetpu.latency import (
    FITTED,
    TARGET_SPECS,
    TARGETS,
    cpu_part_ms,
    cpu_submodel,
    estimate,
    latency_section,
)
from compiler_kit.edgetpu.statuses import MORE_THAN_ONE_SUBGRAPH

# the converter warns that nothing describes the float input's range: irrelevant for int8 input
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
IMAGE = (16, 16, 64)  # 64 channels fill the 64-wide array, so compute time follows MACs


def int8_tflite(layers: list, input_shape: tuple[int, ...], path: Path) -> Path:
    """A full-integer int8 .tflite of a batch-1 Keras model, calibrated on two random samples."""
    tf, keras = lazy.tensorflow(), lazy.keras()
    model = keras.Sequential([keras.Input(input_shape, batch_size=1), *layers])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, *input_shape), np.float32)] for _ in range(2))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Builds a model once per name (tests share them)."""
    folder = tmp_path_factory.mktemp("latency")

    def model(name: str, layers: list, input_shape: tuple[int, ...] = IMAGE) -> Path:
        path = folder / f"{name}.tflite"
        return path if path.exists() else int8_tflite(layers, input_shape, path)

    return model


def conv(filters: int):
    return lazy.keras().layers.Conv2D(filters, 3, padding="same")


def dense_model(build: Callable[..., Path], inputs: int, units: int) -> EdgeTpuPrediction:
    return analyze(build(f"dense_{inputs}x{units}", [lazy.keras().layers.Dense(units)], (inputs,)))


def test_tpu_compute_grows_with_macs(build: Callable[..., Path]) -> None:
    narrow = analyze(build("narrow", [conv(64)]))
    wide = analyze(build("wide", [conv(128)]))
    deep = analyze(build("deep", [conv(128), conv(128)]))
    assert narrow.macs < wide.macs < deep.macs
    for target in TARGETS:
        times = [estimate(p, target).tpu_compute_ms for p in (narrow, wide, deep)]
        assert 0 < times[0] < times[1] < times[2], times


def test_no_parameter_streaming_below_the_on_chip_cache(build: Callable[..., Path]) -> None:
    small = dense_model(build, 512, 512)
    assert small.off_chip_bytes == 0
    assert all(estimate(small, target).parameter_stream_ms == 0 for target in TARGETS)


@pytest.mark.slow
def test_parameter_streaming_grows_past_the_on_chip_cache(build: Callable[..., Path]) -> None:
    big, bigger = dense_model(build, 2304, 4096), dense_model(build, 2304, 5120)  # 9.4 and 11.8 MB of weights
    assert ON_CHIP_CACHE_BYTES < big.parameter_bytes < bigger.parameter_bytes
    assert big.off_chip_bytes == big.parameter_bytes - ON_CHIP_CACHE_BYTES
    for target in TARGETS:
        assert 0 < estimate(big, target).parameter_stream_ms < estimate(bigger, target).parameter_stream_ms
        # the compiler's own off-chip figure, when it ran, replaces the static one
        assert estimate(big, target, off_chip_bytes=0).parameter_stream_ms == 0


def test_the_cpu_part_is_estimated_for_each_targets_host_and_timed_here_apart(build: Callable[..., Path]) -> None:
    # a softmax over 16 x 16 x 64 = 16384 elements is beyond the Edge TPU's 16,000: it stays on the CPU
    layers = lazy.keras().layers
    path = build("big_softmax", [conv(64), layers.Flatten(), layers.Softmax()])
    prediction = analyze(path)
    assert [op.operator for op in prediction.per_op if not op.mapped] == ["SOFTMAX"]
    cpu = {target: estimate(prediction, target).cpu_ms for target in TARGETS}
    assert 0 < cpu["usb"] == cpu["pcie"] < cpu["devboard"]  # the desktop host, twice; the Cortex-A53 is slower
    section = latency_section(prediction)
    assert section["cpu_part_here"]["ms"] > 0 and section["cpu_part_here"]["unmeasured_ops"] == []
    for target, predicted in section["targets"].items():  # the time measured here is in no prediction
        assert predicted["cpu_ms"] == cpu[target] and predicted["host"] == TARGET_SPECS[target].host


def test_a_prediction_is_a_function_of_the_file_alone(build: Callable[..., Path]) -> None:
    layers = lazy.keras().layers
    path = build("big_softmax", [conv(64), layers.Flatten(), layers.Softmax()])
    first, second = latency_section(analyze(path)), latency_section(analyze(path))
    assert first["targets"] == second["targets"]


def test_the_dev_board_differs_from_the_usb_accelerator_without_streaming(build: Callable[..., Path]) -> None:
    prediction = analyze(build("deep", [conv(128), conv(128)]))
    usb, devboard = estimate(prediction, "usb"), estimate(prediction, "devboard")
    assert usb.parameter_stream_ms == devboard.parameter_stream_ms == 0
    assert usb.overhead_ms == FITTED.hosts["desktop"].overhead_ms
    assert devboard.overhead_ms == FITTED.hosts["cortex-a53"].overhead_ms != usb.overhead_ms


def test_ops_forced_off_the_tpu_leave_its_compute_for_the_cpu(build: Callable[..., Path]) -> None:
    path = build("deep", [conv(128), conv(128)])
    prediction = analyze(path)
    before = estimate(prediction, "usb").tpu_compute_ms
    for op in prediction.per_op[1:]:  # as if the second convolution could not be mapped
        op.status = MORE_THAN_ONE_SUBGRAPH
    assert 0 < estimate(prediction, "usb").tpu_compute_ms < before
    assert cpu_part_ms(path, prediction, runs=5) > 0


def test_a_cpu_submodel_cut_at_the_start_computes_what_the_whole_model_does(build: Callable[..., Path]) -> None:
    model_bytes = build("deep", [conv(128), conv(128)]).read_bytes()
    interpreter_class, _ = lazy.litert_interpreter()
    sample = np.random.default_rng(1).integers(-128, 128, (1, *IMAGE), dtype=np.int8)
    whole = interpreter_class(model_content=model_bytes)
    every_op = list(range(len(whole._get_ops_details())))
    part = interpreter_class(model_content=cpu_submodel(model_bytes, every_op))
    outputs = []
    for interpreter in (whole, part):
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def detection_graph(tmp_path: Path) -> Path:
    """A conv head on the Edge TPU, reshaped into box encodings and class scores, then an SSD's post-processing op:
    a custom op, which the host runs."""
    from tests.edgetpu.test_compiler_rules import TinyGraph, _conv

    graph = TinyGraph()
    x = graph.tensor("x", "int8", [1, 4, 4, 2], model_input=True)
    head = _conv(graph, x, "conv")  # 1 x 4 x 4 x 2 = 32 elements
    encodings, scores = graph.tensor("encodings", "int8", [1, 8, 4]), graph.tensor("scores", "int8", [1, 8, 4])
    graph.op("RESHAPE", [head, graph.constant("shape", "int32", [1, 8, 4])], [encodings])
    graph.op("RESHAPE", [head, graph.constant("shape2", "int32", [1, 8, 4])], [scores])
    detections = graph.tensor("detections", "int8", [1, 10, 4], model_output=True)
    graph.op("", [encodings, scores], [detections], custom="TFLite_Detection_PostProcess")
    return graph.write(tmp_path / "detection.tflite")


def test_a_detection_post_processing_op_costs_host_time(tmp_path: Path) -> None:
    prediction = analyze(detection_graph(tmp_path))
    assert [op.operator for op in prediction.per_op if not op.mapped] == ["TFLite_Detection_PostProcess"]
    assert 0 < estimate(prediction, "usb").cpu_ms < estimate(prediction, "devboard").cpu_ms
    assert latency_section(prediction)["cpu_unmeasured_ops"] == ["#3 TFLite_Detection_PostProcess"]
