"""One call from a PyTorch module in memory to a validated report, without the CLI.

    import onnxconv
    report = onnxconv.validate_module(model, (torch.randn(1, 3, 224, 224),))
    assert report.summary().get("fail", 0) == 0

The module is exported the way ``onnxconv export --module`` does it (checked, test-data layout)
into a temporary folder, or into ``out_dir`` to keep the graph, and validated with the module
itself as the PyTorch opinion.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence


def validate_module(
    module: Any,
    example_inputs: Sequence[Any],
    *,
    name: str = "model",
    exporter: str = "dynamo",
    opset: int | None = None,
    dynamic_batch: bool = False,
    eps: Sequence[str] | None = None,
    opt_levels: Sequence[str] = ("disabled", "all"),
    precisions: Sequence[str] = ("fp32",),
    out_dir: str | os.PathLike | None = None,
    **options: Any,
):
    """Export ``module`` at ``example_inputs`` and validate the graph on every target.

    ``eps`` defaults to every EP active here; ``options`` go to
    :func:`onnxconv.validate.validate` (``seeds``, ``threads``, ``tol``, ...). Returns its
    :class:`~onnxconv.validate.ValidationReport`.
    """
    from . import runtime, validate
    from .export import DEFAULT_OPSET, ExportOptions
    from .export_module import export_module

    export_options = ExportOptions(
        opset=DEFAULT_OPSET if opset is None else opset,
        exporter=exporter,
        dynamic_batch=dynamic_batch,
    )
    eps = list(eps) if eps is not None else runtime.default_eps()[0]

    def run(folder: Path):
        result = export_module(module, tuple(example_inputs), folder, name, export_options)
        subject = validate.load_folder(result.folder)
        subject.entry = result.entry
        validate.attach_module(subject, module, f"{type(module).__name__} (in memory)")
        return validate.validate([subject], eps, list(opt_levels), list(precisions), **options)

    if out_dir is not None:
        return run(Path(out_dir))
    with tempfile.TemporaryDirectory(prefix="onnxconv-api-") as tmp:
        return run(Path(tmp))


def import_torchvision() -> Any:
    """``torchvision``, imported so that its models load even where its compiled ops cannot
    beside this torch (PyPI's torchvision wheel beside a CPU torch raises ``operator
    torchvision::nms does not exist`` on ``import torchvision``): its models are plain PyTorch,
    its detection ops (nms, roi_align) stay unavailable. The same allowance ``--module
    torchvision.models:...`` makes."""
    from .user_model import import_allowing_torchvision

    return import_allowing_torchvision("torchvision", [])
