"""Modules a user might point ``--module`` at, written the way users write them (test fixtures
for tests/test_user_model.py; imported by path, as onnxconv imports a user's code)."""

from __future__ import annotations

import torch
from torch import nn


class TwoInputs(nn.Module):
    """Two inputs, two outputs: a depthwise-separable branch on ``x`` plus a 1x1 projection of
    ``y``, and the pooled sum."""

    def __init__(self, channels: int = 8, scale: float = 1.0) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pw = nn.Conv2d(channels, 16, 1)
        self.project = nn.Conv2d(4, 16, 1)
        self.scale = scale

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.pw(torch.relu(self.dw(x))) + self.project(y) * self.scale
        return z, z.mean(dim=(2, 3))


def shuffled(groups: int = 2) -> nn.Module:
    """A factory function: grouped 1x1 conv, channel shuffle, grouped 1x1 conv."""

    class Shuffled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(8, 8, 1, groups=groups)
            self.b = nn.Conv2d(8, 8, 1, groups=groups)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            x = self.a(x).reshape(n, groups, c // groups, h, w).transpose(1, 2)
            return self.b(x.reshape(n, c, h, w))

    return Shuffled()


def not_a_module() -> dict:
    return {"conv": nn.Conv2d(3, 3, 1)}


def fails(**kwargs) -> nn.Module:
    raise ValueError(f"cannot build with {kwargs}\nchannels must be even")


class Unexportable(nn.Module):
    """Eigenvalues: no ONNX operator, neither exporter converts it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigvals(x[0, 0]).real


def torchvision_scaled(name: str, **kwargs) -> nn.Module:
    """A torchvision network with random weights at the scale of a trained one.

    torchvision's default init shrinks activations layer by layer (Kaiming-uniform with a=√5,
    BatchNorm as identity), so after fifty layers the output barely depends on the input: a
    swapped channel shuffle moves ShuffleNet V2's logits by 1e-5 of their size. Here every Conv
    and Linear is drawn variance-preserving (Kaiming-normal, fan-in) and every BatchNorm gets
    non-trivial statistics, so each layer matters as it does in a trained network."""
    from onnxconv.user_model import import_factory

    factory, _ = import_factory(f"torchvision.models:{name}")
    module = factory(**kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.weight.mul_((2.0 / fan_in) ** 0.5)
            elif isinstance(layer, nn.BatchNorm2d):
                size = layer.num_features
                layer.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                layer.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                layer.weight.copy_(0.5 + torch.rand(size, generator=generator))
                layer.bias.copy_(0.1 * torch.randn(size, generator=generator))
    return module


class Embedded(nn.Module):
    """An image and token ids: a 1x1 conv's pooled features plus the ids' embeddings. The table
    has 10 rows, as many as export's seeded ids take, so an id drawn from anywhere else fails."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.table = nn.Embedding(10, 8)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.conv(image).mean(dim=(2, 3)) + self.table(ids).mean(dim=1)


class Masked(nn.Module):
    """An image and a boolean mask of its height and width: the masked mean of a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.conv(image) * mask.float()).mean(dim=(2, 3))


class ConvBN(nn.Module):
    """A Conv and a BatchNorm with running statistics: exporters fold the BatchNorm into the
    Conv's weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ConvBNPooled(ConvBN):
    """ConvBN averaged over height and width: the same input, an output of another shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).mean(dim=(2, 3), keepdim=True)
