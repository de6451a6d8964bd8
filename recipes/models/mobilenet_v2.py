"""A speed benchmark, untrained (no accuracy to measure): MobileNetV2 (width 1.0, 224x224, 1000 classes), in PyTorch.

Its weights are NOT trained and nothing is downloaded: they are a seeded initialisation, then the BatchNorm
statistics are settled on the calibration photographs (calibration/photos.py) so activations have realistic
ranges for int8. The graph is what matters here: depthwise convolutions, inverted residual blocks with adds,
ReLU6, global average pooling and a classifier, as in the published network, for realistic conversion drift and
latency. Accuracy cannot be measured (no labels, no training); agreement with the float model can.

`python -m recipes.models.mobilenet_v2 [OUT.pt]` writes the state_dict that `recipes/mobilenet_v2.yaml` loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from calibration import photos

DEFAULT_PATH = Path(__file__).resolve().parent / "mobilenet_v2.pt"
SEED = 0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as the recipe's preprocess says
# (expansion t, output channels c, repeats n, first stride s), from the MobileNetV2 paper's Table 2
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(inputs: int, outputs: int, kernel: int, stride: int, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [
        nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(outputs),
    ]
    return nn.Sequential(*layers, nn.ReLU6()) if relu else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        expand = [conv_bn(inputs, hidden, 1, 1)] if expansion != 1 else []
        self.block = nn.Sequential(
            *expand, conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, outputs, 1, 1, relu=False)
        )
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        channels = 32
        for expansion, outputs, repeats, stride in SETTINGS:
            for k in range(repeats):
                layers.append(InvertedResidual(channels, outputs, stride if k == 0 else 1, expansion))
                channels = outputs
        layers.append(conv_bn(channels, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build_model() -> MobileNetV2:
    """The entry point the recipe names; weights come from the recipe's state_dict."""
    return MobileNetV2()


def _calibration_batch(photo_dir: Path, size: int = 224) -> torch.Tensor:
    from PIL import Image

    files = sorted((photo_dir / "calibration").glob("*.png"))
    images = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for f in files]
    x = (np.stack(images).astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))


def make_weights(out_path: Path = DEFAULT_PATH, photo_dir: Path = photos.DEFAULT_DIR) -> Path:
    """Seeded weights; BatchNorm running statistics settled on the calibration photographs."""
    if not (photo_dir / "calibration").exists():
        photos.write_photos(photo_dir)
    torch.manual_seed(SEED)
    model = build_model()
    batch = _calibration_batch(photo_dir)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for chunk in batch.split(16):
            model(chunk)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    torch.save(model.eval().state_dict(), tmp)
    tmp.replace(out_path)
    return out_path


if __name__ == "__main__":
    print(make_weights(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH))
