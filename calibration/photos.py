"""Photographs for the image-model examples: crops of the images that ship inside scikit-image.

No data set may be downloaded, so the MobileNetV2-sized example is calibrated and verified on real pictures that
scikit-image bundles. The parts come from DIFFERENT source images, so they are disjoint:
- `calibration/` crops of retina, Hubble deep field, immunohistochemistry, colour wheel and the grey-scale
  pictures (camera, coins, moon, brick, grass, gravel, cell, clock);
- `eval/` crops of the colour photographs astronaut, chelsea (a cat), coffee and rocket;
- `heldout/` crops of the left motorcycle photograph of the stereo pair, the scikit-image logo, and the scanned page
  and text: photos no recipe uses, for checking that a choice made on `eval/` (`ckit tune`'s) holds on others.
Crops are square, at seeded random positions and scales, saved as 256x256 RGB PNGs (the recipe resizes them).
No labels: the example network has untrained (seeded) weights, so agreement with float is what is measured.

Run `python -m calibration.photos [OUT_DIR]` (the Makefile does); the output is reproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parent / "photos"
SIDE = 256
SEED = 0
PARTS = {
    "calibration": (
        [
            *("retina", "hubble_deep_field", "immunohistochemistry", "colorwheel"),
            *("camera", "coins", "moon", "brick", "grass", "gravel", "cell", "clock"),
        ],
        8,
    ),
    "eval": (["astronaut", "chelsea", "coffee", "rocket"], 12),
    "heldout": (["stereo_motorcycle", "logo", "page", "text"], 12),  # last: the parts before keep their crops
}


def picture(name: str) -> np.ndarray:
    """One of scikit-image's bundled pictures as RGB uint8 (grey-scale ones repeated over three channels)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image  # a stereo pair (and disparity): its left photograph
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def crops(image: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` square crops covering 40-100% of the short side, resized to SIDE x SIDE."""
    from PIL import Image

    height, width = image.shape[:2]
    result = []
    for _ in range(count):
        size = int(rng.uniform(0.4, 1.0) * min(height, width))
        top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
        crop = Image.fromarray(image[top : top + size, left : left + size])
        result.append(np.asarray(crop.resize((SIDE, SIDE), Image.Resampling.BILINEAR)))
    return result


def write_photos(out_dir: Path = DEFAULT_DIR) -> dict[str, Path]:
    from PIL import Image

    rng = np.random.default_rng(SEED)
    folders = {}
    for part, (names, per_image) in PARTS.items():
        folder = out_dir / part
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            for k, crop in enumerate(crops(picture(name), per_image, rng)):
                tmp = folder / f".{name}_{k:02d}.tmp.png"
                Image.fromarray(crop).save(tmp)
                tmp.replace(folder / f"{name}_{k:02d}.png")
        folders[part] = folder
    return folders


if __name__ == "__main__":
    for part, folder in write_photos(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR).items():
        print(f"{part:12s} {folder} ({len(list(folder.glob('*.png')))} images)")
