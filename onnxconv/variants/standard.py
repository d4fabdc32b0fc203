"""Standard k×k and pointwise 1×1 convolutions."""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register


class StandardConv(nn.Module):
    """A k×k convolution over all input channels with 'same' padding (LeCun et al., 1998).

    The baseline every factorisation below is measured against: D_K²·M·N·D_F² multiply-adds.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, out_channels=out_channels, stride=stride)
        _checks.odd_kernel(kernel_size)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=bias
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class PointwiseConv(nn.Module):
    """A 1×1 convolution: a per-pixel linear map across channels (Lin et al., Network in
    Network, arXiv 1312.4400; GoogLeNet's dimension reductions, arXiv 1409.4842)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, out_channels=out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


register(
    VariantSpec(
        name="standard",
        family="standard",
        structure_kind="standard",
        paper="LeCun et al. 1998; MobileNet eq. 2 (1704.04861)",
        builder=StandardConv,
        cost_fn=cost.standard,
        structure=lambda c: dict(kernel=c["kernel_size"]),
        summary="k×k convolution",
        defaults=dict(
            in_channels=64, out_channels=64, kernel_size=3, stride=1, bias=True, height=28, width=28
        ),
    )
)

register(
    VariantSpec(
        name="pointwise",
        family="pointwise",
        structure_kind="pointwise",
        paper="Network in Network (1312.4400); GoogLeNet",
        builder=PointwiseConv,
        cost_fn=cost.pointwise,
        summary="1×1 convolution",
        defaults=dict(in_channels=64, out_channels=64, bias=True, height=28, width=28),
    )
)
