"""A small torch CNN holding every construct the Edge TPU legalization rewrites, as torchvision and real pretrained
models write them: a padded max-pool after ReLU and one on signed values, a grouped convolution, a depthwise
convolution with unequal strides, stride-2 convolutions with torch's symmetric padding, HardSwish, HardSigmoid
(a squeeze-excite block), a hard-swish written out as x * relu6(x + 3) / 6 and a learned scale and shift of shape
[1] (as PaddlePaddle exports them), ShuffleNet's channel shuffle, and a transposed convolution followed by a
ReLU (a segmentation or text-detection head)."""

from __future__ import annotations

import torch
from torch import nn

SEED = 0
SHAPE = (1, 3, 32, 32)


class Constructs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pool_after_relu = nn.MaxPool2d(3, 2, 1)
        self.grouped = nn.Conv2d(16, 32, 3, 1, 1, groups=4)
        self.hard_swish = nn.Hardswish()
        self.depthwise = nn.Conv2d(32, 32, 3, (2, 1), 1, groups=32)
        self.squeeze_excite = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 8, 1), nn.ReLU(), nn.Conv2d(8, 32, 1), nn.Hardsigmoid()
        )
        self.upsample = nn.ConvTranspose2d(32, 32, 2, 2)
        self.signed_pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.scale, self.shift = nn.Parameter(torch.full((1,), 1.5)), nn.Parameter(torch.full((1,), 0.25))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool_after_relu(self.stem(x))
        x = self.hard_swish(self.grouped(x))
        batch, channels, height, width = x.shape
        x = x.view(batch, 4, channels // 4, height, width).transpose(1, 2).reshape(batch, channels, height, width)
        x = torch.relu(self.depthwise(x * self.scale + self.shift))
        x = x * self.squeeze_excite(x)
        x = x * torch.clamp(x + 3, 0, 6) / 6  # a hard-swish written out
        x = torch.relu(self.upsample(x))
        x = self.signed_pool(x - 0.5)
        return self.head(x.mean((2, 3)))


def build_model() -> nn.Module:
    torch.manual_seed(SEED)
    return Constructs().eval()
