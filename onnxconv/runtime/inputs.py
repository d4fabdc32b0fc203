"""What a session is fed: :class:`TensorSpec` for its inputs and outputs, the inputs of a model
without a session (:func:`input_specs`), feeds checked against them (:func:`check_feeds`), and
one checked run (:func:`run`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.errors import one_line as _one_line

if TYPE_CHECKING:
    from .sessions import SessionInfo


@dataclass(frozen=True)
class TensorSpec:
    """A session input or output as ONNX Runtime declares it."""

    name: str
    shape: tuple[int | str | None, ...] | None
    """Ints for fixed dims, strings for symbolic dims, ``None`` for unnamed ones."""
    onnx_type: str
    """ORT's type string, e.g. ``tensor(float)``."""
    dtype: np.dtype | None
    """numpy dtype for tensor types numpy has; ``None`` otherwise (e.g. bfloat16)."""

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        )
        return f"{self.dtype if self.dtype is not None else self.onnx_type} {dims}"


_ORT_TYPES: dict[str, np.dtype] = {
    f"tensor({k})": np.dtype(v)
    for k, v in {
        "float": np.float32,
        "float16": np.float16,
        "double": np.float64,
        "int8": np.int8,
        "int16": np.int16,
        "int32": np.int32,
        "int64": np.int64,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
        "string": np.object_,
    }.items()
}


def ort_tensor_spec(arg: Any) -> TensorSpec:
    """The :class:`TensorSpec` of an ORT ``NodeArg`` (``session.get_inputs()`` and outputs)."""
    shape = arg.shape
    if shape is not None:
        shape = tuple(d if isinstance(d, (int, str)) or d is None else None for d in shape)
        shape = tuple(None if isinstance(d, int) and d < 0 else d for d in shape)
    return TensorSpec(
        name=arg.name, shape=shape, onnx_type=arg.type, dtype=_ORT_TYPES.get(arg.type)
    )


def input_specs(
    model: onnx.ModelProto, names: Iterable[str] | None = None
) -> tuple[TensorSpec, ...]:
    """The graph inputs of ``model`` as ORT would declare them, without a session.

    Initializers listed as graph inputs are left out (they are weights, not feeds); ``names``
    keeps only those inputs, in graph order.
    """
    weights = {init.name for init in model.graph.initializer}
    keep = set(names) if names is not None else None
    return tuple(
        value_spec(vi)
        for vi in model.graph.input
        if vi.name not in weights and (keep is None or vi.name in keep)
    )


def output_specs(model: onnx.ModelProto) -> tuple[TensorSpec, ...]:
    """The graph outputs of ``model`` as ORT would declare them, without a session."""
    return tuple(value_spec(vi) for vi in model.graph.output)


def value_spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    """The :class:`TensorSpec` of a graph input or output (its declared type and shape)."""
    t = vi.type.tensor_type
    onnx_type = f"tensor({TensorProto.DataType.Name(t.elem_type).lower()})"
    shape = None
    if t.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
        )
    return TensorSpec(
        name=vi.name, shape=shape, onnx_type=onnx_type, dtype=_ORT_TYPES.get(onnx_type)
    )


def check_feeds(
    label: str, specs: Sequence[TensorSpec], feeds: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """``feeds`` against declared inputs: names, numpy arrays, dtypes, fixed dims, and symbolic
    dims bound consistently across inputs. Returns contiguous arrays by name; otherwise one
    :class:`UserInputError` line starting with ``label``."""
    expected = [s.name for s in specs]
    for spec in specs:
        if spec.name not in feeds:
            raise UserInputError(
                f"{label}: missing input {spec.name!r} (expected {spec.describe()}); "
                f"got: {', '.join(map(repr, feeds)) or 'no inputs'}"
            )
    for name in feeds:
        if name not in expected:
            raise UserInputError(
                f"{label}: unexpected input {name!r}; the model's inputs are: "
                f"{', '.join(map(repr, expected))}"
            )
    checked: dict[str, np.ndarray] = {}
    bound: dict[str, tuple[int, str]] = {}
    for spec in specs:
        arr = feeds[spec.name]
        if not isinstance(arr, np.ndarray):
            raise UserInputError(
                f"{label}: input {spec.name!r} must be a numpy array, got {type(arr).__name__}"
            )
        if spec.dtype is not None and arr.dtype != spec.dtype:
            raise UserInputError(
                f"{label}: input {spec.name!r} expected dtype {spec.dtype}, got {arr.dtype}"
            )
        if spec.shape is not None:
            got = tuple(arr.shape)
            bad = len(got) != len(spec.shape)
            for want, have in zip(spec.shape, got):
                if bad:
                    break
                if isinstance(want, int):
                    bad = want != have
                elif isinstance(want, str):
                    if want in bound and bound[want][0] != have:
                        raise UserInputError(
                            f"{label}: input {spec.name!r} dim {want!r} = {have}, but input "
                            f"{bound[want][1]!r} bound it to {bound[want][0]}"
                        )
                    bound.setdefault(want, (have, spec.name))
            if bad:
                raise UserInputError(
                    f"{label}: input {spec.name!r} expected shape "
                    f"{spec.describe().split(' ', 1)[1]}, "
                    f"got {list(got)}"
                )
        checked[spec.name] = np.ascontiguousarray(arr)
    return checked


def run(session_info: SessionInfo, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run once after checking input names, dtypes and shapes; ``{output name: array}``."""
    checked = check_feeds(session_info.model_label, session_info.inputs, feeds)
    names = [s.name for s in session_info.outputs]
    # a kernel's failure is raised below, in one line: ORT's logger would print it once more
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4
    try:
        values = session_info.session.run(names, checked, quiet)
    except Exception as exc:
        raise CheckFailed(
            f"{session_info.model_label}: ONNX Runtime run failed on "
            f"{session_info.target.id}: {_one_line(exc)}"
        ) from exc
    return dict(zip(names, values))
