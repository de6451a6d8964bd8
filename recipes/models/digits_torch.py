"""The PyTorch example: a small CNN trained on the digits training split (see calibration/digits.py).

`python -m recipes.models.digits_torch [OUT_DIR]` trains it (seeded, seconds on 2 cores) and writes
- `digits_torch.pt`: the state_dict, which `recipes/digits_torch.yaml` loads into `build_model()`;
- `digits.onnx`: the same model exported to ONNX with a dynamic batch dimension, which
  `recipes/digits_onnx.yaml` builds (the recipe fixes the batch to 1).
Nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from calibration import digits

DEFAULT_DIR = Path(__file__).resolve().parent
WEIGHTS, ONNX = "digits_torch.pt", "digits.onnx"
EPOCHS = 20
SEED = 0


class DigitsNet(nn.Module):
    """Input (N, 1, 16, 16) in [0, 1], NCHW as torch models are; output 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model() -> DigitsNet:
    """The entry point a recipe names: `models.digits_torch:build_model`."""
    return DigitsNet()


def train(out_dir: Path = DEFAULT_DIR, data_dir: Path = digits.DEFAULT_DIR) -> dict[str, Path]:
    if not (data_dir / "train.npz").exists():
        digits.write_splits(data_dir)
    torch.manual_seed(SEED)
    with np.load(data_dir / "train.npz") as data:
        x = torch.from_numpy(data["x"].astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
        y = torch.from_numpy(data["y"])
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x), generator=order).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"weights": out_dir / WEIGHTS, "onnx": out_dir / ONNX}
    tmp_weights, tmp_onnx = out_dir / f".{WEIGHTS}.tmp", out_dir / f".tmp.{ONNX}"
    torch.save(model.state_dict(), tmp_weights)
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        model,
        (x[:2],),
        tmp_onnx,
        input_names=["image"],
        dynamic_shapes={"x": {0: batch}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    tmp_weights.replace(paths["weights"])
    tmp_onnx.replace(paths["onnx"])
    return paths


if __name__ == "__main__":
    for name, path in train(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR).items():
        print(f"{name:8s} {path}")
