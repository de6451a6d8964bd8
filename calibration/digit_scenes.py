"""Digit scenes for the detector example: 32x32 canvases holding one or two of scikit-learn's bundled digits.

Each digit is scaled from 8x8 to a seeded random size of 10-14 pixels and pasted at a seeded random position, so a
scene has something to find, a class and a box. Digits of one scene never overlap, so every ground-truth box holds
exactly one digit. Scenes of each part are made from that part of calibration/digits.py's stratified split of the
digit images, so the three parts share no digit image:
- `train.npz`       the detector (recipes/models/digit_detector.py) is trained on it;
- `calibration.npz` representative scenes for int8 calibration: training distribution, never evaluation;
- `eval.npz`        held out: every runner is verified on it, and its digits were never seen in training.
Each archive holds `x` (count, 32, 32, 1) uint8 (NHWC, 0-255 as in digits.npz, so recipes scale by 1/255),
`boxes` (count, 2, 4) float32 x1, y1, x2, y2 in pixel edges (the digit fills columns x1..x2-1, rows y1..y2-1) and
`classes` (count, 2) int64; a scene with one digit pads its second row with boxes -1 and class -1. ckit reads `x`
and ignores the rest.

Run `python -m calibration.digit_scenes [OUT_DIR]` (the Makefile does); the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from calibration import digits, main, save_npz

DEFAULT_DIR = Path(__file__).resolve().parent / "digit_scenes"
CANVAS = 32
SIZES = (10, 14)  # digit side in pixels, inclusive: large enough to read, small enough for two per canvas
MAX_DIGITS = 2
SCENES = {"train": 4000, "calibration": 200, "eval": 400}
SEED = 0


def scaled_digit(image: np.ndarray, side: int) -> np.ndarray:
    """One 8x8 digit (values 0-16) as a side x side uint8 image, bilinearly resized."""
    from PIL import Image

    return np.asarray(Image.fromarray((image * (255 / 16)).astype(np.uint8)).resize((side, side), Image.BILINEAR))


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two x1, y1, x2, y2 boxes share a pixel."""
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def make_scenes(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`count` scenes of 1-2 digits drawn (with replacement) from `images` (n, 8, 8) with `labels`."""
    x = np.zeros((count, CANVAS, CANVAS, 1), np.uint8)
    boxes = np.full((count, MAX_DIGITS, 4), -1, np.float32)
    classes = np.full((count, MAX_DIGITS), -1, np.int64)
    for scene in range(count):
        picks = rng.integers(len(images), size=rng.integers(1, MAX_DIGITS + 1))
        sides = rng.integers(SIZES[0], SIZES[1] + 1, size=len(picks))
        # Rejection sampling of the whole layout: placing digits one by one can leave no room for the last one
        # (a 14 px digit in the middle of the canvas), so every position is drawn again until none overlap.
        while True:
            corners = rng.integers(0, CANVAS - sides[:, None] + 1, size=(len(picks), 2))
            placed = np.hstack([corners, corners + sides[:, None]])  # x1, y1, x2, y2
            if not any(_overlap(a, b) for a, b in itertools.combinations(placed, 2)):
                break
        for slot, (pick, side, box) in enumerate(zip(picks, sides, placed, strict=True)):
            left, top = box[:2]
            x[scene, top : top + side, left : left + side, 0] = scaled_digit(images[pick], int(side))
            boxes[scene, slot], classes[scene, slot] = box, labels[pick]
    return {"x": x, "boxes": boxes, "classes": classes}


def write_scenes(out_dir: Path = DEFAULT_DIR, seed: int = SEED) -> dict[str, Path]:
    from sklearn.datasets import load_digits

    bundled = load_digits()
    labels = bundled.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    # The digits example's split of the same 1,797 images: the eval scenes' digits are held out from training.
    for part, indices in digits.split_indices(labels).items():
        scenes = make_scenes(bundled.images[indices], labels[indices], SCENES[part], rng)
        paths[part] = save_npz(out_dir / f"{part}.npz", **scenes)
    return paths


if __name__ == "__main__":
    main(write_scenes, DEFAULT_DIR)
