"""The registry of convolution variants: one ``VariantSpec`` per name.

A spec ties together the module builder, its default config (module arguments plus the example
input's ``height`` and ``width``), the paper it comes from and its closed-form cost.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..cost import Cost
from ..errors import UserInputError
from ._checks import positive

#: Config keys that describe the example input rather than the module.
INPUT_KEYS = ("batch", "height", "width")


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

    def config(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults merged with ``overrides``; unknown keys and wrong types raise UserInputError."""
        config = {"batch": 1, **self.defaults}
        for key, value in (overrides or {}).items():
            if key not in config:
                known = ", ".join(sorted(config))
                raise UserInputError(
                    f"unknown config key {key!r} for variant {self.name!r} (known: {known})"
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
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                module = self.builder(**self.module_config(config))
            except ValueError as error:
                raise UserInputError(f"variant {self.name!r}: {error}") from None
        randomize_batchnorm(module, generator)
        return module.eval()

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


REGISTRY: dict[str, VariantSpec] = {}


def register(spec: VariantSpec) -> VariantSpec:
    if spec.name in REGISTRY:
        warnings.warn(f"variant {spec.name!r} registered twice; the later one wins", stacklevel=2)
    REGISTRY[spec.name] = spec
    return spec


def did_you_mean(name: str) -> str:
    """`` (did you mean 'shuffle_unit'?)`` for a near miss of a variant name, else ``""``."""
    close = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get(name: str) -> VariantSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        hint = did_you_mean(name) or f" (known: {', '.join(REGISTRY)})"
        raise UserInputError(f"unknown variant {name!r}{hint}") from None
