"""onnxconv: convolution families of efficient CNNs, from PyTorch to ONNX Runtime, with proof."""

__version__ = "0.1.0"
