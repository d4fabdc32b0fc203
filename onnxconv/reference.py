"""onnx's ``ReferenceEvaluator`` (the ONNX spec run in numpy) with fixes for its known faults.

onnxconv asks the reference evaluator for an opinion independent of ONNX Runtime. onnx's
evaluator gets some operators wrong; :func:`evaluator` replaces each of them, for the opsets and
attributes where it is wrong, by the spec's formula in numpy, and leaves onnx's own
implementation everywhere else (the overrides are in :mod:`onnxconv.reference_ops`).
:data:`FIXED` says what each override fixes; :data:`KNOWN_FAULTS` lists faults found but not
fixed (none at present).

What was checked (onnx 1.23.2), each op on small hand-built graphs against torch.nn.functional
on CPU or numpy by hand; ``tests/test_reference.py`` keeps these checks:

==================  ===============  ========================================================
op                  opsets           verdict
==================  ===============  ========================================================
BatchNormalization  6, 7, 9          wrong: batch statistics (9), a crash (6 without is_test,
                                     7): fixed
BatchNormalization  14, 15           right (``training_mode`` 0 or absent); onnx's kept
Conv                1, 11, 22        right: auto_pad SAME_UPPER/SAME_LOWER/VALID, strides 1/2,
                                     dilation 2, group 1/4 (depthwise), asymmetric pads
MaxPool             8, 10, 12, 22    wrong at stride 1: ceil_mode with pads (output too
                                     large), asymmetric pads (read as top, bottom, left,
                                     right), Indices, 1-D pads (crash); at stride > 1:
                                     SAME_LOWER (output too small): fixed
AveragePool         7, 10, 11,       wrong: ceil_mode when windows overhang by >= 2 (stride
                    19, 22           >= 3; windows shifted), SAME with dilations: fixed; right
                                     otherwise (ceil_mode, count_include_pad, pads)
GlobalAveragePool   1, 22            right
Gemm                6                wrong: ``broadcast=0`` drops ``beta``: fixed
Gemm                7, 9, 11, 13     right: transA/transB, alpha, beta, C full/broadcast/absent
MatMul              1, 9, 13         right: 2-D, batched broadcast, vector
Flatten             1, 9, 11, 13,    right: axis 0..rank, negative axis
                    21
Resize              10               wrong: fails on every node (reads scales as roi): fixed
Resize              11               wrong: fails on ``tf_half_pixel_for_nn``: fixed
Resize              11, 13, 18       right: nearest (each nearest_mode) and linear with
                                     half_pixel, pytorch_half_pixel, align_corners, asymmetric;
                                     scales or sizes, up and down
Upsample            7, 9             wrong: fails on the scales attribute (7), on linear and
                                     on non-integer scales (9): fixed
Clip                6; 11, 12, 13    right: min/max attributes; inputs, either absent
Relu, Sigmoid       6, 13, 14        right
HardSigmoid         6                right (default alpha 0.2, and torch's 1/6)
HardSwish           14, 22           right
Softmax,            1, 11            wrong: one axis (default -1) instead of the 2-D coercion
LogSoftmax                           at ``axis`` (default 1); right only on 2-D inputs: fixed
Softmax,            13, 21           right
LogSoftmax
Concat              4, 11, 13        right, negative axis included
Split               2, 11, 13, 18    right: split attribute / input / num_outputs (uneven)
Transpose           1, 13, 21        right, default perm included
Reshape             5, 13, 14, 21    right: 0 (copy), -1 (infer), allowzero
Pad                 2, 11, 13, 18,   right: constant/reflect/edge/wrap, axes; wrong: negative
                    19, 21           pads (crop) fail: fixed
ReduceMean          1, 11, 13, 18    right: axes attribute / input, keepdims,
                                     noop_with_empty_axes
==================  ===============  ========================================================

Conventions where the spec is silent: BatchNormalization before opset 14 computes Y only (a node
asking for the training outputs raises: no opinion); Resize-10 and Upsample name no nearest
rounding, so they floor ``x_resized / scale`` as PyTorch's ``nearest`` does (onnxruntime takes
the ceiling when Resize-10 downsamples); Pad with negative pads crops before it pads, as
onnxruntime does (the order matters only for reflect/edge on very short axes).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from .errors import CheckFailed, one_line
from .reference_ops import OVERRIDES

FIXED: dict[str, str] = {
    "BatchNormalization": "opsets < 14 ran in training mode (batch statistics) because onnx "
    "fills in momentum's default, and crashed at 6/7; now inference: "
    "Y = scale*(x-mean)/sqrt(var+eps)+bias",
    "MaxPool": "at stride 1 wrong shapes with ceil_mode and pads or asymmetric pads, wrong "
    "Indices, 1-D crash; too small with SAME_LOWER at stride > 1; now the spec's windows",
    "AveragePool": "windows shifted with ceil_mode at stride >= 3, dilation ignored by SAME; "
    "now the spec's windows",
    "Softmax": "opsets < 13 normalised over `axis` alone (default -1) instead of the 2-D "
    "coercion at `axis` (default 1); now coerced",
    "LogSoftmax": "opsets < 13: as Softmax; now coerced",
    "Gemm": "opsets < 7 with broadcast=0 dropped beta; now alpha*A'B' + beta*C",
    "Resize": "opset 10 failed on every node (scales read as roi), opsets 11/12 on "
    "tf_half_pixel_for_nn; now asymmetric (10) or (x+0.5)/scale, separable",
    "Upsample": "failed on the scales attribute (7), on linear and non-integer scales (9); "
    "now Resize-10's asymmetric rule",
    "Pad": "negative pads (crop) failed; now crop, then pad",
    "DequantizeLinear": "opsets 10 and 13 not implemented (onnx has 19 onwards); now "
    "(x - zero_point) * scale, per tensor or along axis",
    "QuantizeLinear": "opsets 10 and 13 not implemented (onnx has 19 onwards); now "
    "saturate(round_half_even(x / scale) + zero_point), per tensor or along axis",
}
KNOWN_FAULTS: dict[str, str] = {}


def evaluator(model: onnx.ModelProto) -> ReferenceEvaluator:
    """The reference evaluator with onnxconv's op overrides (the fixes above)."""
    return ReferenceEvaluator(model, new_ops=OVERRIDES)


def run_reference(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Outputs ``names`` (default: the graph outputs) as numpy arrays; any exception of the
    evaluator becomes :class:`CheckFailed`. numpy's floating-point warnings are silenced."""
    names = [o.name for o in model.graph.output] if names is None else list(names)
    try:  # overflow to Inf is an answer here (the verdict reads it), not a warning to print
        with np.errstate(all="ignore"):
            values = evaluator(model).run(names, dict(feeds))
    except Exception as error:  # an opinion that could not be formed is no opinion
        raise CheckFailed(f"onnx ReferenceEvaluator failed: {one_line(error)}") from error
    return dict(zip(names, (np.asarray(v) for v in values)))


__all__ = ["FIXED", "KNOWN_FAULTS", "OVERRIDES", "evaluator", "run_reference"]
