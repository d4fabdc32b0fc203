"""Inception module: spatial and cross-channel correlations mapped by parallel branches."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register


def conv_relu(c_in: int, c_out: int, kernel_size: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InceptionBlock(nn.Module):
    """GoogLeNet's inception module (Szegedy et al., arXiv 1409.4842, Fig. 2b and Table 1).

    Four parallel branches concatenated on channels: 1×1; 1×1 → 3×3; 1×1 → 5×5 (or, with
    ``factorized``, 1×1 → 3×3 → 3×3 as in arXiv 1512.00567 Fig. 5); 3×3 max-pool → 1×1.
    The 1×1 convolutions map cross-channel correlations, the k×k ones spatial correlations.
    Defaults are inception (3a): 192 → 64 + 128 + 32 + 32 = 256 channels at 28×28.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        factorized: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        _checks.positive(
            in_channels=in_channels,
            ch1x1=ch1x1,
            ch3x3red=ch3x3red,
            ch3x3=ch3x3,
            ch5x5red=ch5x5red,
            ch5x5=ch5x5,
            pool_proj=pool_proj,
        )
        self.branch1 = conv_relu(in_channels, ch1x1, 1, relu)
        self.branch2 = nn.Sequential(
            conv_relu(in_channels, ch3x3red, 1, relu), conv_relu(ch3x3red, ch3x3, 3, relu)
        )
        if factorized:
            self.branch3 = nn.Sequential(
                conv_relu(in_channels, ch5x5red, 1, relu),
                conv_relu(ch5x5red, ch5x5, 3, relu),
                conv_relu(ch5x5, ch5x5, 3, relu),
            )
        else:
            self.branch3 = nn.Sequential(
                conv_relu(in_channels, ch5x5red, 1, relu), conv_relu(ch5x5red, ch5x5, 5, relu)
            )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), conv_relu(in_channels, pool_proj, 1, relu)
        )

    def branches(self) -> list[nn.Module]:
        return [self.branch1, self.branch2, self.branch3, self.branch4]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches()], 1)


register(
    VariantSpec(
        name="inception",
        family="inception",
        structure_kind="inception",
        paper="GoogLeNet, Szegedy et al. (1409.4842)",
        builder=InceptionBlock,
        cost_fn=cost.inception,
        structure=lambda c: dict(convs=7 if c["factorized"] else 6),
        summary="1×1 | 1×1→3×3 | 1×1→5×5 | pool→1×1, concatenated",
        defaults=dict(
            in_channels=192,
            ch1x1=64,
            ch3x3red=96,
            ch3x3=128,
            ch5x5red=16,
            ch5x5=32,
            pool_proj=32,
            factorized=False,
            relu=True,
            height=28,
            width=28,
        ),
    )
)
