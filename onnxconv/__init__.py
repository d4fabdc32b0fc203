"""onnxconv: convolution families of efficient CNNs, from PyTorch to ONNX Runtime, with proof."""

__version__ = "0.1.0"

from .api import (  # noqa: E402  (light: imports torch only when called)
    import_torchvision,
    validate_module,
)

__all__ = ["import_torchvision", "validate_module"]
