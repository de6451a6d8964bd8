"""The CO2 forecasting data: weekly Mauna Loa CO2 readings (ppm) that ship inside the statsmodels wheel.

Real measured sensor data that needs no download: statsmodels bundles the Scripps continuous record, 2,284 weeks
from March 1958 to December 2001, 59 of them missing (all before 1986). The CSV is read straight from the installed
package: statsmodels's own loader imports pandas for a two-column file.

Each sample is a window RELATIVE TO ITS LAST READING, which is what an edge forecaster is fed (float32, ppm):
- `x`           the previous 52 weekly readings minus the last of them, so `x[:, -1] == 0`;
- `y_ppm`       the next 4 weekly readings minus that same last reading: the change to forecast;
- `last_ppm`    the last reading itself (the level), so a caller gets absolute forecasts as `last_ppm + y_ppm`
                (and the absolute history as `last_ppm + x`);
- `target_date` the week of the first target (datetime64[D]).
The level stays out of the model: CO2 rises about 1.4 ppm a year, but a window relative to its last reading (the
seasonal swing and a year of trend: -9.3 to +8.4 ppm over the calibration windows) does not drift with it, so int8
ranges calibrated on early years still cover later ones (8 of the eval windows' 21,580 values fall outside, by at
most 0.6 ppm), and they are tight: int8 steps of 0.069 ppm in and 0.017 ppm out instead of 1.57 ppm (see
recipes/models/co2_forecast.py and benchmarks/co2_int8_check.py).

The split is by TIME, so the evaluation forecasts years the model never saw:
- `calibration.npz` windows whose 4 target weeks all fall before 1994-01-01 (1,811, targets 1959-1993): the example
  model is trained on them, and they calibrate the int8 ranges;
- `eval.npz`        windows whose first target week is on or after 1994-01-01 (415, targets 1994-2001).
No target week is in both. An eval window's history reaches back into 1993: that is the past a forecaster has.
Gaps are filled by linear interpolation in time before windowing (the longest is 18 weeks, in 1964); the eval
years have none, so every eval reading and target is a measurement.

Run `python -m calibration.co2 [OUT_DIR]`; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np

from calibration import main, save_npz

DEFAULT_DIR = Path(__file__).resolve().parent / "co2"
HISTORY, HORIZON = 52, 4  # a year of weeks in (the seasonal cycle), a month of weeks out
EVAL_FROM = np.datetime64("1994-01-01")


def measured() -> tuple[np.ndarray, np.ndarray]:
    """The weekly dates (datetime64[D]) and readings in ppm as shipped, NaN where a week is missing."""
    lines = files("statsmodels").joinpath("datasets", "co2", "co2.csv").read_text().split()
    assert lines[0] == "date,co2", lines[0]
    dates, values = zip(*(line.split(",") for line in lines[1:]), strict=True)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates], dtype="datetime64[D]")
    return dates, np.array([float(v) if v else np.nan for v in values])


def interpolate(values: np.ndarray) -> np.ndarray:
    """Missing weeks filled linearly between their measured neighbours (the series is evenly spaced weekly)."""
    weeks, known = np.arange(len(values)), ~np.isnan(values)
    return np.interp(weeks, weeks[known], values[known])


def windows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (history, next weeks) pair in absolute units, (n, HISTORY) and (n, HORIZON) float64,
    n = len(values) - HISTORY - HORIZON + 1."""
    stacked = np.lib.stride_tricks.sliding_window_view(values, HISTORY + HORIZON)
    return stacked[:, :HISTORY], stacked[:, HISTORY:]


def relative(history: np.ndarray, future: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`x`, `y_ppm` and `last_ppm` (float32): both windows minus the history's last reading, and that reading.
    The subtraction is done in float64 before rounding, so `x[:, -1]` is exactly 0."""
    last = history[:, -1:]
    return (history - last).astype(np.float32), (future - last).astype(np.float32), last[:, 0].astype(np.float32)


def split(target_dates: np.ndarray) -> dict[str, np.ndarray]:
    """Window indices by the first target week: calibration's last target week is before EVAL_FROM."""
    last_target = target_dates + np.timedelta64(7 * (HORIZON - 1), "D")
    return {"calibration": np.flatnonzero(last_target < EVAL_FROM), "eval": np.flatnonzero(target_dates >= EVAL_FROM)}


def write_splits(out_dir: Path = DEFAULT_DIR) -> dict[str, Path]:
    dates, values = measured()
    history, future = windows(interpolate(values))
    x, y, last = relative(history, future)
    target_dates = dates[HISTORY : HISTORY + len(x)]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, indices in split(target_dates).items():
        arrays = {"x": x[indices], "y_ppm": y[indices], "last_ppm": last[indices], "target_date": target_dates[indices]}
        paths[part] = save_npz(out_dir / f"{part}.npz", **arrays)
    return paths


if __name__ == "__main__":
    main(write_splits, DEFAULT_DIR)
