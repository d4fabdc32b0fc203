"""The registry of convolution variants: one ``VariantSpec`` per name.

A spec ties together the module builder, its default config (module arguments plus the example
input's ``height`` and ``width``), the paper it comes from and its closed-form cost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .. import errors
from ..cost import Cost
from ..errors import UserInputError
from ._checks import positive

#: Config keys that describe the example input rather than the module.
INPUT_KEYS = ("batch", "height", "width")
#: An exported graph is one protobuf file, which cannot exceed 2 GiB: fp32 parameters above this
#: are refused before anything is allocated.
MAX_PARAM_BYTES = 2**31
#: The example input (batch × channels × height × width, fp32) is refused above this.
MAX_INPUT_BYTES = 4 * 2**30
#: Inputs per batch that a whole network's BatchNorm statistics are measured on.
CALIBRATION_BATCH = 4


@dataclass(frozen=True)
class VariantSpec:
    name: str
    family: str
    paper: str
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any]
    cost_fn: Callable[..., Cost]
    #: The config key that sets the input's channels; None for networks that take RGB images.
    input_channels_key: str | None = "in_channels"
    summary: str = ""
    #: Which structure check of onnxconv.graph.checks its graph must pass (None: none), and
    #: config -> what that check expects (see onnxconv.graph.checks.check_structure).
    structure_kind: str | None = None
    structure: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: {}
    #: Whether scripts/export_graphs commits this variant's graph (whole networks are too big).
    commit_graph: bool = True
    #: Whole networks: BatchNorm running statistics measured on a generated batch, as training
    #: leaves them. With drawn ones a deep network's signal dies within a few layers and its
    #: output hardly depends on its input, so no parity check of it could fail.
    batchnorm_from_data: bool = False

    def config(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults merged with ``overrides``; unknown keys and wrong types raise UserInputError."""
        config = {"batch": 1, **self.defaults}
        for key, value in (overrides or {}).items():
            if key not in config:
                known = ", ".join(sorted(config))
                raise UserInputError(
                    f"unknown config key {key!r} for variant {self.name!r}"
                    f"{errors.did_you_mean(key, config)} (known: {known})"
                )
            config[key] = coerce(key, value, config[key], self.name)
        try:
            positive(**{key: config[key] for key in INPUT_KEYS})
        except ValueError as error:
            raise UserInputError(f"variant {self.name!r}: {error}") from None
        return config

    def module_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in INPUT_KEYS}

    def input_shape(self, config: dict[str, Any]) -> tuple[int, int, int, int]:
        channels = config[self.input_channels_key] if self.input_channels_key else 3
        return (config["batch"], channels, config["height"], config["width"])

    def cost(self, config: dict[str, Any]) -> Cost:
        """Cost of one example (batch 1); multiply by the batch for a batch."""
        return self.cost_fn(**{k: v for k, v in config.items() if k != "batch"})

    def build(self, config: dict[str, Any] | None = None, seed: int = 0) -> nn.Module:
        """The module in eval mode, with seeded weights and non-trivial BatchNorm statistics."""
        config = self.config(config)
        self.check_size(config)
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                module = self.builder(**self.module_config(config))
            except ValueError as error:
                raise UserInputError(f"variant {self.name!r}: {error}") from None
        randomize_batchnorm(module, generator)
        if self.batchnorm_from_data:
            shape = (CALIBRATION_BATCH, *self.input_shape(config)[1:])
            measure_batchnorm(module, torch.randn(shape, generator=generator))
        return module.eval()

    def check_size(self, config: dict[str, Any]) -> None:
        """Refuse configs whose parameters or example input could not be held (UserInputError
        naming the config), before torch tries to allocate them."""
        changed = ", ".join(
            f"{k}={v}" for k, v in config.items() if v != {"batch": 1, **self.defaults}.get(k)
        )
        shape = self.input_shape(config)
        elements = shape[0] * shape[1] * shape[2] * shape[3]
        if 4 * elements > MAX_INPUT_BYTES:
            raise UserInputError(
                f"variant {self.name!r}: the input {'x'.join(map(str, shape))} "
                f"({changed}) is {4 * elements / 2**30:.1f} GiB as float32, above the "
                f"{MAX_INPUT_BYTES / 2**30:g} GiB limit"
            )
        try:
            params = self.cost(config).params
        except (ArithmeticError, KeyError, ValueError):
            return  # a config the builder refuses with its own rule
        if 4 * params > MAX_PARAM_BYTES:
            raise UserInputError(
                f"variant {self.name!r}: {changed} gives {params:,} parameters, "
                f"{4 * params / 2**30:.1f} GiB as float32, above ONNX's 2 GiB single-file limit"
            )

    def example_input(self, config: dict[str, Any], seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(self.input_shape(config), generator=generator)


def coerce(key: str, value: Any, default: Any, variant: str) -> Any:
    """Convert a CLI string (or any value) to the type of the default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    elif isinstance(value, bool) or (
        isinstance(default, int) and isinstance(value, float) and not value.is_integer()
    ):
        pass  # True is not a channel count, 3.5 is not 3
    else:
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            pass
    raise UserInputError(
        f"config {key}={value!r} for variant {variant!r}: "
        f"expected {type(default).__name__} like {default!r}"
    )


def randomize_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics.

    Freshly built BatchNorm is the identity in eval mode, which would hide a wrong fold.
    """
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.weight.copy_(0.5 + torch.rand(c, generator=generator))
                bn.bias.copy_(0.2 * torch.randn(c, generator=generator))
                bn.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                bn.running_var.copy_(0.5 + torch.rand(c, generator=generator))


def measure_batchnorm(module: nn.Module, batch: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of its own input on ``batch``: one
    training-mode pass that keeps a cumulative average, as training leaves them. Each layer then
    passes on a signal of the scale its affine parameters give, whatever the depth."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    module.train()
    with torch.no_grad():
        module(batch)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
    module.eval()


REGISTRY: dict[str, VariantSpec] = {}


def register(spec: VariantSpec) -> VariantSpec:
    if spec.name in REGISTRY:
        warnings.warn(f"variant {spec.name!r} registered twice; the later one wins", stacklevel=2)
    REGISTRY[spec.name] = spec
    return spec


def did_you_mean(name: str) -> str:
    """`` (did you mean 'shuffle_unit'?)`` for a near miss of a variant name, else ``""``."""
    return errors.did_you_mean(name, REGISTRY)


def unknown_config_keys(unknown: Iterable[str], specs: Iterable[VariantSpec]) -> UserInputError:
    """The error for config overrides that none of ``specs`` has: the keys, a near miss, and
    the keys those variants do have."""
    specs = list(specs)
    known = sorted({k for spec in specs for k in spec.config()})
    said = sorted(unknown)
    hint = errors.near_misses(said, known)
    if not specs:
        return UserInputError(f"config key(s) {', '.join(said)} given, but no variant is named")
    return UserInputError(
        f"config key(s) {', '.join(said)} fit none of: {', '.join(s.name for s in specs)}{hint}; "
        f"their keys: {', '.join(known)}"
    )


def get(name: str) -> VariantSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        hint = did_you_mean(name) or f" (known: {', '.join(REGISTRY)})"
        raise UserInputError(f"unknown variant {name!r}{hint}") from None
