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
