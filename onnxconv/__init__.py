"""onnxconv: convolution families of efficient CNNs, from PyTorch to ONNX Runtime, with proof."""

__version__ = "0.1.0"

from .api import validate_module  # noqa: E402  (light: imports torch only when called)

__all__ = ["validate_module"]
