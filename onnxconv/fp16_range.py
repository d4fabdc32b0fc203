"""Does a float16 deployment overflow as written? Tensor by tensor, from the fp32 graph.

An fp16 deployment (``fp16``, ``fp16-io``, ``fp16-onnxconv``) stores its tensors in float16,
whose largest finite value is 65504. Where the fp32 graph computes a larger value into a tensor
that the deployment keeps in float16, an EP computing in float16 writes ``inf`` there, while ONNX
Runtime's x86 CPU kernels, which compute float16 in float32, may hide it. So the check runs the
fp32 graph on ONNX Runtime with every node output exposed and looks at the magnitude of each
tensor the deployment holds in float16 (every node output, except one the deployment keeps in
float32 under the same name; a graph output counts: it is computed in float16 before its Cast).

It is asked of tensors, not of the arithmetic inside an op: LayerNormalization's statistics and
ReduceL2's squares are computed in float32 by the spec (``stash_type``) and by real kernels, and
onnx's reference evaluator, which computes them in float16, overflowed on correct graphs there.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnx

#: float16's largest finite value.
FLOAT16_MAX = 65504.0


def _kept_float32(deployed: onnx.ModelProto) -> set[str]:
    """The node outputs ``deployed`` holds in float32 (ops the converter left in float32), by
    name; its graph outputs are left out (computed in float16, then cast)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(deployed)
    except Exception:  # no types to tell: every tensor counts as float16
        return set()
    outputs = {o.name for o in deployed.graph.output}
    return {
        vi.name
        for vi in inferred.graph.value_info
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.name not in outputs
    }


def overflow(
    fp32_model: onnx.ModelProto,
    deployed: onnx.ModelProto,
    feeds: list[Mapping[str, np.ndarray]],
    labels: list[str],
) -> str | None:
    """Where ``deployed`` (``fp32_model`` at a float16 precision) cannot hold what the fp32
    graph computes on one of ``feeds`` (named by ``labels``), in words: the first tensor past
    float16's range and how far; None where every tensor fits."""
    from .divergence import run_intermediates_ort
    from .errors import UserInputError
    from .runtime import Target

    kept = _kept_float32(deployed)
    for label, feed in zip(labels, feeds):
        try:
            values = run_intermediates_ort(fp32_model, feed, Target("cpu", "disabled"))
        except UserInputError:  # shape inference cannot type its tensors: nothing to read
            return None
        for name, value in values.items():
            if name in kept or not np.issubdtype(value.dtype, np.floating):
                continue
            finite = np.abs(value[np.isfinite(value)])
            peak = float(finite.max()) if finite.size else 0.0
            if peak > FLOAT16_MAX:
                beyond = int(np.count_nonzero(finite > FLOAT16_MAX))
                return (
                    f"the graph as written overflows float16: tensor {name!r} reaches {peak:.3g} "
                    f"in float32 on {label} ({beyond} of {value.size} elements beyond 65504), "
                    "and the deployment stores it in float16 (inf on an EP that computes in "
                    "float16; ONNX Runtime's x86 CPU computes in float32 and hides it)"
                )
    return None
