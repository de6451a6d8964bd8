"""The Keras example: a small CNN trained on the digits training split (see calibration/digits.py).

`python -m recipes.models.digits_keras [OUT.keras]` trains it (seeded, a few seconds on 2 cores) and saves it
as a native Keras file, which is what `recipes/digits_keras.yaml` builds. Nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from calibration import digits

DEFAULT_PATH = Path(__file__).resolve().parent / "digits_cnn.keras"
EPOCHS = 20
SEED = 0


def build_model():  # -> keras.Model (keras is imported lazily: it costs seconds)
    import keras

    return keras.Sequential(
        [
            keras.Input((digits.SIDE, digits.SIDE, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def train(out_path: Path = DEFAULT_PATH, data_dir: Path = digits.DEFAULT_DIR) -> Path:
    import keras

    if not (data_dir / "train.npz").exists():
        digits.write_splits(data_dir)
    keras.utils.set_random_seed(SEED)
    with np.load(data_dir / "train.npz") as data:
        x, y = data["x"].astype(np.float32) / 255.0, data["y"]
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp.keras")
    model.save(tmp)
    tmp.replace(out_path)
    return out_path


if __name__ == "__main__":
    print(train(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH))
