"""Config rules shared by the variants; each raises ValueError naming the parameter and the rule."""

from __future__ import annotations


def positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def divisible(name: str, value: int, by_name: str, by: int) -> None:
    if value % by:
        raise ValueError(f"{name}={value} must be divisible by {by_name}={by}")


def odd_kernel(kernel_size: int) -> None:
    """'Same' padding (k // 2 on each side) keeps the size only for odd kernels."""
    positive(kernel_size=kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size} must be odd for 'same' padding (k // 2)")


def stride_1_or_2(stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"stride={stride} must be 1 or 2")


def shuffle_rank(rank: int) -> None:
    if rank not in (4, 5):
        raise ValueError(f"shuffle_rank={rank} must be 4 or 5")


def depthwise_channels(in_channels: int) -> None:
    """With one channel a depthwise convolution is an ordinary one (group 1): no such family."""
    positive(in_channels=in_channels)
    if in_channels < 2:
        raise ValueError(
            f"in_channels={in_channels} must be at least 2 for a depthwise convolution "
            "(with one channel it is an ordinary convolution, group 1)"
        )
