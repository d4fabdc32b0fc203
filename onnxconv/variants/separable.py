"""Depthwise and depthwise separable convolutions."""

from __future__ import annotations

from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register


class DepthwiseConv(nn.Module):
    """A k×k convolution applied to each channel alone: groups == channels, optionally with a
    channel multiplier (each input channel yields ``multiplier`` outputs). Sifre 2014; MobileNet
    (Howard et al., arXiv 1704.04861) eq. 3: D_K²·M·D_F² multiply-adds."""

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        multiplier: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, multiplier=multiplier)
        _checks.depthwise_channels(in_channels)
        _checks.odd_kernel(kernel_size)
        _checks.stride_1_or_2(stride)
        self.conv = nn.Conv2d(
            in_channels,
            in_channels * multiplier,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=bias,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SeparableConv(nn.Module):
    """Depthwise k×k then pointwise 1×1 (Xception, arXiv 1610.02357; MobileNet Fig. 3).

    Xception puts no non-linearity between the two (its Fig. 10 shows that is better), which is
    the default here; ``activation`` gives MobileNet's BN → ReLU after each convolution.
    Cost relative to a standard convolution: 1/N + 1/D_K² (MobileNet, Sec. 3.1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        bias: bool = False,
        activation: bool = False,
    ) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, out_channels=out_channels)
        _checks.depthwise_channels(in_channels)
        _checks.odd_kernel(kernel_size)
        _checks.stride_1_or_2(stride)
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride,  # dw
            padding=kernel_size // 2,
            groups=in_channels,
            bias=bias,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)  # pw
        if activation:
            self.act1 = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU())
            self.act2 = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU())
        else:
            self.act1 = self.act2 = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(self.pointwise(self.act1(self.depthwise(x))))


register(
    VariantSpec(
        name="depthwise",
        family="depthwise",
        structure_kind="depthwise",
        paper="MobileNet eq. 3 (1704.04861)",
        builder=DepthwiseConv,
        cost_fn=cost.depthwise,
        summary="k×k per-channel convolution",
        defaults=dict(
            in_channels=64, kernel_size=3, stride=1, multiplier=1, bias=True, height=28, width=28
        ),
    )
)

register(
    VariantSpec(
        name="separable",
        family="separable",
        structure_kind="separable",
        paper="Xception (1610.02357); MobileNet (1704.04861)",
        builder=SeparableConv,
        cost_fn=cost.separable,
        # MobileNet's BN → ReLU sits between the two; the TorchScript exporter folds the BN
        structure=lambda c: dict(between=("BatchNormalization", "Relu") if c["activation"] else ()),
        summary="depthwise k×k → pointwise 1×1",
        defaults=dict(
            in_channels=64,
            out_channels=64,
            kernel_size=3,
            stride=1,
            bias=False,
            activation=False,
            height=28,
            width=28,
        ),
    )
)
