"""Grouped convolution."""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register


class GroupedConv(nn.Module):
    """A k×k convolution split into ``groups`` independent convolutions, each over
    C_in/g inputs producing C_out/g outputs: block-diagonal across channels, 1/g of the cost.
    AlexNet (Krizhevsky et al., 2012) for two GPUs; ResNeXt (Xie et al., arXiv 1611.05431) as
    "cardinality"."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        groups: int = 8,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, out_channels=out_channels, groups=groups)
        _checks.odd_kernel(kernel_size)
        _checks.stride_1_or_2(stride)
        _checks.divisible("in_channels", in_channels, "groups", groups)
        _checks.divisible("out_channels", out_channels, "groups", groups)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=bias,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


register(
    VariantSpec(
        name="grouped",
        family="grouped",
        structure_kind="grouped",
        paper="AlexNet (2012); ResNeXt (1611.05431)",
        builder=GroupedConv,
        cost_fn=cost.grouped,
        structure=lambda c: dict(groups=c["groups"]),
        summary="grouped k×k convolution",
        defaults=dict(
            in_channels=64,
            out_channels=64,
            kernel_size=3,
            groups=8,
            stride=1,
            bias=True,
            height=28,
            width=28,
        ),
    )
)
