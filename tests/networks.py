"""Outside real networks for the tests: public architectures nobody on this project designed.

Faithful re-implementations of two torchvision classification models, written from their public
definitions (torchvision ``models/shufflenetv2.py`` and ``models/mobilenetv2.py``), so module
names, layer order and parameter counts mirror torchvision's:

* ShuffleNet V2 x0.5 — Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design", arXiv 1807.11164 (1,366,792 parameters).
* MobileNetV2 — Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
  arXiv 1801.04381 (3,504,872 parameters at width 1.0).

Weights are random and seeded (nothing is downloaded); every BatchNorm gets non-trivial affine
parameters and running statistics, so folding BN or not changes the graph but not the output.
``export_network`` and ``export_opset9_shufflenet`` write the ONNX test-data layout
(``model.onnx`` + ``test_data_set_0/{input_0,output_0}.pb``, no manifest).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from onnxconv import export
from onnxconv.export import ExportOptions

#: Opset of the old-model-zoo-style graph, and the lowest the TorchScript exporter accepts.
OLD_OPSET = 9
#: Batch and height/width of the seeded batch that sets the BatchNorm running statistics.
CALIBRATION_BATCH, CALIBRATION_SIZE = 4, 112
#: nn.BatchNorm2d's default, which torchvision keeps (the opset-9 node records 1 - momentum).
BN_MOMENTUM = 0.1


# --- ShuffleNet V2 (torchvision models/shufflenetv2.py) ---------------------------------------


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's shuffle: view (N, g, C/g, H, W) → transpose(1, 2) → contiguous → view."""
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, height, width)


def depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class ShuffleV2Block(nn.Module):
    """torchvision's ``shufflenetv2.InvertedResidual`` (arXiv 1807.11164, Fig. 3c and 3d).

    Stride 1 splits the channels in half and transforms one half (branch2); stride 2 feeds the
    whole input to both branches (branch1 downsamples the shortcut). Concat, then shuffle(2).
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2")
        branch = oup // 2
        if stride == 1 and inp != 2 * branch:
            raise ValueError(f"stride=1 needs inp == oup (got {inp} and {oup})")
        self.stride = stride
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(
                depthwise_conv(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch, 1, 1, 0, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else branch, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            depthwise_conv(branch, stride),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """torchvision's ``ShuffleNetV2``: conv1 3×3 s2 → maxpool → stages 2-4 → conv5 1×1 → mean
    over H, W → fc."""

    def __init__(
        self, stages_repeats: list[int], stages_out_channels: list[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = zip((2, 3, 4), stages_repeats, stages_out_channels[1:-1])
        for index, repeats, out in stages:
            blocks = [ShuffleV2Block(channels, out, 2)]
            blocks += [ShuffleV2Block(out, out, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{index}", nn.Sequential(*blocks))
            channels = out
        last = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(channels, last, 1, 1, 0, bias=False),
            nn.BatchNorm2d(last),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x).mean([2, 3])
        return self.fc(x)


def build_shufflenet_v2_x0_5() -> nn.Module:
    return ShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024])


# --- MobileNetV2 (torchvision models/mobilenetv2.py) ------------------------------------------


def make_divisible(value: float, divisor: int) -> int:
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor``, never 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(
    inp: int, oup: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with BatchNorm2d and ReLU6."""
    conv = nn.Conv2d(
        inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
    )
    return nn.Sequential(conv, nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class MobileV2Block(nn.Module):
    """torchvision's ``mobilenetv2.InvertedResidual`` (arXiv 1801.04381, Table 1): 1×1 expand
    (skipped when t = 1) → 3×3 depthwise → 1×1 linear projection; residual when shapes match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


#: (t, c, n, s): expansion, output channels, repeats, first stride (arXiv 1801.04381, Table 2).
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """torchvision's ``MobileNetV2`` with its weight initialisation."""

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        round_nearest: int = 8,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [conv_bn_relu6(3, channels, stride=2)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            out = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(MobileV2Block(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(conv_bn_relu6(channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# --- seeded instances -------------------------------------------------------------------------


def seeded(builder: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build with ``torch.manual_seed(seed)`` (the global RNG is restored after), give every
    BatchNorm non-trivial statistics and affine parameters, return in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = builder()
        batchnorms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        with torch.no_grad():
            for bn in batchnorms:
                bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=generator))
                bn.bias.copy_(0.2 * torch.randn(bn.num_features, generator=generator))
        calibrate(module, batchnorms, generator)
    return module.eval()


def calibrate(
    module: nn.Module, batchnorms: list[nn.BatchNorm2d], generator: torch.Generator
) -> None:
    """Running statistics from one seeded batch, as training leaves them.

    Random running statistics (say mean 0 ± 0.2, variance in [0.5, 1.5]) do not match the
    activations of a deep random network: they shrink layer after layer, the BN shifts take
    over and the output no longer depends on the input. Measured statistics keep the signal
    alive and are still far from the identity (mean 0, variance 1), so a wrong BN fold shows.
    """
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly its statistics
    module.train()
    with torch.no_grad():
        module(
            torch.randn(
                (CALIBRATION_BATCH, 3, CALIBRATION_SIZE, CALIBRATION_SIZE), generator=generator
            )
        )
    for bn in batchnorms:
        bn.momentum = BN_MOMENTUM


def shufflenet_v2_x0_5(seed: int = 0) -> nn.Module:
    return seeded(build_shufflenet_v2_x0_5, seed)


def mobilenet_v2(width_mult: float = 1.0, seed: int = 0) -> nn.Module:
    return seeded(lambda: MobileNetV2(width_mult), seed)


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "shufflenet_v2_x0_5": shufflenet_v2_x0_5,
    "mobilenet_v2": mobilenet_v2,
}


# --- export into the ONNX test-data layout ----------------------------------------------------


def example_input(size: int, seed: int) -> torch.Tensor:
    return torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))


def write_test_data(
    folder: Path, model: onnx.ModelProto, example: torch.Tensor, expected: np.ndarray
) -> Path:
    """``folder/model.onnx`` and ``folder/test_data_set_0/{input_0,output_0}.pb``."""
    data = folder / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    (data / "input_0.pb").write_bytes(export.tensor_pb(example.numpy(), model.graph.input[0].name))
    (data / "output_0.pb").write_bytes(export.tensor_pb(expected, model.graph.output[0].name))
    return folder / "model.onnx"


def export_network(
    name: str,
    folder: Path,
    *,
    exporter: str = "dynamo",
    opset: int = 18,
    dynamic_batch: bool = False,
    dynamic_hw: bool = False,
    size: int = 224,
    seed: int = 0,
) -> Path:
    """Export network ``name`` (see ``NETWORKS``) with ``onnxconv.export.to_onnx``; returns the
    path of ``model.onnx``. Input ``input`` [1, 3, size, size], output ``output`` [1, 1000]."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r} (known: {', '.join(NETWORKS)})")
    options = ExportOptions(
        opset=opset,
        exporter=exporter,
        dynamic_batch=dynamic_batch,
        dynamic_hw=dynamic_hw,
        seed=seed,
    )
    options.validate()
    module = NETWORKS[name](seed=seed)
    example = example_input(size, seed)
    with torch.no_grad():
        expected = module(example).numpy()
    model = export.to_onnx(module, example, export.dynamic_axes(options), options)
    return write_test_data(folder, model, example, expected)


def export_opset9(module: nn.Module, folder: Path, example: torch.Tensor) -> Path:
    """``module`` as an opset-9 graph with one BatchNormalization node per BatchNorm2d (like the
    old model-zoo graphs), in the test-data layout; returns the path of model.onnx.

    The TorchScript exporter writes opset 9 itself; ``TrainingMode.PRESERVE`` on the eval-mode
    module skips its Conv+BN fold (done only for ``TrainingMode.EVAL``) while each BatchNorm
    still exports in inference form, and constant folding is off.
    """
    with torch.no_grad():
        expected = module(example).numpy()
    with tempfile.TemporaryDirectory(prefix="onnxconv-opset9-") as tmp:
        path = Path(tmp) / "model.onnx"
        with export.quiet(verbose=False), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OLD_OPSET,
                input_names=["input"],
                output_names=["output"],
                do_constant_folding=False,
                training=torch.onnx.TrainingMode.PRESERVE,
            )
        model = onnx.load(path)
    return write_test_data(folder, model, example, expected)


def export_opset9_shufflenet(folder: Path, *, size: int = 224, seed: int = 0) -> Path:
    """ShuffleNet V2 x0.5 as an opset-9 graph (see :func:`export_opset9`)."""
    return export_opset9(shufflenet_v2_x0_5(seed), folder, example_input(size, seed))
