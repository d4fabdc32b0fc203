"""Inputs for a graph: shapes from its declared inputs, seeded values, and an allocation limit.

A declared input such as ``1×3×100000×100000`` would need 120 GB; :func:`generate` refuses it
with one line naming the input and its size (a :class:`UserInputError`, exit 2) before numpy
tries, instead of a MemoryError traceback.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import onnx

from .errors import UserInputError

DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "wide": lambda rng, shape: 8.0 * rng.standard_normal(shape),
}
"""``wide`` = 8 × normal: large activations, where rounding and overflow show."""

DEFAULT_MAX_BYTES = 4 * 2**30
"""Default limit on the bytes of one case's generated inputs (``--max-input-gb``)."""


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers."""
    weights = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def require_inputs(model: onnx.ModelProto, label: str) -> None:
    """A graph with no input computes a constant: there is nothing to feed it, and nothing its
    outputs could be checked or timed against. ``UserInputError`` naming ``label``."""
    if not graph_inputs(model):
        raise UserInputError(f"{label}: the graph has no inputs (a constant): nothing to feed it")


def input_shape(info: onnx.ValueInfoProto, batch: int, spatial: dict[int, int]) -> tuple:
    """Fixed dims as declared; a symbolic batch axis -> ``batch``, other symbolic axes ->
    ``spatial[axis]`` (1 for a symbolic axis ``spatial`` does not name)."""
    shape = []
    for i, dim in enumerate(info.type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif i == 0:
            shape.append(batch)
        else:
            shape.append(spatial.get(i, 1))
    return tuple(shape)


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


class SampleDoesNotFit(UserInputError):
    """A non-float input's sample cannot take the shape a generated case asks for (e.g. a mask
    at another height and width than the stored one)."""


def generate(
    model: onnx.ModelProto,
    label: str,
    *,
    batch: int,
    spatial: dict[int, int],
    distribution: str,
    seed: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    samples: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded inputs for every float graph input, shaped by :func:`input_shape`; every other
    input (token ids, indices, masks: values only the model knows the valid range of) taken from
    ``samples``, a valid input by name, repeated or cut along a symbolic batch axis to ``batch``.

    Raises :class:`UserInputError` (naming ``label``) for a non-float input without a sample, a
    non-positive dimension, or inputs whose total size exceeds ``max_bytes``; and
    :class:`SampleDoesNotFit` for a sample that cannot take the case's shape.
    """
    planned = []
    total = 0
    given: dict[str, np.ndarray] = {}
    for position, info in enumerate(graph_inputs(model)):
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))
        if np.issubdtype(dtype, np.floating):
            shape = input_shape(info, batch, spatial)
        else:
            given[info.name] = _from_sample(
                info, position, dtype, samples or {}, batch, spatial, label
            )
            shape = given[info.name].shape
        if any(d <= 0 for d in shape):
            raise UserInputError(
                f"{label}: input {info.name!r} would have shape "
                f"{list(shape)}; every dimension must be positive"
            )
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        total += nbytes
        if total > max_bytes:
            raise UserInputError(
                f"{label}: input {info.name!r} of shape {list(shape)} {dtype} "
                f"needs {_size(nbytes)}, over the {_size(max_bytes)} limit for "
                f"generated inputs (--max-input-gb)"
            )
        if info.name not in given:
            planned.append((info.name, shape, dtype))
    rng = np.random.default_rng(seed)
    drawn = {
        name: DISTRIBUTIONS[distribution](rng, shape).astype(dtype)
        for name, shape, dtype in planned
    }
    return {info.name: {**drawn, **given}[info.name] for info in graph_inputs(model)}


def _from_sample(
    info: onnx.ValueInfoProto,
    position: int,
    dtype: np.dtype,
    samples: Mapping[str, np.ndarray],
    batch: int,
    spatial: dict[int, int],
    label: str,
) -> np.ndarray:
    """The non-float input ``info`` from its sample: at ``batch`` where its batch axis is
    symbolic (the sample's rows repeated in turn, or the first ones), at ``spatial``'s sizes on
    the symbolic axes that name (a sample cannot be resized: :class:`SampleDoesNotFit`), as
    the sample is on its other symbolic axes."""
    sample = samples.get(info.name)
    if sample is None:
        why = (
            "whose valid values only the model knows; onnxconv draws float inputs only"
            if dtype.kind in "iub"
            else "which onnxconv does not draw"
        )
        raise UserInputError(
            f"{label}: input {info.name!r} is {dtype}, {why}, and takes this one from a sample: "
            f"the graph's test_data_set_0/input_{position}.pb (as export writes it) or "
            "validate's --inputs FILE.npz"
        )
    sample = np.asarray(sample, dtype=dtype)
    if not info.type.tensor_type.HasField("shape"):  # nothing declared to fit
        return sample
    dims = info.type.tensor_type.shape.dim
    symbolic_batch = bool(dims) and not dims[0].HasField("dim_value")
    if symbolic_batch and sample.ndim and len(sample) and len(sample) != batch:
        sample = np.take(sample, np.arange(batch) % len(sample), axis=0)
    wanted = [
        d.dim_value if d.HasField("dim_value") else batch if i == 0 else spatial.get(i, size)
        for i, (d, size) in enumerate(zip(dims, sample.shape))
    ]
    if len(dims) != sample.ndim or list(sample.shape) != wanted:
        wants = f"shape {wanted}" if len(dims) == sample.ndim else f"rank {len(dims)}"
        raise SampleDoesNotFit(
            f"{label}: input {info.name!r} comes from a sample of shape {list(sample.shape)}, "
            f"which cannot take the {wants} this case needs"
        )
    return sample


def samples(
    model: onnx.ModelProto, arrays: dict[str, np.ndarray], label: str
) -> list[dict[str, np.ndarray]]:
    """Feed dicts from arrays that hold many samples on the batch axis (e.g. calibration data
    in a ``.npz``): split into chunks of the model's batch (1 where the batch is symbolic).

    Raises :class:`UserInputError` (naming ``label``) for a missing or unexpected input, inputs
    with different sample counts, or a count the batch does not divide.
    """
    infos = graph_inputs(model)
    names = [i.name for i in infos]
    missing = [n for n in names if n not in arrays]
    extra = [n for n in arrays if n not in names]
    if missing or extra:
        raise UserInputError(
            f"{label}: arrays must be named after the model's inputs ({', '.join(names)}); "
            + (f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}")
        )
    counts = set()
    batch = {}
    for info in infos:
        dims = info.type.tensor_type.shape.dim
        batch[info.name] = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 1
        array = arrays[info.name]
        if array.ndim == 0 or array.shape[0] % batch[info.name]:
            raise UserInputError(
                f"{label}: input {info.name!r} of shape {list(array.shape)} cannot be split "
                f"into batches of {batch[info.name]}"
            )
        counts.add(array.shape[0] // batch[info.name])
    if len(counts) != 1 or 0 in counts:
        raise UserInputError(
            f"{label}: every input needs the same, non-zero number of samples; got "
            + ", ".join(f"{n} {list(arrays[n].shape)}" for n in names)
        )
    count = counts.pop()
    return [{n: arrays[n][i * batch[n] : (i + 1) * batch[n]] for n in names} for i in range(count)]
