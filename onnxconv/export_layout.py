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


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as a manifest entry records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def graph_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a graph as deployed: its file's bytes, then those of each external data
    file it names (in name order); the file's own sha256 where it names none. A weight changed
    in ``model.onnx.data`` changes it."""
    path = Path(path)
    data = path.read_bytes()
    try:
        tensors = list(onnx.load_model_from_string(data).graph.initializer)
    except Exception:  # noqa: BLE001 - not a model: its bytes are all there is to hash
        tensors = []
    files = sorted(
        {
            entry.value
            for tensor in tensors
            if tensor.data_location == onnx.TensorProto.EXTERNAL
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
    digest = hashlib.sha256(data)
    for name in files:
        external = path.parent / name
        digest.update(external.read_bytes() if external.is_file() else b"")
    return digest.hexdigest()


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


#: What each key of a manifest entry must hold where it is present (an entry is read by
#: validate, bench, tune, detect and export; a wrong type there was a traceback).
ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "variant": str,
    "config": dict,
    "opset": int,
    "exporter": str,
    "seed": int,
    "inputs": list,
    "outputs": list,
    "sha256": str,
    "module": (dict, type(None)),
    "notes": list,
}
#: Keys an entry that names a zoo variant cannot do without.
VARIANT_KEYS = ("config", "opset", "exporter", "inputs", "outputs")


def load_json(path: Path) -> Any:
    """A manifest's JSON; one line naming the file when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else "not JSON"
        raise UserInputError(f"{path}: not a readable onnxconv manifest ({why})") from None


def check_entry(path: Path, name: str, entry: Any) -> dict[str, Any]:
    """``entry`` (graph ``name`` of the manifest at ``path``), or one line naming the key that
    is missing or of the wrong type."""
    if not isinstance(entry, dict):
        raise UserInputError(f"{path}: graph {name!r} is not an object")
    if isinstance(entry.get("variant"), str) and not entry.get("module"):
        missing = [key for key in VARIANT_KEYS if key not in entry]
        if missing:
            raise UserInputError(f"{path}: graph {name!r} has no {', '.join(missing)}")
    for key, kind in ENTRY_TYPES.items():
        if key in entry and (not isinstance(entry[key], kind) or isinstance(entry[key], bool)):
            raise UserInputError(
                f"{path}: graph {name!r}: {key} is {type(entry[key]).__name__}, not "
                f"{getattr(kind, '__name__', 'an object')}"
            )
    if entry.get("variant") in variants.REGISTRY and "config" in entry:
        try:  # a config the variant refuses is the manifest's fault: say which file
            variants.get(entry["variant"]).config(entry["config"])
        except UserInputError as error:
            raise UserInputError(f"{path}: graph {name!r}: {error}") from None
    for key in ("inputs", "outputs"):
        for item in entry.get(key, []):
            if not (
                isinstance(item, dict)
                and isinstance(item.get("name"), str)
                and isinstance(item.get("shape", []), list)
            ):
                raise UserInputError(f"{path}: graph {name!r}: {key} holds {item!r}")
    return entry


def read_manifest(out_dir: Path, check_entries: bool = True) -> dict[str, Any]:
    """``out_dir``'s manifest (an empty one where there is none). Every entry is checked
    (:func:`check_entry`) unless ``check_entries`` is False: export only adds and replaces
    entries, so a broken one must not stop the export that would write it anew."""
    path = out_dir / MANIFEST
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA, "graphs": {}}
    manifest = load_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("graphs"), dict):
        raise UserInputError(f"{path}: not an onnxconv manifest (no 'graphs')")
    for name, entry in manifest["graphs"].items() if check_entries else ():
        check_entry(path, name, entry)
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
