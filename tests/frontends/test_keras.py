"""The Keras frontend: a .keras file -> a float SavedModel whose signature has the recipe's static shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler_kit.errors import BadInputError
from compiler_kit.frontends import frontend_for
from compiler_kit.frontends.keras import check_inputs, load_keras_model
from compiler_kit.recipe import InputSpec, Source

IMAGE = InputSpec(name="image", shape=[1, 16, 16, 1], layout="NHWC")


@pytest.mark.slow
def test_saved_model_has_a_static_batch_and_the_same_function(keras_model_path: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    float_model = frontend_for("keras").convert(Source(framework="keras", path=keras_model_path), [IMAGE], tmp_path)
    served = tf.saved_model.load(str(float_model.saved_model_dir)).signatures[float_model.signature_key]
    (spec,) = served.structured_input_signature[1].values()
    assert spec.shape.as_list() == [1, 16, 16, 1]

    x = np.random.default_rng(0).random((1, 16, 16, 1), dtype=np.float32)
    (exported,) = served(**{spec.name: tf.constant(x)}).values()
    keras_output = load_keras_model(keras_model_path)(x, training=False)
    np.testing.assert_allclose(exported.numpy(), np.asarray(keras_output), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_shape_the_model_does_not_take_is_named(keras_model_path: Path) -> None:
    model = load_keras_model(keras_model_path)
    wrong = InputSpec(name="image", shape=[1, 28, 28, 1], layout="NHWC")
    with pytest.raises(BadInputError, match=r"shape \[1, 28, 28, 1\] but the model takes \['\?', 16, 16, 1\]"):
        check_inputs(model, [wrong], keras_model_path)


def test_a_multi_output_model_keeps_its_outputs_by_name(tmp_path: Path) -> None:
    """Two heads, declared in the order (b, a): TFLite's signature and its output tensors need not keep that order,
    and the runners must still return each head under its own name, with the source model's values."""
    import keras

    from compiler_kit.quantize import Int8Quantizer
    from compiler_kit.recipe import Quantization
    from compiler_kit.runners import KerasRunner, LiteRtRunner

    inputs = keras.Input((4,), name="x")
    heads = [keras.layers.Dense(2, name="b_scores")(inputs), keras.layers.Dense(3, name="a_box")(inputs)]
    keras.Model(inputs, heads).save(tmp_path / "two.keras")
    spec = InputSpec(name="x", shape=[1, 4])
    (tmp_path / "converted").mkdir()
    float_model = frontend_for("keras").convert(
        Source(framework="keras", path=tmp_path / "two.keras"), [spec], tmp_path / "converted"
    )
    assert float_model.output_names == ["b_scores", "a_box"]
    (tmp_path / "float.tflite").write_bytes(Int8Quantizer(Quantization()).float_tflite(float_model))
    tflite = LiteRtRunner("tflite-float", tmp_path / "float.tflite", 1, float_model.input_perms, float_model.outputs)
    source = KerasRunner("source", tmp_path / "two.keras", 1)
    for runner in (tflite, source):
        runner.prepare()
    x = {"x": np.random.default_rng(0).random((1, 4), dtype=np.float32)}
    converted, reference = tflite.infer(x), source.infer(x)
    assert list(converted) == list(reference) == ["b_scores", "a_box"]
    for name in reference:
        np.testing.assert_allclose(converted[name], reference[name], atol=1e-5)


def test_a_folder_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="model file not found") as raised:
        load_keras_model(tmp_path)
    assert raised.value.exit_code == 2


def test_nan_and_inf_weights_are_named_with_the_file(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(5, name="hidden")
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden(inputs)))
    kernel, bias = hidden.get_weights()
    kernel[1, 2], bias[0] = np.nan, -np.inf
    hidden.set_weights([kernel, bias])
    model.save(tmp_path / "diverged.keras")
    with pytest.raises(BadInputError) as raised:
        load_keras_model(tmp_path / "diverged.keras")
    assert raised.value.exit_code == 2
    message = str(raised.value)
    assert (
        f"{tmp_path / 'diverged.keras'}: the model's weights hold NaN or Inf: 'hidden/kernel', 'hidden/bias'" in message
    )
    assert "fix: retrain or fix the checkpoint" in message
