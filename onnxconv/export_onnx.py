"""One PyTorch module -> one ONNX ModelProto, by either exporter, with the options asked.

The exporters' own output is kept off the terminal (:func:`quiet`), their long failure messages
become one line (:func:`exporter_failure`), and the source paths the dynamo exporter writes into
node metadata are dropped (:func:`strip_stack_traces`) so the bytes do not depend on the checkout.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from typing import Sequence

import onnx
import torch

from .errors import CheckFailed, UserInputError, one_line, reraise_interrupt

EXPORTERS = ("dynamo", "torchscript")
#: Opsets each exporter can write: the dynamo exporter starts at 18 (below it would need
#: onnx's version converter); the TorchScript exporter stops at 20 (torch.onnx._constants).
OPSET_RANGE = {"dynamo": (18, 23), "torchscript": (9, 20)}
DEFAULT_OPSET = 18


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    exporter: str = "dynamo"
    dynamic_batch: bool = False
    #: Also make height and width dynamic.
    dynamic_hw: bool = False
    verbose: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.exporter not in EXPORTERS:
            raise UserInputError(
                f"unknown exporter {self.exporter!r} (choose from {', '.join(EXPORTERS)})"
            )
        low, high = OPSET_RANGE[self.exporter]
        if not low <= self.opset <= high:
            raise UserInputError(
                f"opset {self.opset} is not supported by the {self.exporter} "
                f"exporter (supported: {low}..{high})"
            )


def dynamic_axes(options: ExportOptions) -> dict[int, str]:
    """Input axis -> symbolic name, for the options asked."""
    axes: dict[int, str] = {}
    if options.dynamic_batch:
        axes[0] = "batch"
    if options.dynamic_hw:  # every zoo variant allows it (tested with both exporters)
        axes.update({2: "height", 3: "width"})
    return axes


@contextlib.contextmanager
def quiet(verbose: bool):
    """Keep the exporters' progress prints, warnings and log lines off the terminal, those that
    torch's C++ side writes straight to file descriptors 1 and 2 included."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch", "torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    sink = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            _descriptors_silenced(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _descriptors_silenced():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def io_names(prefix: str, count: int) -> list[str]:
    """``["input"]`` for one tensor, ``["input_0", "input_1", ...]`` for several."""
    return [prefix] if count == 1 else [f"{prefix}_{i}" for i in range(count)]


def input_axes(options: ExportOptions, ranks: Sequence[int]) -> list[dict[int, str]]:
    """Per input of the given ranks, the axes the options make dynamic: the batch (axis 0) of
    every input, height and width (axes 2, 3) of the rank-4 ones."""
    axes = []
    for rank in ranks:
        named = dynamic_axes(options) if rank == 4 else {}
        if rank != 4 and options.dynamic_batch and rank >= 1:
            named = {0: "batch"}
        axes.append(named)
    return axes


def to_onnx(
    module: torch.nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    axes: dict[int, str] | list[dict[int, str]],
    options: ExportOptions,
    output_count: int = 1,
) -> onnx.ModelProto:
    """One module -> one self-contained ModelProto. Inputs are named ``input`` (or ``input_0``,
    ``input_1``, ...), outputs ``output`` (or ``output_0``, ...); ``axes`` holds the dynamic axes
    of each input (one dict applies to every input)."""
    examples = example if isinstance(example, tuple) else (example,)
    per_input = axes if isinstance(axes, list) else [axes] * len(examples)
    in_names, out_names = io_names("input", len(examples)), io_names("output", output_count)
    with tempfile.TemporaryDirectory(prefix="onnxconv-export-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        with quiet(options.verbose), torch.no_grad():
            if options.exporter == "dynamo":
                shapes = None
                if any(per_input):
                    dims = {n: torch.export.Dim(n, min=1) for a in per_input for n in a.values()}
                    shapes = tuple({i: dims[n] for i, n in a.items()} or None for a in per_input)
                torch.onnx.export(
                    module,
                    examples,
                    path,
                    dynamo=True,
                    external_data=False,
                    opset_version=options.opset,
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_shapes=shapes,
                )
            else:
                batch = {0: "batch"} if any(0 in a for a in per_input) else {}
                dyn = {n: dict(a) for n, a in zip(in_names, per_input)}
                dyn.update({n: dict(batch) for n in out_names})
                torch.onnx.export(
                    module,
                    examples,
                    path,
                    dynamo=False,
                    opset_version=options.opset,
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_axes=dyn if any(per_input) else None,
                    do_constant_folding=True,
                )
        return strip_stack_traces(onnx.load(path))


def exporter_failure(label: str, exporter: str, error: BaseException) -> CheckFailed:
    """One line from an exporter's long message: the line that names the operator when there is
    one (``aten::...``, ``aten.``, "Unsupported ..."), its first line otherwise.

    An interrupt (SIGINT/SIGTERM) that arrived inside the exporter, which wraps it in its own
    exception, is raised again as the interrupt: the user stopped the run, the model is fine."""
    reraise_interrupt(error)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    keys = ("aten::", "aten.", "torch.ops.", "Unsupported", "not supported")
    said = next((line for line in lines if any(key in line for key in keys)), None)
    return CheckFailed(
        f"{label}: the {exporter} exporter failed: {one_line(said or error)}"
        + ("" if said else " (--verbose shows the exporter's own output)")
    )


#: Node metadata the dynamo exporter fills with absolute source paths and line numbers: it would
#: make the bytes depend on where the checkout lives and on unrelated edits.
VOLATILE_METADATA = ("pkg.torch.onnx.stack_trace",)


def strip_stack_traces(model: onnx.ModelProto) -> onnx.ModelProto:
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    for node in nodes:
        keep = [p for p in node.metadata_props if p.key not in VOLATILE_METADATA]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
    return model
