"""Flattened convolution: lateral 1×1, vertical k×1, horizontal 1×k."""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register


class FlattenedConv(nn.Module):
    """Jin, Dundar, Culurciello, *Flattened Convolutional Neural Networks for Feedforward
    Acceleration*, arXiv 1412.5474.

    A k×k×C filter bank replaced by three one-dimensional stages: a lateral 1×1 convolution
    across channels (C→F), then per-channel vertical (k×1) and horizontal (1×k) convolutions.
    Without a non-linearity or an intermediate bias this equals one k×k convolution whose
    kernels are the outer products lateral ⊗ vertical ⊗ horizontal, borders included.
    Cost per pixel: C·F + 2·k·F instead of C·F·k².
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        bias: bool = False,
        nonlinearity: bool = False,
    ) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, out_channels=out_channels)
        _checks.odd_kernel(kernel_size)
        f, p = out_channels, kernel_size // 2
        self.lateral = nn.Conv2d(in_channels, f, 1, bias=False)
        self.vertical = nn.Conv2d(f, f, (kernel_size, 1), padding=(p, 0), groups=f, bias=False)
        self.horizontal = nn.Conv2d(f, f, (1, kernel_size), padding=(0, p), groups=f, bias=bias)
        self.act = nn.ReLU() if nonlinearity else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.horizontal(self.act(self.vertical(self.act(self.lateral(x)))))


register(
    VariantSpec(
        name="flattened",
        family="flattened",
        structure_kind="flattened",
        paper="Flattened CNNs, Jin et al. (1412.5474)",
        builder=FlattenedConv,
        cost_fn=cost.flattened,
        structure=lambda c: dict(kernel=c["kernel_size"]),
        summary="lateral 1×1 → vertical k×1 → horizontal 1×k",
        defaults=dict(
            in_channels=64,
            out_channels=64,
            kernel_size=3,
            bias=False,
            nonlinearity=False,
            height=28,
            width=28,
        ),
    )
)
