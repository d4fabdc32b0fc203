"""Any ``nn.Module`` -> a graph folder, the same way the zoo is exported.

The user's module (by import path, :class:`~onnxconv.user_model.ModuleRecipe`, or an object in
memory) goes through the zoo's pipeline in :mod:`onnxconv.export`: both exporters, dynamic axes,
``onnx.checker`` and strict shape inference, ONNX Runtime reproducing PyTorch's outputs, the
test-data layout, and the all-or-nothing swap into the output folder with its manifest. What a
family would promise about its structure is unknown here, so the manifest records what
``inspect`` finds instead (Convs per kind, groups, channel shuffles).

The manifest entry of such a graph has ``module`` (the recipe: import path, arguments, inputs,
seed; ``null`` for a module given in memory) in place of ``variant``, and ``weights_sha256``,
the fingerprint that a module rebuilt later must match to speak for the graph.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch

from . import graph
from .errors import UserInputError
from .export import ExportResult, export_all_or_nothing
from .export_checks import check_reproduces, check_valid
from .export_layout import exporter_versions, symbolic_dims, tensor_pb
from .export_onnx import ExportOptions, exporter_failure, input_axes, io_names, to_onnx
from .user_model import ModuleRecipe, flatten_outputs, last_line, weights_fingerprint

_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def check_name(name: str) -> str:
    if not _FOLDER_NAME.fullmatch(name):
        raise UserInputError(
            f"--name {name!r}: a graph folder name takes letters, digits, '_', '.', '+', '-' "
            "and does not start with a dot"
        )
    return name


def run_module(module: torch.nn.Module, examples: tuple[torch.Tensor, ...], label: str) -> list:
    """PyTorch's outputs as numpy arrays; a module that rejects the inputs is a UserInputError
    naming the shapes given and the module's own last line."""
    try:
        with torch.no_grad():
            outputs = flatten_outputs(module(*examples))
    except UserInputError:
        raise
    except Exception as error:  # the user's module may raise anything
        shapes = ", ".join(str(list(t.shape)) for t in examples)
        raise UserInputError(
            f"{label}: the module rejects inputs of shape {shapes}: {type(error).__name__}: "
            f"{last_line(error)}"
        ) from None
    return [t.detach().cpu().numpy() for t in outputs]


def export_module(
    module: torch.nn.Module,
    examples: Sequence[torch.Tensor],
    out_dir: str | os.PathLike,
    name: str,
    options: ExportOptions = ExportOptions(),
    recipe: ModuleRecipe | None = None,
    notes: Sequence[str] = (),
) -> ExportResult:
    """Export ``module`` at ``examples`` into ``out_dir/name`` (test-data layout, checked) and
    add it to ``out_dir``'s manifest; all or nothing."""
    options.validate()
    check_name(name)
    module = module.eval()
    examples = tuple(examples)
    expected = run_module(module, examples, recipe.path if recipe else name)

    def write(folder: Path) -> dict[str, Any]:
        return write_folder(module, examples, expected, name, options, folder, recipe, notes)

    (result,) = export_all_or_nothing(out_dir, [(name, write)])
    return result


def write_folder(
    module: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    expected: list[np.ndarray],
    name: str,
    options: ExportOptions,
    folder: Path,
    recipe: ModuleRecipe | None,
    notes: Sequence[str],
) -> dict[str, Any]:
    axes = input_axes(options, [t.dim() for t in examples])
    try:
        model = to_onnx(module, examples, axes, options, output_count=len(expected))
    except Exception as error:  # the exporters raise many types; the user needs one line
        # the user's model, not onnxconv, holds what the exporter refuses: an input error
        raise UserInputError(str(exporter_failure(name, options.exporter, error))) from None
    check_valid(model, name)
    in_names = io_names("input", len(examples))
    feeds = {n: t.numpy() for n, t in zip(in_names, examples)}
    check_reproduces(model, name, feeds, expected, module)
    model_bytes = model.SerializeToString()
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model_bytes)
    for i, (n, array) in enumerate(feeds.items()):
        (data / f"input_{i}.pb").write_bytes(tensor_pb(array, n))
    for i, (info, array) in enumerate(zip(model.graph.output, expected)):
        (data / f"output_{i}.pb").write_bytes(tensor_pb(array, info.name))
    return manifest_entry(module, model, model_bytes, axes, options, feeds, expected, recipe, notes)


def manifest_entry(
    module: torch.nn.Module,
    model: onnx.ModelProto,
    model_bytes: bytes,
    axes: list[dict[int, str]],
    options: ExportOptions,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    recipe: ModuleRecipe | None,
    notes: Sequence[str],
) -> dict[str, Any]:
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    # At the example's shapes: a symbolic height and width (--dynamic-hw) would leave every
    # convolution uncounted and the total would be the Gemm alone.
    _, macs = graph.graph_cost(
        graph.with_input_shapes(model, {name: array.shape for name, array in feeds.items()})
    )
    return {
        "module": recipe.to_dict() if recipe else None,
        "module_class": f"{type(module).__module__}.{type(module).__qualname__}",
        "family": "user",
        "opset": opset,
        "exporter": options.exporter,
        "ir_version": model.ir_version,
        "seed": recipe.seed if recipe else options.seed,
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "dtype": str(a.dtype),
                "dynamic_axes": {str(i): d for i, d in ax.items()},
            }
            for (n, a), ax in zip(feeds.items(), axes)
        ],
        "outputs": [
            {
                "name": info.name,
                "shape": list(a.shape),
                "dtype": str(a.dtype),
                "dynamic_axes": symbolic_dims(info),
            }
            for info, a in zip(model.graph.output, expected)
        ],
        "params": sum(p.numel() for p in module.parameters()),
        "macs": macs,
        "macs_source": "graph",
        "structure": graph.structure_summary(model),
        "weights_sha256": weights_fingerprint(module),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "versions": exporter_versions(),
        "notes": list(notes),
    }


def export_recipe(
    recipe: ModuleRecipe,
    out_dir: str | os.PathLike,
    name: str | None = None,
    options: ExportOptions = ExportOptions(),
    examples: Sequence[torch.Tensor] | None = None,
) -> ExportResult:
    """Build the recipe's module and export it (``examples`` default to seeded inputs of the
    recipe's shapes)."""
    options.validate()
    check_name(name or recipe.name)
    module, notes = recipe.build()
    return export_module(
        module,
        recipe.example_inputs() if examples is None else examples,
        out_dir,
        name or recipe.name,
        options,
        recipe,
        notes,
    )


def describe(entry: dict[str, Any]) -> str:
    """``convs 17 depthwise, 36 pointwise; 16 shuffles (g=2)``: the structure in one line."""
    s = entry.get("structure") or {}
    convs = ", ".join(f"{n} {kind}" for kind, n in s.get("convs", {}).items()) or "none"
    text = f"convs {convs}"
    if s.get("grouped_groups"):
        text += f" (groups {', '.join(map(str, s['grouped_groups']))})"
    if s.get("shuffles"):
        groups = ", ".join(map(str, s.get("shuffle_groups", [])))
        text += f"; {s['shuffles']} channel shuffles" + (f" (g={groups})" if groups else "")
    return text
