"""The first BatchNorm of a real torch module, its running statistics learned on digits scaled to [0, 1]: fed the
same scaling it agrees, fed raw 0-16 pixel values it does not (the diagnosis a wrong preprocessing gets)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from compiler_kit.compare.batchnorm import torch_first_batchnorm
from compiler_kit.compare.diagnoses import Evidence, batchnorm_statistics
from compiler_kit.recipe import Source

MODULE = """
    from torch import nn


    def build():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
"""


def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float32)[:, None, :, :]  # (n, 1, 8, 8), values 0..16


def test_the_first_batchnorm_tells_a_wrong_scaling_from_the_right_one(tmp_path: Path) -> None:
    import torch

    (tmp_path / "bn_digits_net.py").write_text(textwrap.dedent(MODULE))
    images = _digits() / 16.0
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, momentum=None), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 10),
    )  # fmt: skip
    net.train()
    with torch.no_grad():  # running statistics only: a cumulative average over the training images
        for batch in np.array_split(images[:1000], 10):
            net(torch.from_numpy(batch))
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    data = {"framework": "torch", "entry_point": "bn_digits_net:build", "weights": str(tmp_path / "weights.pt")}
    source = Source.model_validate(data, context={"base_dir": tmp_path})
    held_out = images[1000:1032]

    right = torch_first_batchnorm(source, [x[None] for x in held_out])
    assert right is not None and right.layer == "1"
    assert batchnorm_statistics(Evidence(batchnorm=right)) == []
    wrong = torch_first_batchnorm(source, [x[None] * 16.0 for x in held_out])
    [note] = batchnorm_statistics(Evidence(batchnorm=wrong))
    assert "first BatchNorm ('1')" in note and "calibration.preprocess" in note
