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


def test_a_shape_the_model_does_not_take_is_named(keras_model_path: Path) -> None:
    model = load_keras_model(keras_model_path)
    wrong = InputSpec(name="image", shape=[1, 28, 28, 1], layout="NHWC")
    with pytest.raises(BadInputError, match=r"shape \[1, 28, 28, 1\] but the model takes \['\?', 16, 16, 1\]"):
        check_inputs(model, [wrong], keras_model_path)


def test_a_multi_output_model_is_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)])
    with pytest.raises(BadInputError, match="2 outputs"):
        check_inputs(model, [InputSpec(name="x", shape=[1, 4])], tmp_path / "m.keras")


def test_a_folder_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="model file not found") as raised:
        load_keras_model(tmp_path)
    assert raised.value.exit_code == 2
