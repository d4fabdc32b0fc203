"""The convolution zoo. Importing this package registers every variant.

>>> from onnxconv import variants
>>> spec = variants.get("separable")
>>> module = spec.build({"in_channels": 32})
"""

# The import order is the listing order: single convolutions first, networks last.
# isort: off
from . import standard, flattened, inception, separable, grouped, shuffle, mobilenet  # noqa: F401

# isort: on
from ._registry import REGISTRY, VariantSpec, did_you_mean, get, unknown_config_keys
from .shuffle import channel_shuffle

__all__ = [
    "REGISTRY",
    "VariantSpec",
    "channel_shuffle",
    "did_you_mean",
    "get",
    "names",
    "unknown_config_keys",
]


def names() -> list[str]:
    return list(REGISTRY)
