"""MobileNet v1: a whole network of depthwise separable convolutions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register
from .separable import SeparableConv


class MobileNetV1(nn.Module):
    """Howard et al., MobileNets (arXiv 1704.04861), Table 1: a 3×3 stem (stride 2), 13
    depthwise separable layers with BN → ReLU after each convolution, global average pool, FC.
    569 M multiply-adds and 4.2 M parameters at 224×224 with width multiplier 1."""

    def __init__(self, num_classes: int = 1000, width_multiplier: float = 1.0) -> None:
        super().__init__()
        if not 1 / 16 <= width_multiplier <= 4:
            raise ValueError(
                f"width_multiplier={width_multiplier} must be in [1/16, 4] (below 1/16 the "
                "32-channel stem keeps under 2 channels: no depthwise convolution)"
            )
        _checks.positive(num_classes=num_classes)
        c = int(32 * width_multiplier)
        layers: list[nn.Module] = [
            nn.Conv2d(3, c, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        ]
        for out, stride in cost.MOBILENET_V1_LAYERS:
            out = int(out * width_multiplier)
            layers.append(SeparableConv(c, out, 3, stride, bias=False, activation=True))
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


register(
    VariantSpec(
        name="mobilenet_v1",
        family="mobilenet_v1",
        paper="MobileNets, Howard et al. (1704.04861)",
        builder=MobileNetV1,
        cost_fn=cost.mobilenet_v1,
        input_channels_key=None,
        summary="13 depthwise separable layers",
        commit_graph=False,
        batchnorm_from_data=True,
        defaults=dict(num_classes=1000, width_multiplier=1.0, height=224, width=224),
    )
)
