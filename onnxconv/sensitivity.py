"""Can a comparison see a defect at all? A float cell's blind spot.

A cell passes when ONNX Runtime's output is within tolerance of the deciding opinion on every
case. That proves something only if a wrong graph would have landed outside the tolerance. Two
wrong graphs are always at hand, and this module asks whether they would have passed too:

- **an all-zero output**: when the deciding outputs are everywhere within tolerance of zero
  (torchvision's MobileNet v2 with ``weights=None`` gives logits near 1e-10 against an atol of
  1e-4), a graph that outputs zeros passes;
- **an output that ignores the input**: when the deciding outputs of two different inputs of the
  cell are within tolerance of each other, element by element (a network whose output is almost
  all its last bias: torchvision's ShuffleNet V2 with ``weights=None``), a graph that returns the
  first input's output for both passes on them; so does a defect early in the network, whose
  effect at the output is of the same order (a sign-flipped first convolution passed there).

Either way the cell's pass proves little, and :mod:`onnxconv.validate` makes it a ``warn`` of
kind ``insensitive`` that names the output and the margin. Both tests are the cell's own
comparison (:func:`onnxconv.parity.compare` under the same scaled tolerance) applied to a wrong
graph that is written down, not a threshold of their own. Integer and bool outputs are compared
exactly and are left out, and so is an output with the same bits for every input (constant by
design: anchors, a fixed mask), which no wrong input path can move.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from .parity import Tolerance, compare
from .verdict import scaled

#: What makes such a check see: inputs and weights like those the graph will meet.
HINT = "; validate with trained weights, or real inputs (--inputs)"


def _passes(actual: np.ndarray, expected: np.ndarray, tol: Tolerance) -> bool:
    return compare(actual, expected, scaled(tol, expected)).passed


def blind_spot(
    expected: Sequence[Mapping[str, np.ndarray]],
    tol: Tolerance,
    labels: Sequence[str] | None = None,
) -> str | None:
    """Why comparing against ``expected`` (the deciding opinion's outputs, one mapping of output
    name to array per case, each case a different input, named by ``labels``) under ``tol``
    could not tell a wrong graph from the right one; ``None`` when it could."""
    names = list(labels) if labels is not None else [f"input {i}" for i in range(len(expected))]
    by_name: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for label, outputs in zip(names, expected):
        for name, value in outputs.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating) and value.size and np.isfinite(value).all():
                by_name[name].append((label, value))  # NaN/Inf outputs: the nonfinite verdict's
    for name, labelled in by_name.items():
        values = [v for _, v in labelled]
        if len(values) > 1 and all(
            v.shape == values[0].shape and np.array_equal(v, values[0]) for v in values[1:]
        ):
            continue  # the same bits for every input: constant by design (anchors, a mask)
        if all(_passes(np.zeros_like(v), v, tol) for v in values):
            largest = max(float(np.max(np.abs(v))) for v in values)
            return (
                f"output {name!r} is at most {largest:.2g} in magnitude, within the tolerance "
                f"({tol}) of zero: a graph that outputs zeros would pass too{HINT}"
            )
        by_shape: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = defaultdict(list)
        for label, v in labelled:
            by_shape[v.shape].append((label, v))
        for (first_label, first), *others in by_shape.values():
            alike = next(((lb, o) for lb, o in others if _passes(first, o, tol)), None)
            if alike is not None:
                label, other = alike
                return (
                    f"output {name!r} hardly depends on the input: for {first_label} and "
                    f"{label} it differs by at most {float(np.max(np.abs(other - first))):.2g}, "
                    f"within the tolerance ({tol}): a graph that ignored its input would pass "
                    f"on them{HINT}"
                )
    return None
