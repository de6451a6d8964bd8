"""The torch and onnxruntime runners on the trained digits model, and the LiteRT runner's layout handling on the
float TFLite model onnx2tf made NHWC: every runner takes the same NCHW samples and returns the same logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler_kit.frontends.base import FloatModel
from compiler_kit.quantize import Int8Quantizer
from compiler_kit.recipe import Quantization, Source
from compiler_kit.runners import LiteRtRunner, OnnxRuntimeRunner, TorchRunner
from tests.conftest import TORCH_ENTRY_POINT


@pytest.fixture(scope="module")
def samples(digits_dir: Path) -> list[np.ndarray]:
    """A few evaluation images as the torch model takes them: (1, 1, 16, 16) float32 in [0, 1]."""
    with np.load(digits_dir / "eval.npz") as data:
        x = data["x"][:8].astype(np.float32) / 255.0
    return [np.ascontiguousarray(image.transpose(2, 0, 1)[None]) for image in x]


def _run(runner, samples: list[np.ndarray]) -> np.ndarray:
    outputs = []
    for sample in samples:
        (logits,) = runner.infer({"image": sample}).values()
        assert runner.last_inference_ms > 0
        outputs.append(logits)
    return np.concatenate(outputs)


@pytest.fixture(scope="module")
def onnx_logits(torch_models: dict[str, Path], samples: list[np.ndarray]) -> np.ndarray:
    runner = OnnxRuntimeRunner("onnx", torch_models["onnx"], threads=1)
    runner.prepare()
    assert runner.describe()["runtime"] == "onnxruntime" and runner.describe()["version"]
    return _run(runner, samples)


@pytest.mark.slow
def test_torch_and_onnxruntime_give_the_same_logits(torch_models, samples, onnx_logits: np.ndarray) -> None:
    source = Source(framework="torch", entry_point=TORCH_ENTRY_POINT, weights=torch_models["weights"])
    runner = TorchRunner("source", source, threads=1, output_names=["logits"])
    runner.prepare()
    torch_logits = _run(runner, samples)
    assert runner.describe()["runtime"] == "torch" and runner.describe()["version"]
    assert torch_logits.shape == (len(samples), 10) and torch_logits.dtype == np.float32
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    assert len(set(torch_logits.argmax(axis=1).tolist())) > 1  # a trained model, not a constant


@pytest.mark.slow
def test_litert_takes_nchw_samples_for_the_nhwc_float_model(
    digits_onnx_float: FloatModel, samples, onnx_logits: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "model_float.tflite"
    path.write_bytes(Int8Quantizer(Quantization()).float_tflite(digits_onnx_float))
    assert digits_onnx_float.input_perms == [(0, 2, 3, 1)]
    runner = LiteRtRunner(
        "tflite-float",
        path,
        threads=1,
        input_perms=digits_onnx_float.input_perms,
        outputs=digits_onnx_float.outputs,
    )
    runner.prepare()
    assert list(runner.inputs[0]["shape"]) == [1, 16, 16, 1]  # the model itself is NHWC
    np.testing.assert_allclose(_run(runner, samples), onnx_logits, atol=1e-4)
    assert runner.describe()["runtime"] in {"ai-edge-litert", "tflite-runtime"}
    assert runner.describe()["input_quantization"] == [{"dtype": "float32", "scale": 0.0, "zero_point": 0}]


def test_an_onnx_file_onnxruntime_cannot_load_is_bad_input_naming_its_reason(tmp_path: Path) -> None:
    """An opset newer than onnxruntime supports (onnx's default when no opset is given) names the limit."""
    import onnx
    from onnx import TensorProto, helper

    from compiler_kit.errors import BadInputError

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    model.opset_import[0].version = 99
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "future.onnx"))
    with pytest.raises(BadInputError, match=r"cannot load the source model: .*opset") as raised:
        OnnxRuntimeRunner("source", tmp_path / "future.onnx", threads=1).prepare()
    assert str(raised.value).startswith(f"{tmp_path / 'future.onnx'}: ")
