"""The forecasting example: the next 4 weeks' change of the Mauna Loa CO2 reading from the previous 52, in ppm.

`python -m recipes.models.co2_forecast [OUT.keras]` trains it (seeded, a few seconds on 2 cores) on the
calibration windows (see calibration/co2.py), saves it as a native Keras file, which is what
`recipes/co2_forecast.yaml` builds, and prints its mean absolute error in ppm on the eval years beside the naive
forecast (the last reading, repeated: a change of 0). Nothing is downloaded.

Input `history`, (1, 52): the previous 52 weekly readings minus the last of them, in ppm (so its last value is 0).
Output `forecast`, (1, 4): the next 4 weeks' change from that last reading, in ppm. Both ends are physical units,
not normalized scores: the caller that subtracted the last reading adds it back, `last_ppm + forecast` (each data
file stores `last_ppm`), to get the forecast CO2 level. Inside: scale by 1/4, two FULLY_CONNECTED, scale back.

Why the level (the last reading, 313-374 ppm) stays outside the int8 model: an int8 tensor's range is what the
calibration samples span, widened to include 0, cut into 255 steps. With absolute ppm at the input and output (the
last reading subtracted and added back inside the graph, the previous design) that range is 0-361 ppm on the
1959-1993 calibration windows, a step of 1.41 ppm, and CO2 rises about 1.4 ppm a year: every 1994-2001 reading
above 360.7 ppm saturates, int8 vs float MAE 4.88 ppm. Calibration copies shifted by +40 ppm cured that, at a step
of 1.57 ppm whose rounding is most of the error: int8 vs float MAE 0.46 ppm, max 1.48. Relative to the last
reading a window spans -9.3 to +8.4 ppm and the forecast change -2.5 to +1.9 ppm whatever the level, so the steps
are 0.069 ppm in and 0.017 ppm out, and int8 vs float MAE is 0.014 ppm, calibrated on the 1959-1993 windows alone
(0.013 if calibrated on the eval years themselves: the relative ranges barely drift). The errors above 0.1 ppm,
on 5 of 415 eval windows (summers 1998-99, up to 0.58 ppm), are the output range's end: the model forecasts a
deeper 4-week drop for them (to -3.04 ppm) than for any 1959-1993 window, and int8 stops at -2.46 ppm.
benchmarks/co2_int8_check.py measures all of it. Keeping the level out costs the caller one float subtraction
per input value and one addition per output value.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from calibration import co2

DEFAULT_PATH = Path(__file__).resolve().parent / "co2_forecast.keras"
# A window's readings lie within about 10 ppm of its last one (the seasonal swing): /4 puts them near [-2, 2].
SCALE_PPM = 4.0
HIDDEN, EPOCHS, BATCH, SEED = 32, 40, 64, 0


def build_model():  # -> keras.Model (keras is imported lazily: it costs seconds)
    import keras

    history = keras.Input((co2.HISTORY,), name="history")
    x = keras.layers.Rescaling(1 / SCALE_PPM, name="normalize")(history)
    x = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(co2.HORIZON, name="change_scaled")(x)
    forecast = keras.layers.Rescaling(SCALE_PPM, name="forecast")(x)  # back to ppm: the output is a ppm change
    return keras.Model(history, forecast, name="co2_forecast")


def load_windows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`x`, `y_ppm` and `last_ppm` of a split: relative history, change to forecast, and the level."""
    with np.load(path) as data:
        return data["x"], data["y_ppm"], data["last_ppm"]


def train(out_path: Path = DEFAULT_PATH, data_dir: Path = co2.DEFAULT_DIR) -> Path:
    import keras

    if not (data_dir / "calibration.npz").exists():
        co2.write_splits(data_dir)
    keras.utils.set_random_seed(SEED)
    x, y, _ = load_windows(data_dir / "calibration.npz")
    model = build_model()
    # MAE: the metric the recipe gates on, and robust to the interpolated stretches of the 1960s
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mae")
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.tmp.keras")
    model.save(tmp)
    tmp.replace(out_path)
    return out_path


def eval_mae(model_path: Path = DEFAULT_PATH, data_dir: Path = co2.DEFAULT_DIR) -> dict[str, float]:
    """Mean absolute error in ppm over every eval target week, of the forecast CO2 level (`last_ppm` added back,
    as a caller does) against the measured one: the float model and the naive forecast (the last reading)."""
    import keras

    x, y, last = load_windows(data_dir / "eval.npz")
    level, measured = last[:, None].astype(np.float64), y + last[:, None].astype(np.float64)
    change = keras.saving.load_model(model_path, compile=False).predict(x, verbose=0)
    return {"model": float(np.abs(level + change - measured).mean()), "naive": float(np.abs(level - measured).mean())}


if __name__ == "__main__":
    path = train(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH)
    errors = eval_mae(path)
    print(path)
    print(f"eval MAE, {co2.HORIZON} weeks ahead: model {errors['model']:.3f} ppm, naive {errors['naive']:.3f} ppm")
