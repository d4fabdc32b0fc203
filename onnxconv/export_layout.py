"""The folder an export writes, in the ONNX test-data layout, and its manifest:

    <out>/<variant>/model.onnx
    <out>/<variant>/test_data_set_0/input_0.pb     seeded input (TensorProto)
    <out>/<variant>/test_data_set_0/output_0.pb    PyTorch's fp32 output (TensorProto)
    <out>/manifest.json                            one entry per graph (see ``manifest_entry``)

onnx's backend test runner and ONNX Runtime's ``onnx_test_runner`` read these folders as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from . import variants
from .errors import UserInputError
from .export_onnx import ExportOptions

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1


def exporter_versions() -> dict[str, str]:
    """The toolchain that wrote a graph, as its manifest records it (onnxconv, torch, onnx,
    onnxscript, onnxruntime). Not :func:`onnxconv.machine.versions`, which describes the timed
    path of a run (distributions, EPs, Python) and belongs in bench and tune reports."""
    import onnxruntime
    import onnxscript

    from . import __version__

    return {
        "onnxconv": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def tensor_pb(array: np.ndarray, name: str) -> bytes:
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name).SerializeToString()


def symbolic_dims(info: onnx.ValueInfoProto) -> dict[str, str]:
    """``{axis: name}`` of a graph input's or output's symbolic dims (what may vary at run time)."""
    dims = info.type.tensor_type.shape.dim
    return {str(i): d.dim_param or "?" for i, d in enumerate(dims) if not d.HasField("dim_value")}


def manifest_entry(
    spec: variants.VariantSpec,
    config: dict[str, Any],
    model: onnx.ModelProto,
    model_bytes: bytes,
    axes: dict[int, str],
    options: ExportOptions,
    output_shape: tuple[int, ...],
) -> dict[str, Any]:
    cost = spec.cost(config)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "variant": spec.name,
        "family": spec.family,
        "paper": spec.paper,
        "config": config,
        "opset": opset,
        "exporter": options.exporter,
        "ir_version": model.ir_version,
        "seed": options.seed,
        "inputs": [
            {
                "name": "input",
                "shape": list(spec.input_shape(config)),
                "dtype": "float32",
                "dynamic_axes": {str(i): n for i, n in axes.items()},
            }
        ],
        "outputs": [
            {
                "name": "output",
                "shape": list(output_shape),
                "dtype": "float32",
                "dynamic_axes": symbolic_dims(model.graph.output[0]),
            }
        ],
        "params": cost.params,
        "macs": cost.macs,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "versions": exporter_versions(),
    }


def read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA, "graphs": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest["graphs"], dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UserInputError(
            f"{path}: not an onnxconv manifest (invalid JSON or no 'graphs')"
        ) from None
    return manifest


def graph_folders(out_dir: str | os.PathLike) -> list[Path]:
    """The graph folders of ``out_dir`` (those holding a model.onnx), by name; names that start
    with a dot (an export's staging or set-aside folders) are never graphs."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return [
        p
        for p in sorted(out.iterdir())
        if not p.name.startswith(".") and (p / "model.onnx").exists()
    ]


def order_key(name: str) -> tuple[int, str]:
    names = variants.names()
    return (names.index(name), name) if name in names else (len(names), name)
