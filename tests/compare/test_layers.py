"""Per-layer drift on the session's real digits build: float vs int8 TFLite, tensor by tensor."""

from __future__ import annotations

import itertools
import json
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from compiler_kit.compare.layers import INPUT_OP, LayerDrift, TensorGraph, layer_drift, match_activations, worst_layers
from compiler_kit.compare.metrics import SNR_CEILING_DB

SAMPLES = 20


def eval_samples(digits_dir: Path, n: int = SAMPLES) -> Iterator[np.ndarray]:
    """The first `n` eval images as the model takes them: (1, 16, 16, 1) float32 in [0, 1], one at a time."""
    with np.load(digits_dir / "eval.npz") as data:
        x = data["x"]
    for index in range(n):
        yield x[index % len(x)][None].astype(np.float32) / 255.0


def models(built) -> tuple[Path, Path]:
    return built.build_dir / "model_float.tflite", built.build_dir / "model_int8.tflite"


@pytest.fixture(scope="module")
def layers(built, digits_dir: Path):
    return layer_drift(*models(built), eval_samples(digits_dir))


@pytest.mark.slow
def test_every_int8_activation_is_matched_in_execution_order(built, layers):
    assert layers.unmatched == []
    ops = [layer.op for layer in layers]
    assert ops[0] == INPUT_OP
    assert ops[1:] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE"] + ["FULLY_CONNECTED"] * 2
    assert layers[-1].shape == [1, 10]
    int8 = TensorGraph(models(built)[1], threads=1)
    produced = [int8.tensors[int(t)]["name"] for op in int8.ops for t in op["outputs"]]
    assert [layer.name for layer in layers[1:]] == produced


@pytest.mark.slow
def test_snrs_are_finite_and_plausible(layers):
    for layer in layers:
        assert np.isfinite([layer.snr_db, layer.rmse, layer.max_abs_error, layer.error_steps]).all(), layer
        assert 10 < layer.snr_db <= SNR_CEILING_DB, layer
        assert 0 <= layer.rmse <= layer.max_abs_error
        assert layer.scale > 0
        assert layer.error_steps == pytest.approx(layer.rmse / layer.scale)
    for layer in layers[1:]:  # every computed layer keeps well under a couple of quantization steps of error
        assert layer.snr_db < 80 and layer.error_steps < 2, layer


@pytest.mark.slow
def test_final_layer_agrees_with_the_reports_float_to_int8_snr(built, layers):
    (report_snr,) = [
        c["metrics"]["snr_db"]
        for c in built.report["comparisons"]
        if (c["reference"], c["candidate"]) == ("tflite-float", "tflite-int8")
    ]
    assert layers[-1].snr_db == pytest.approx(report_snr, abs=3.0)


@pytest.mark.slow
def test_input_quantization_is_under_one_step(layers):
    first = layers[0]
    assert first.op == INPUT_OP and first.inherited_snr_db is None and first.added_db is None
    assert first.error_steps < 1
    assert first.max_abs_error <= first.scale / 2 + 1e-6  # rounding to the nearest step


@pytest.mark.slow
def test_inherited_and_added_drift(layers):
    for previous, layer in itertools.pairwise(layers):  # a chain: each op reads the previous output
        assert layer.inherited_snr_db == previous.snr_db
        assert layer.added_db == pytest.approx(previous.snr_db - layer.snr_db)
    reshape = next(layer for layer in layers if layer.op == "RESHAPE")
    assert reshape.added_db == pytest.approx(0.0, abs=1e-9)  # moving int8 values around adds nothing


@pytest.mark.slow
def test_matching_falls_back_to_the_producing_op_when_names_differ(built):
    float_model, int8_model = models(built)
    float_graph, int8_graph = TensorGraph(float_model, 1), TensorGraph(int8_model, 1)
    by_name, unmatched = match_activations(float_graph, int8_graph)
    assert unmatched == [] and {pair.matched_by for pair in by_name} == {"input", "name"}
    for index, detail in int8_graph.tensors.items():
        detail["name"] = f"renamed_{index}"
    by_op, unmatched = match_activations(float_graph, int8_graph)
    assert unmatched == [] and {pair.matched_by for pair in by_op} == {"input", "op"}
    assert [(p.int8_index, p.float_index) for p in by_op] == [(p.int8_index, p.float_index) for p in by_name]


@pytest.mark.slow
def test_samples_are_consumed_lazily_one_at_a_time(built, digits_dir: Path):
    """A generator that fails if any earlier sample is still alive when the next one is asked for: the samples
    are neither materialised into a list nor kept (numpy arrays die with their last reference)."""
    alive: list[weakref.ref] = []
    consumed = 0

    def guarded() -> Iterator[np.ndarray]:
        nonlocal consumed
        for sample in eval_samples(digits_dir, 2 * SAMPLES):
            assert all(ref() is None for ref in alive), "an earlier sample is still held"
            alive.append(weakref.ref(sample))
            consumed += 1
            yield sample
            del sample

    layers = layer_drift(*models(built), guarded())
    assert consumed == 2 * SAMPLES and layers.unmatched == []


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_samples(built, digits_dir: Path):
    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            layer_drift(*models(built), eval_samples(digits_dir, n))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = peak(SAMPLES), peak(4 * SAMPLES)
    assert many < 1.2 * few + 64 * 1024, (few, many)


@pytest.mark.slow
def test_statistics_do_not_depend_on_the_thread_count(built, digits_dir: Path, layers):
    repeated = layer_drift(*models(built), eval_samples(digits_dir, SAMPLES), threads=2)
    assert [layer.as_dict() for layer in repeated] == [layer.as_dict() for layer in layers]


@pytest.mark.slow
def test_worst_layers_rank_by_snr(layers):
    worst = worst_layers(layers, n=3)
    assert len(worst) == 3
    assert [layer.snr_db for layer in worst] == sorted(layer.snr_db for layer in layers)[:3]
    assert worst[0] is min(layers, key=lambda layer: layer.snr_db)
    assert worst_layers(layers, n=100) == sorted(layers, key=lambda layer: layer.snr_db)


def test_worst_layers_on_hand_made_layers():
    def layer(name: str, snr: float) -> LayerDrift:
        return LayerDrift(name, "CONV_2D", [1], snr, 0.1, 0.2, 0.05, 2.0, None, None, name, "name")

    layers = [layer("a", 30.0), layer("b", 12.0), layer("c", 45.0), layer("d", 12.0)]
    assert [x.name for x in worst_layers(layers, n=3)] == ["b", "d", "a"]
    assert worst_layers([], n=5) == []


@pytest.mark.slow
def test_as_dict_is_json_ready(layers):
    rows = json.loads(json.dumps([layer.as_dict() for layer in layers]))
    assert set(rows[0]) == {
        "name",
        "op",
        "shape",
        "snr_db",
        "rmse",
        "max_abs_error",
        "scale",
        "error_steps",
        "inherited_snr_db",
        "added_db",
        "float_name",
        "matched_by",
        "source_name",
        "clipped",
    }
    assert rows[-1]["op"] == "FULLY_CONNECTED" and rows[-1]["shape"] == [1, 10]
