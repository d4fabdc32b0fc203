"""The checks an exported graph passes before it is kept: ``onnx.checker`` (full check), strict
shape inference, the structure its family promises (``graph.checks``), and ONNX Runtime
reproducing PyTorch's output. Each failure is a CheckFailed naming the graph and the check."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from . import variants
from .errors import CheckFailed, one_line
from .graph import checks as graph_checks
from .parity import Tolerance
from .verdict import scaled

#: ONNX Runtime must reproduce PyTorch's fp32 output this closely before an export is kept;
#: atol is scaled by max(1, RMS of PyTorch's output) as validate scales it
#: (:func:`onnxconv.verdict.scaled`): a deep network at a trained one's scale (ResNeXt-50 with
#: variance-preserving weights) differs by 0.019 at outputs in the hundreds.
REPRODUCE_ATOL, REPRODUCE_RTOL = 1e-4, 1e-3


def check_export(
    model: onnx.ModelProto,
    spec: variants.VariantSpec,
    config: dict[str, Any],
    example: np.ndarray,
    expected: np.ndarray,
    module: Any = None,
) -> None:
    """Raise CheckFailed naming the variant and the check that failed (``module``: the one
    ``expected`` came from, see :func:`check_reproduces`)."""
    check_valid(model, spec.name)
    if spec.structure_kind:
        graph_checks.assert_structure(
            model, spec.structure_kind, spec.structure(config), source=spec.name
        )
    check_reproduces(model, spec.name, {"input": example}, [expected], module)


def check_valid(model: onnx.ModelProto, label: str) -> None:
    """``onnx.checker`` (full check) and strict shape inference, or CheckFailed."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise CheckFailed(f"{label}: exported graph is not valid ONNX: {one_line(error)}") from None


def check_reproduces(
    model: onnx.ModelProto,
    label: str,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    module: Any = None,
) -> None:
    """ONNX Runtime (CPU) must give PyTorch's outputs, in order, or CheckFailed. With the
    ``module`` the outputs came from, a difference is judged as validate judges it: one within
    this case's own fp32 rounding (the module in float64) is no reason to refuse the export."""
    import onnxruntime as ort

    from .verdict import TORCH, Float64, judge

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, feeds)
    names = [o.name for o in model.graph.output]
    exact: list[dict[str, np.ndarray]] = []

    def float64(name: str) -> Float64 | None:
        if module is None:
            return None
        if not exact:
            import torch

            from .float64 import FROM_TORCH, torch_in

            wide = [
                np.asarray(v, np.float64) if v.dtype == np.float32 else v for v in feeds.values()
            ]
            exact.append(torch_in(module, torch.float64, wide, names))
        # the example becomes the stored test set, which validate judges as the user's data
        found = exact[0].get(name)
        return None if found is None else Float64(found, TORCH, FROM_TORCH, generated=False)

    tolerance = Tolerance(REPRODUCE_ATOL, REPRODUCE_RTOL)
    for name, actual, want in zip(names, outputs, expected):
        tol = scaled(tolerance, want)
        if actual.shape == want.shape and np.allclose(actual, want, rtol=tol.rtol, atol=tol.atol):
            continue
        if actual.shape == want.shape and module is not None:
            check = judge(name, actual, {TORCH: want}, tolerance, float64=lambda n=name: float64(n))
            if check.status == "pass":
                continue  # fp32 rounding: validate says so, with the figures
        worst = np.abs(actual - want).max() if actual.shape == want.shape else "shape"
        raise CheckFailed(
            f"{label}: ONNX Runtime does not reproduce PyTorch's output {name!r} "
            f"(max abs error {worst}, atol {tol.atol:.3g} = {REPRODUCE_ATOL} x max(1, RMS), "
            f"rtol {REPRODUCE_RTOL})"
        )
