"""Closed-form parameter and multiply-add counts for the convolution zoo.

Conventions (the ones the papers use):
- ``macs`` counts multiply-adds of convolutions and fully connected layers only. ShuffleNet
  (arXiv 1707.01083) and MobileNet (arXiv 1704.04861) call these "FLOPs" / "Mult-Adds";
  BatchNorm, ReLU, pooling, additions and the channel shuffle cost no MACs here.
- ``params`` counts every learnable tensor of the module: convolution and linear weights and
  biases, and BatchNorm's affine weight and bias (2 per channel). Running statistics are buffers,
  not parameters.

Each function takes the variant's config as keyword arguments, so the cost of any configuration
is one call: ``cost.standard(**config)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)


ZERO = Cost(0, 0)


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution or pooling along one axis (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(
    c_in: int,
    c_out: int,
    kh: int,
    kw: int,
    h_out: int,
    w_out: int,
    groups: int = 1,
    bias: bool = False,
) -> Cost:
    """A (grouped) 2-D convolution: each output element sums (c_in / groups)·kh·kw products."""
    weights = c_out * (c_in // groups) * kh * kw
    return Cost(weights + (c_out if bias else 0), weights * h_out * w_out)


def batchnorm(channels: int) -> Cost:
    return Cost(2 * channels, 0)


def linear(c_in: int, c_out: int, bias: bool = True) -> Cost:
    return Cost(c_in * c_out + (c_out if bias else 0), c_in * c_out)


def standard(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    height: int,
    width: int,
    stride: int = 1,
    bias: bool = True,
    **_: object,
) -> Cost:
    """Standard k×k convolution: D_K·D_K·M·N·D_F·D_F (MobileNet, eq. 2)."""
    p = kernel_size // 2
    ho, wo = conv_out(height, kernel_size, stride, p), conv_out(width, kernel_size, stride, p)
    return conv2d(in_channels, out_channels, kernel_size, kernel_size, ho, wo, bias=bias)


def pointwise(
    in_channels: int, out_channels: int, height: int, width: int, bias: bool = True, **_: object
) -> Cost:
    """1×1 convolution (Network in Network; GoogLeNet's reductions): M·N·H·W."""
    return conv2d(in_channels, out_channels, 1, 1, height, width, bias=bias)


def depthwise(
    in_channels: int,
    kernel_size: int,
    height: int,
    width: int,
    stride: int = 1,
    multiplier: int = 1,
    bias: bool = True,
    **_: object,
) -> Cost:
    """Depthwise k×k convolution: D_K·D_K·M·D_F·D_F (MobileNet, eq. 3), times the multiplier."""
    p = kernel_size // 2
    ho, wo = conv_out(height, kernel_size, stride, p), conv_out(width, kernel_size, stride, p)
    return conv2d(
        in_channels,
        in_channels * multiplier,
        kernel_size,
        kernel_size,
        ho,
        wo,
        groups=in_channels,
        bias=bias,
    )


def separable(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    height: int,
    width: int,
    stride: int = 1,
    bias: bool = False,
    activation: bool = False,
    **_: object,
) -> Cost:
    """Depthwise k×k then pointwise 1×1 (MobileNet eq. 4): D_K²·M·D_F² + M·N·D_F².

    With ``activation`` a BatchNorm follows each convolution (MobileNet Fig. 3).
    """
    p = kernel_size // 2
    ho, wo = conv_out(height, kernel_size, stride, p), conv_out(width, kernel_size, stride, p)
    cost = conv2d(
        in_channels, in_channels, kernel_size, kernel_size, ho, wo, groups=in_channels, bias=bias
    )
    cost += conv2d(in_channels, out_channels, 1, 1, ho, wo, bias=bias)
    if activation:
        cost += batchnorm(in_channels) + batchnorm(out_channels)
    return cost


def grouped(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    groups: int,
    height: int,
    width: int,
    stride: int = 1,
    bias: bool = True,
    **_: object,
) -> Cost:
    """Grouped convolution (AlexNet, ResNeXt): a standard convolution's cost divided by g."""
    p = kernel_size // 2
    ho, wo = conv_out(height, kernel_size, stride, p), conv_out(width, kernel_size, stride, p)
    return conv2d(
        in_channels, out_channels, kernel_size, kernel_size, ho, wo, groups=groups, bias=bias
    )


def flattened(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    height: int,
    width: int,
    bias: bool = False,
    **_: object,
) -> Cost:
    """Flattened convolution (Jin et al., arXiv 1412.5474): C·F + k·F + k·F per pixel.

    Lateral 1×1 (C→F), then per-channel vertical k×1 and horizontal 1×k, each over F channels.
    Only the last stage may carry a bias.
    """
    f = out_channels
    return (
        conv2d(in_channels, f, 1, 1, height, width)
        + conv2d(f, f, kernel_size, 1, height, width, groups=f)
        + conv2d(f, f, 1, kernel_size, height, width, groups=f, bias=bias)
    )


def inception(
    in_channels: int,
    ch1x1: int,
    ch3x3red: int,
    ch3x3: int,
    ch5x5red: int,
    ch5x5: int,
    pool_proj: int,
    height: int,
    width: int,
    factorized: bool = False,
    **_: object,
) -> Cost:
    """GoogLeNet inception module (arXiv 1409.4842, Table 1): four branches, all with biases.

    ``factorized`` replaces the 5×5 by two 3×3 convolutions (arXiv 1512.00567, Fig. 5).
    """
    hw = dict(h_out=height, w_out=width, bias=True)
    cost = conv2d(in_channels, ch1x1, 1, 1, **hw)
    cost += conv2d(in_channels, ch3x3red, 1, 1, **hw) + conv2d(ch3x3red, ch3x3, 3, 3, **hw)
    cost += conv2d(in_channels, ch5x5red, 1, 1, **hw)
    if factorized:
        cost += conv2d(ch5x5red, ch5x5, 3, 3, **hw) + conv2d(ch5x5, ch5x5, 3, 3, **hw)
    else:
        cost += conv2d(ch5x5red, ch5x5, 5, 5, **hw)
    return cost + conv2d(in_channels, pool_proj, 1, 1, **hw)


def channel_shuffle(**_: object) -> Cost:
    """A channel shuffle is a permutation: no parameters, no multiply-adds."""
    return ZERO


def shuffle_unit(
    in_channels: int,
    out_channels: int,
    groups: int,
    height: int,
    width: int,
    stride: int = 1,
    first_grouped: bool = True,
    **_: object,
) -> Cost:
    """ShuffleNet v1 unit (arXiv 1707.01083, Fig. 2b/2c), BatchNorm after every convolution.

    Stride 1 (c = in = out, m = out/4): h·w·(2·c·m/g + 9·m) multiply-adds (paper, Sec. 3.2).
    Stride 2: the branch produces out - in channels at half resolution; the shortcut is a 3×3
    average pool, concatenated.
    """
    mid = out_channels // 4
    branch_out = out_channels - in_channels if stride == 2 else out_channels
    g1 = groups if first_grouped else 1
    ho, wo = conv_out(height, 3, stride, 1), conv_out(width, 3, stride, 1)
    return (
        conv2d(in_channels, mid, 1, 1, height, width, groups=g1)
        + batchnorm(mid)
        + conv2d(mid, mid, 3, 3, ho, wo, groups=mid)
        + batchnorm(mid)
        + conv2d(mid, branch_out, 1, 1, ho, wo, groups=groups)
        + batchnorm(branch_out)
    )


def shuffle_unit_s2(**config: object) -> Cost:
    return shuffle_unit(**{**config, "stride": 2})


SHUFFLENET_STAGE_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
SHUFFLENET_STAGE_REPEATS = (4, 8, 4)


def shufflenet(
    groups: int,
    height: int,
    width: int,
    num_classes: int = 1000,
    stem_channels: int = 24,
    **_: object,
) -> Cost:
    """ShuffleNet v1 1× (arXiv 1707.01083, Table 1): stem, three stages, pool, FC."""
    h, w = conv_out(height, 3, 2, 1), conv_out(width, 3, 2, 1)
    cost = conv2d(3, stem_channels, 3, 3, h, w) + batchnorm(stem_channels)
    h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
    c = stem_channels
    for stage, (out, repeats) in enumerate(
        zip(SHUFFLENET_STAGE_CHANNELS[groups], SHUFFLENET_STAGE_REPEATS)
    ):
        cost += shuffle_unit(c, out, groups, h, w, stride=2, first_grouped=stage > 0)
        h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
        for _ in range(repeats - 1):
            cost += shuffle_unit(out, out, groups, h, w)
        c = out
    return cost + linear(c, num_classes)


def shufflenet_v2_unit(channels: int, height: int, width: int, **_: object) -> Cost:
    """ShuffleNet v2 basic unit (arXiv 1807.11164, Fig. 3c): on half the channels,
    1×1 conv → 3×3 depthwise → 1×1 conv, each followed by BatchNorm."""
    half = channels // 2
    return (
        conv2d(half, half, 1, 1, height, width)
        + batchnorm(half)
        + conv2d(half, half, 3, 3, height, width, groups=half)
        + batchnorm(half)
        + conv2d(half, half, 1, 1, height, width)
        + batchnorm(half)
    )


MOBILENET_V1_LAYERS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def mobilenet_v1(
    height: int, width: int, num_classes: int = 1000, width_multiplier: float = 1.0, **_: object
) -> Cost:
    """MobileNet v1 (arXiv 1704.04861, Table 1): 3×3 stem then 13 depthwise separable layers."""

    def ch(c: int) -> int:
        return int(c * width_multiplier)

    h, w = conv_out(height, 3, 2, 1), conv_out(width, 3, 2, 1)
    c = ch(32)
    cost = conv2d(3, c, 3, 3, h, w) + batchnorm(c)
    for out, stride in MOBILENET_V1_LAYERS:
        cost += separable(c, ch(out), 3, h, w, stride=stride, activation=True)
        h, w = conv_out(h, 3, stride, 1), conv_out(w, 3, stride, 1)
        c = ch(out)
    return cost + linear(c, num_classes)
