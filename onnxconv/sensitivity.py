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
comparison (:func:`onnxconv.parity.compare`'s verdict under the same scaled tolerance, by
:func:`onnxconv.parity.within`, which stops at the first element outside it) applied to a wrong
graph that is written down, not a threshold of their own. Integer and bool outputs are compared
exactly and are left out, and so is an output with the same bits for every input of a shape
(constant by design: anchors, a fixed mask, a grid), which no wrong input path can move, unless
every output is like that: then nothing the graph outputs depends on its input, and a graph
that ignored it would pass as well.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np

from .parity import Tolerance, within
from .verdict import scaled

#: What makes such a check see: inputs and weights like those the graph will meet.
HINT = "; check with trained weights, or real inputs (validate --inputs)"


def _passes(actual: np.ndarray, expected: np.ndarray, tol: Tolerance) -> bool:
    return within(actual, expected, scaled(tol, expected))


def _constant(labelled: Sequence[tuple[str, np.ndarray]]) -> bool:
    """The same bits for every input of the same shape (a dynamic batch or size gives several
    shapes: anchors repeated along the batch, a grid the size of the feature map), shown by two
    inputs of one shape at least."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = defaultdict(list)
    for _, value in labelled:
        by_shape[value.shape].append(value)
    groups = list(by_shape.values())
    return any(len(g) > 1 for g in groups) and all(
        np.array_equal(v, g[0]) for g in groups for v in g[1:]
    )


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
    constant = [name for name, labelled in by_name.items() if _constant(labelled)]
    if constant and len(constant) == len(by_name):
        return (
            f"no output moves with the input ({', '.join(map(repr, constant))}: the same bits "
            f"for every input of a shape): a graph that ignored its input would pass too{HINT}"
        )
    for name, labelled in by_name.items():
        if name in constant:
            continue  # constant by design beside outputs that move (anchors, a mask, a grid)
        values = [v for _, v in labelled]
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
