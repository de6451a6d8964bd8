"""Each cached stage's typed result survives its cache entry: what a reused entry gives equals what was produced
(JSON turns tuples into lists; output names may hold any character)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compiler_kit.cache import Entry, StageCache
from compiler_kit.compare.layers import LayerDrift, LayerDrifts
from compiler_kit.frontends.base import FloatModel, ModelOutput
from compiler_kit.stages.latency import Timings
from compiler_kit.stages.verify import Verified
from compiler_kit.timing import LatencyStats, latency_stats


def _stored(tmp_path: Path, make: Callable[[Path], dict[str, Any]]) -> Entry:
    """The entry as a later build reads it back from disk."""
    cache = StageCache(tmp_path / "cache")
    with cache.for_build(scratch=tmp_path):
        cache.produce("verify", "k" * 64, make)
        found = cache.lookup("verify", "k" * 64)
    assert found.status == "hit" and found.entry is not None
    return found.entry


def test_a_float_model_round_trips_with_its_permutations(tmp_path: Path) -> None:
    model = FloatModel(
        tmp_path / "float_model",
        "serving_default",
        input_perms=[(0, 2, 3, 1), None],
        outputs=[ModelOutput("boxes", "output_1", (0, 2, 1)), ModelOutput("scores/0:0", "output_0", None)],
        intermediates={"onnx": "model.onnx"},
        legalization={"enabled": True, "applied": ["hard_swish"]},
        renamed={"Conv_0": "Conv@0"},
    )
    entry = _stored(tmp_path, lambda files: model.to_meta())
    assert FloatModel.from_meta(model.root, entry.meta) == model


def test_timings_round_trip(tmp_path: Path) -> None:
    stats = LatencyStats(1.5, 0.5, 0.6, 0.7, 0.55, 0.05, 0.4, 0.8, 3, 1, 2, [0.4, 0.5, 0.8])
    timings = Timings({"source": stats}, {"targets": {"usb": {"predicted_ms": 2.5}}}, {"tflite-int8": {"MEAN": 2}})
    entry = _stored(tmp_path, lambda files: timings.to_meta())
    assert Timings.from_meta(entry.meta) == timings
    assert (timings.p50_ms("source"), timings.p50_ms("edgetpu")) == (0.5, None)


def test_verified_outputs_round_trip_by_runner_and_output_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = ["scores/0:0", "boxes"]
    outputs = {
        runner: {name: rng.standard_normal((4, 3)).astype(np.float32) for name in names}
        for runner in ("source", "tflite-int8")
    }
    layer = LayerDrift("conv", "CONV_2D", [1, 4, 4, 8], 30.0, 0.1, 0.3, 0.02, 5.0, None, None, "conv", "name")
    budget = {"outputs": {"boxes": {"input_db": 200.0}}, "dominant": "weights"}
    verified = Verified(
        outputs,
        {"source": 2.0, "tflite-int8": 1.0},
        {"source": {}, "tflite-int8": {}},
        LayerDrifts([layer], ["x"]),
        budget,
        ["output 'boxes': below one int8 step"],
        {"points": [{"samples": 2, "snr_db": {"boxes": 20.0}}, {"samples": 4, "snr_db": {"boxes": 25.0}}]},
        {"device:pi": latency_stats([1.0, 2.0, 4.0], 9.0, 2, 1)},
    )
    entry = _stored(tmp_path, lambda files: verified.save(files, names))
    back = Verified.read(entry, names)
    assert back.first_ms == verified.first_ms and back.runners == verified.runners
    assert list(back.layers) == [layer] and back.layers.unmatched == ["x"] and back.budget == budget
    assert back.diagnoses == verified.diagnoses and back.curve == verified.curve
    assert back.device_latency == verified.device_latency and back.device_latency["device:pi"].p50_ms == 2.0
    for runner, by_name in outputs.items():
        assert list(back.outputs[runner]) == names
        for name, array in by_name.items():
            np.testing.assert_array_equal(back.outputs[runner][name], array)
