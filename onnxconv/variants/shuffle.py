"""ShuffleNet's channel shuffle, its units and the whole ShuffleNet v1 network."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import cost
from . import _checks
from ._registry import VariantSpec, register


def channel_shuffle(x: torch.Tensor, groups: int, rank: int = 5) -> torch.Tensor:
    """Zhang et al., ShuffleNet (arXiv 1707.01083), Sec. 3.1: reshape the channels into
    (g, C/g), transpose, flatten back. Channel i·(C/g) + j goes to j·g + i.

    Exports as Reshape → Transpose → Reshape. ``rank=5`` reshapes to (N, g, C/g, H, W) and
    swaps axes 1 and 2; ``rank=4`` reshapes to (N, g, C/g, H·W) with perm (0, 2, 1, 3), for
    deployment targets that reject rank-5 tensors. Both give the same result.

    With one group, or one channel per group, the shuffle is the identity and emits nothing
    (the dynamo exporter would drop its no-op Reshapes anyway and leave a lone Transpose).
    """
    n, c, h, w = x.shape
    if is_identity_shuffle(c, groups):
        return x
    if rank == 5:
        x = x.reshape(n, groups, c // groups, h, w).transpose(1, 2)
    elif rank == 4:
        x = x.reshape(n, groups, c // groups, h * w).transpose(1, 2)
    else:
        raise ValueError(f"shuffle_rank={rank} must be 4 or 5")
    return x.reshape(n, c, h, w)


def is_identity_shuffle(channels: int, groups: int) -> bool:
    """Channel i·(C/g) + j goes to j·g + i: with g = 1 or g = C every channel stays put."""
    return groups == 1 or groups == channels


class ChannelShuffle(nn.Module):
    """The channel shuffle alone (ShuffleNet, arXiv 1707.01083, Fig. 1c)."""

    def __init__(self, channels: int, groups: int = 8, shuffle_rank: int = 5) -> None:
        super().__init__()
        _checks.positive(channels=channels, groups=groups)
        _checks.divisible("channels", channels, "groups", groups)
        _checks.shuffle_rank(shuffle_rank)
        if is_identity_shuffle(channels, groups):
            raise ValueError(
                f"groups={groups} with channels={channels} makes the channel shuffle the "
                "identity: groups must be above 1 and below channels"
            )
        self.groups, self.rank = groups, shuffle_rank

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups, self.rank)


def conv_bn(
    c_in: int, c_out: int, kernel_size: int, stride: int = 1, groups: int = 1, relu: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit (arXiv 1707.01083, Fig. 2b stride 1, Fig. 2c stride 2).

    1×1 GConv → BN → ReLU → channel shuffle → 3×3 DWConv (stride s) → BN → 1×1 GConv → BN;
    stride 1 adds the input and applies ReLU; stride 2 concatenates a 3×3 average-pooled
    shortcut (so the branch makes out - in channels) and applies ReLU. The bottleneck has
    out/4 channels. ``first_grouped=False`` is the paper's first unit of stage 2, whose input
    has too few channels to group.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 3,
        stride: int = 1,
        first_grouped: bool = True,
        shuffle_rank: int = 5,
    ) -> None:
        super().__init__()
        _checks.positive(in_channels=in_channels, out_channels=out_channels, groups=groups)
        _checks.stride_1_or_2(stride)
        _checks.shuffle_rank(shuffle_rank)
        if out_channels < 4:
            raise ValueError(
                f"out_channels={out_channels} must be at least 4 "
                "(the bottleneck has out_channels // 4 channels)"
            )
        if stride == 1 and in_channels != out_channels:
            raise ValueError(
                f"stride=1 needs in_channels == out_channels for the residual Add "
                f"(got {in_channels} and {out_channels})"
            )
        if stride == 2 and out_channels <= in_channels:
            raise ValueError(
                f"stride=2 needs out_channels > in_channels for the Concat "
                f"(got {out_channels} and {in_channels})"
            )
        mid = out_channels // 4
        branch_out = out_channels - in_channels if stride == 2 else out_channels
        g1 = groups if first_grouped else 1
        _checks.divisible("in_channels", in_channels, "groups", g1)
        _checks.divisible("out_channels/4", mid, "groups", groups)
        _checks.divisible("branch output channels", branch_out, "groups", groups)
        self.stride, self.groups, self.shuffle_rank = stride, groups, shuffle_rank
        self.gconv1 = conv_bn(in_channels, mid, 1, groups=g1, relu=True)
        self.dwconv = conv_bn(mid, mid, 3, stride=stride, groups=mid)
        self.gconv2 = conv_bn(mid, branch_out, 1, groups=groups)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = channel_shuffle(self.gconv1(x), self.groups, self.shuffle_rank)
        y = self.gconv2(self.dwconv(y))
        if self.stride == 2:
            return self.relu(torch.cat([self.shortcut(x), y], 1))
        return self.relu(x + y)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 1× (arXiv 1707.01083, Table 1): 3×3 stem (stride 2), 3×3 max-pool, stages
    of 4/8/4 units (the first of each with stride 2), global average pool, FC. g=3 gives
    240/480/960 channels and 137 M multiply-adds at 224×224."""

    def __init__(
        self,
        groups: int = 3,
        num_classes: int = 1000,
        stem_channels: int = 24,
        shuffle_rank: int = 5,
    ) -> None:
        super().__init__()
        if groups not in cost.SHUFFLENET_STAGE_CHANNELS:
            known = sorted(cost.SHUFFLENET_STAGE_CHANNELS)
            raise ValueError(f"groups={groups} must be one of the paper's {known}")
        _checks.positive(num_classes=num_classes, stem_channels=stem_channels)
        _checks.shuffle_rank(shuffle_rank)
        first = cost.SHUFFLENET_STAGE_CHANNELS[groups][0]
        if stem_channels >= first or (first - stem_channels) % groups:
            raise ValueError(
                f"stem_channels={stem_channels} must be below {first} (stage 2's channels at "
                f"groups={groups}) with {first} - stem_channels divisible by groups: the first "
                "unit's branch makes the difference"
            )
        self.stem = nn.Sequential(
            conv_bn(3, stem_channels, 3, stride=2, relu=True), nn.MaxPool2d(3, 2, 1)
        )
        units: list[nn.Module] = []
        c = stem_channels
        for stage, (out, repeats) in enumerate(
            zip(cost.SHUFFLENET_STAGE_CHANNELS[groups], cost.SHUFFLENET_STAGE_REPEATS)
        ):
            units.append(ShuffleUnit(c, out, groups, 2, stage > 0, shuffle_rank))
            units += [
                ShuffleUnit(out, out, groups, 1, True, shuffle_rank) for _ in range(repeats - 1)
            ]
            c = out
        self.stages = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class ShuffleNetV2Unit(nn.Module):
    """ShuffleNet v2 basic unit (Ma et al., arXiv 1807.11164, Fig. 3c): channel split in two
    halves; one passes through 1×1 → BN → ReLU → 3×3 DWConv → BN → 1×1 → BN → ReLU; concat;
    channel shuffle with 2 groups."""

    def __init__(self, channels: int = 232, shuffle_rank: int = 5) -> None:
        super().__init__()
        _checks.positive(channels=channels)
        _checks.divisible("channels", channels, "2 (the channel split)", 2)
        _checks.shuffle_rank(shuffle_rank)
        half = channels // 2
        self.shuffle_rank = shuffle_rank
        self.branch = nn.Sequential(
            conv_bn(half, half, 1, relu=True),
            conv_bn(half, half, 3, groups=half),
            conv_bn(half, half, 1, relu=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([x1, self.branch(x2)], 1), 2, self.shuffle_rank)


SHUFFLENET_PAPER = "ShuffleNet, Zhang et al. (1707.01083)"


def unit_structure(config: dict) -> dict:
    identity = is_identity_shuffle(config["out_channels"] // 4, config["groups"])
    return dict(
        groups=config["groups"], shuffle_rank=config["shuffle_rank"], shuffles=0 if identity else 1
    )


register(
    VariantSpec(
        name="channel_shuffle",
        family="channel_shuffle",
        structure_kind="channel_shuffle",
        paper=SHUFFLENET_PAPER + " Sec. 3.1",
        builder=ChannelShuffle,
        cost_fn=cost.channel_shuffle,
        input_channels_key="channels",
        structure=lambda c: dict(groups=c["groups"], shuffle_rank=c["shuffle_rank"], shuffles=1),
        summary="Reshape → Transpose → Reshape",
        defaults=dict(channels=64, groups=8, shuffle_rank=5, height=28, width=28),
    )
)

register(
    VariantSpec(
        name="shuffle_unit",
        family="shuffle_unit",
        structure_kind="channel_shuffle",
        paper=SHUFFLENET_PAPER + " Fig. 2b",
        builder=ShuffleUnit,
        cost_fn=cost.shuffle_unit,
        structure=unit_structure,
        summary="GConv → shuffle → DWConv → GConv, Add",
        defaults=dict(
            in_channels=960,
            out_channels=960,
            groups=3,
            stride=1,
            first_grouped=True,
            shuffle_rank=5,
            height=7,
            width=7,
        ),
    )
)

register(
    VariantSpec(
        name="shuffle_unit_s2",
        family="shuffle_unit_s2",
        structure_kind="channel_shuffle",
        paper=SHUFFLENET_PAPER + " Fig. 2c",
        builder=ShuffleUnit,
        cost_fn=cost.shuffle_unit,
        structure=unit_structure,
        summary="stride 2: avg-pool shortcut, Concat",
        defaults=dict(
            in_channels=480,
            out_channels=960,
            groups=3,
            stride=2,
            first_grouped=True,
            shuffle_rank=5,
            height=14,
            width=14,
        ),
    )
)

register(
    VariantSpec(
        name="shufflenet",
        family="shufflenet",
        structure_kind="channel_shuffle",
        paper=SHUFFLENET_PAPER + " Table 1",
        builder=ShuffleNetV1,
        cost_fn=cost.shufflenet,
        input_channels_key=None,
        structure=lambda c: dict(
            groups=c["groups"],
            shuffle_rank=c["shuffle_rank"],
            shuffles=0 if c["groups"] == 1 else sum(cost.SHUFFLENET_STAGE_REPEATS),
        ),
        summary="ShuffleNet v1 1×, 16 units",
        commit_graph=False,
        batchnorm_from_data=True,
        defaults=dict(
            groups=3, num_classes=1000, stem_channels=24, shuffle_rank=5, height=224, width=224
        ),
    )
)

register(
    VariantSpec(
        name="shufflenet_v2_unit",
        family="shufflenet_v2_unit",
        structure_kind="channel_shuffle",
        paper="ShuffleNet V2, Ma et al. (1807.11164) Fig. 3c",
        builder=ShuffleNetV2Unit,
        cost_fn=cost.shufflenet_v2_unit,
        input_channels_key="channels",
        structure=lambda c: dict(
            groups=2, shuffle_rank=c["shuffle_rank"], shuffles=0 if c["channels"] == 2 else 1
        ),
        summary="channel split → branch → Concat → shuffle",
        defaults=dict(channels=232, shuffle_rank=5, height=14, width=14),
    )
)
