"""The quantization error budget on the session's real digits build: each term made by editing the float model,
and the terms explaining the int8 result."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from compiler_kit.compare.budget import (
    _along,
    _edited,
    combined_db,
    int8_parameters,
    with_activations_quantized,
    with_weights,
)
from compiler_kit.compare.layers import TensorGraph
from compiler_kit.compare.metrics import SNR_CEILING_DB
from compiler_kit.edgetpu.tflite_graph import load_model, read_ops


def models(built) -> tuple[Path, Path]:
    return built.build_dir / "model_float.tflite", built.build_dir / "model_int8.tflite"


def _ops(path: Path) -> Counter[str]:
    return Counter(op.operator for op in read_ops(load_model(path), path))


def test_independent_errors_combine_in_power() -> None:
    assert combined_db([20.0, 20.0]) == pytest.approx(20 - 10 * np.log10(2))
    assert combined_db([30.0, SNR_CEILING_DB]) == pytest.approx(30.0, abs=1e-6)
    assert combined_db([SNR_CEILING_DB] * 3) < SNR_CEILING_DB  # three ceilings are still three noises
    assert combined_db([]) == SNR_CEILING_DB


def test_per_channel_parameters_broadcast_along_their_axis() -> None:
    assert _along(np.array([2.0]), 3, 4).shape == ()
    assert _along(np.array([1.0, 2.0]), 3, 4).shape == (1, 1, 1, 2)
    assert _along(np.array([1.0, 2.0, 3.0]), 0, 2).shape == (3, 1)


@pytest.mark.slow
def test_the_budget_explains_the_int8_result(built) -> None:
    budget = built.report["quantization_budget"]
    assert budget["reference"] == "tflite-float" and budget["activations_unmatched"] == 0
    (entry,) = budget["outputs"].values()
    drift = next(
        c for c in built.report["comparisons"] if (c["reference"], c["candidate"]) == ("tflite-float", "tflite-int8")
    )
    assert budget["samples"] == 32  # the first 32 of the 360 verification digits: an estimate
    assert entry["int8_db"] == pytest.approx(drift["metrics"]["snr_db"], abs=2.0)  # the same model, fewer samples
    assert abs(entry["combined_db"] - entry["int8_db"]) <= 3.0
    for term in ("input", "weights", "activations"):  # one part alone never costs more than all of them
        assert entry[f"{term}_db"] >= entry["int8_db"] - 0.5, (term, entry)
    assert entry["dominant"] == min(("input", "weights", "activations"), key=lambda term: entry[f"{term}_db"])
    assert budget["remedy"] and budget["dominant"] == entry["dominant"]
    assert "Quantization error budget" in (built.build_dir / "report.md").read_text()


@pytest.mark.slow
def test_each_weighted_op_gets_the_int8_models_weights(built, tmp_path: Path) -> None:
    float_tflite, int8_tflite = models(built)
    parameters = int8_parameters(float_tflite, int8_tflite)
    int8_ops = _ops(int8_tflite)
    weighted = int8_ops["CONV_2D"] + int8_ops["FULLY_CONNECTED"]
    assert len(parameters.constants) == 2 * weighted  # each op's weights and bias
    edited = _edited(float_tflite, lambda model: with_weights(model, parameters.constants), tmp_path / "w.tflite")
    graph, original = TensorGraph(edited, 1), TensorGraph(float_tflite, 1)
    for index, values in parameters.constants.items():
        np.testing.assert_array_equal(graph.interpreter.get_tensor(index), values)
        step = np.abs(original.interpreter.get_tensor(index) - values).max()
        assert 0 < step < 0.05  # rounded to the int8 grid: changed, but by less than a step of these weights


@pytest.mark.slow
def test_every_quantized_activation_gets_a_quantize_dequantize_pair(built, tmp_path: Path) -> None:
    float_tflite, int8_tflite = models(built)
    parameters = int8_parameters(float_tflite, int8_tflite)
    edited = _edited(
        float_tflite, lambda model: with_activations_quantized(model, parameters.activations), tmp_path / "a.tflite"
    )
    before, after = _ops(float_tflite), _ops(edited)
    pairs = len(parameters.activations)
    assert pairs == sum(before.values())  # every op's output of this CNN is quantized in the int8 model
    assert after["QUANTIZE"] - before["QUANTIZE"] == pairs and after["DEQUANTIZE"] - before["DEQUANTIZE"] == pairs
    graph = TensorGraph(edited, 1)
    (output,) = graph.interpreter.get_output_details()
    assert output["name"].endswith("/fake_dequant")  # the signature's output is the fake-quantized copy
