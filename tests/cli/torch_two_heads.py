"""A torch module with two heads returned as a dict, for the verification-by-name tests (an entry point)."""

from __future__ import annotations

from typing import Any


def build_model() -> Any:
    import torch
    from torch import nn

    class TwoHeads(nn.Module):
        """`{"scores": (1, 5), "mask": (1, 1, 8, 8)}`: names the exporter takes from the dict, in its order."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Conv2d(3, 8, 3, padding=1)
            self.scores = nn.Linear(8, 5)
            self.mask = nn.Conv2d(8, 1, 1)

        def forward(self, x: Any) -> dict[str, Any]:
            features = torch.relu(self.features(x))
            return {"scores": self.scores(features.mean(dim=(2, 3))), "mask": torch.sigmoid(self.mask(features))}

    return TwoHeads().eval()
