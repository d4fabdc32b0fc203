"""The ops :func:`onnxconv.reference.evaluator` puts into onnx's ``ReferenceEvaluator``.

Each override computes, by the spec's formula in numpy, the opsets and attributes where onnx's
own implementation is wrong (:data:`onnxconv.reference.FIXED` says what each fixes), and runs
onnx's implementation everywhere else. :data:`OVERRIDES` lists them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import onnx
from onnx.reference.op_run import OpRun
from onnx.reference.ops import load_op

# --- the override mechanism --------------------------------------------------------------------


class _Override(OpRun):
    """An op of the default domain computed here where :meth:`fixes` says, by onnx elsewhere.

    ``new_ops`` classes are looked up by op type alone, for every opset (onnx picks versioned
    classes such as ``BatchNormalization_9`` only among its own), so an override is named after
    its op and reads the node's opset itself. Attribute defaults come from that opset's schema
    (``OpRun`` would take the newest schema for a class named after the op).
    """

    def __init__(self, onnx_node: onnx.NodeProto, run_params: dict[str, Any]) -> None:
        self.opset = run_params["opsets"][onnx_node.domain]
        schema = onnx.defs.get_schema(onnx_node.op_type, self.opset, onnx_node.domain)
        super().__init__(onnx_node, run_params, schema=schema)
        self.onnx_impl = None
        if not self.fixes():
            impl = load_op(
                onnx_node.domain,
                onnx_node.op_type,
                self.opset,
                evaluator_cls=run_params.get("evaluator_cls"),
            )
            self.onnx_impl = impl(onnx_node, run_params)

    def fixes(self) -> bool:
        """Whether this node (its opset, its attributes) is computed here."""
        return True

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """onnx's implementation, untouched, where this class does not fix the node."""
        if self.onnx_impl is not None:
            return self.onnx_impl.run(*args, **kwargs)
        return super().run(*args, **kwargs)


# --- BatchNormalization ------------------------------------------------------------------------


class BatchNormalization(_Override):
    """Before opset 14 (no ``training_mode``) Y is computed from the running statistics."""

    def fixes(self) -> bool:
        return self.opset < 14

    def _run(
        self,
        x: np.ndarray,
        scale: np.ndarray,
        bias: np.ndarray,
        mean: np.ndarray,
        var: np.ndarray,
        epsilon: float = 1e-5,
        **_ignored: Any,
    ) -> tuple[np.ndarray]:
        # momentum and is_test only matter in training; spatial shows in the parameters' shape
        if any(self.onnx_node.output[1:]):
            raise NotImplementedError(
                f"BatchNormalization-{self.opset} with training outputs "
                f"{list(self.onnx_node.output[1:])}"
            )
        scale, bias, mean, var = (_per_channel(p, x.ndim) for p in (scale, bias, mean, var))
        return ((scale * (x - mean) / np.sqrt(var + epsilon) + bias).astype(x.dtype),)


def _per_channel(param: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) parameter as (C, 1, ..., 1) against (N, C, D1, ...); a per-activation parameter
    (C, D1, ...), opsets 6/7 with ``spatial=0``, broadcasts as it is."""
    return param.reshape(-1, *[1] * (ndim - 2)) if param.ndim == 1 else param


# --- MaxPool, AveragePool ----------------------------------------------------------------------


class _Pool(_Override):
    """Every window of the spec's output shape, gathered at once as ``(N, C, *out, taps)``."""

    def _run(
        self,
        x: np.ndarray,
        auto_pad: str = "NOTSET",
        ceil_mode: int = 0,
        count_include_pad: int = 0,
        dilations: Sequence[int] | None = None,
        kernel_shape: Sequence[int] = (),
        pads: Sequence[int] | None = None,
        storage_order: int = 0,
        strides: Sequence[int] | None = None,
    ) -> tuple[Any, ...]:
        rank, sizes = len(kernel_shape), x.shape[2:]
        strides, dilations = strides or [1] * rank, dilations or [1] * rank
        pads = pads or [0] * (2 * rank)
        geometry = [
            _pool_axis(
                sizes[i],
                kernel_shape[i],
                strides[i],
                dilations[i],
                pads[i],
                pads[rank + i],
                auto_pad,
                ceil_mode,
            )
            for i in range(rank)
        ]
        taps = _taps(geometry)
        inside = np.logical_and.reduce([(t >= 0) & (t < n) for t, n in zip(taps, sizes)])
        windows = x[(Ellipsis, *(np.clip(t, 0, n - 1) for t, n in zip(taps, sizes)))]
        out = tuple(g.out for g in geometry)
        windows, inside = windows.reshape(*x.shape[:2], *out, -1), inside.reshape(*out, -1)
        if self.onnx_node.op_type == "AveragePool":
            padded = np.logical_and.reduce(
                [t < n + g.end for t, n, g in zip(taps, sizes, geometry)]
            )
            counted = padded.reshape(*out, -1) if count_include_pad else inside
            total = np.where(inside, windows, 0).sum(axis=-1, dtype=np.float64)
            return ((total / counted.sum(axis=-1)).astype(x.dtype),)
        lowest = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
        values = np.where(inside, windows, lowest)
        y = values.max(axis=-1).astype(x.dtype)
        if len(self.onnx_node.output) < 2 or not self.onnx_node.output[1]:
            return (y,)
        return y, _argmax_indices(values, taps, sizes, storage_order)


class _Axis(NamedTuple):
    """One spatial axis of a pooling: its pads, output length and window."""

    begin: int
    end: int
    out: int
    kernel: int
    stride: int
    dilation: int


def _pool_axis(
    length: int,
    kernel: int,
    stride: int,
    dilation: int,
    begin: int,
    end: int,
    auto_pad: str,
    ceil_mode: int,
) -> _Axis:
    """Pads and output length along one spatial axis, by the spec's formulas."""
    span = (kernel - 1) * dilation + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-length // stride)
        total = max(0, (out - 1) * stride + span - length)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        return _Axis(begin, total - begin, out, kernel, stride, dilation)
    if auto_pad == "VALID":
        return _Axis(0, 0, (length - span) // stride + 1, kernel, stride, dilation)
    room = length + begin + end - span
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= length + begin:  # would start in the end padding
        out -= 1
    return _Axis(begin, end, out, kernel, stride, dilation)


def _taps(geometry: Sequence[_Axis]) -> list[np.ndarray]:
    """Per axis, the input index read by each (output position..., kernel tap...): arrays of
    shape ``(*out, *kernel)``; outside ``[0, length)`` is padding."""
    rank = len(geometry)
    shape = tuple(g.out for g in geometry) + tuple(g.kernel for g in geometry)
    taps = []
    for i, g in enumerate(geometry):
        index = (
            np.arange(g.out)[:, None] * g.stride
            + np.arange(g.kernel)[None, :] * g.dilation
            - g.begin
        )
        axes = [1] * (2 * rank)
        axes[i], axes[rank + i] = g.out, g.kernel
        taps.append(np.broadcast_to(index.reshape(axes), shape))
    return taps


def _argmax_indices(
    values: np.ndarray, taps: Sequence[np.ndarray], sizes: Sequence[int], storage_order: int
) -> np.ndarray:
    """MaxPool's Indices: the first maximum of each window as an index into the flattened
    input, (N, C, spatial) row major, or column major over the spatial axes."""
    best = values.argmax(axis=-1)[..., None]
    coords = [
        np.take_along_axis(
            np.broadcast_to(t.reshape(*best.shape[2:-1], -1), values.shape), best, axis=-1
        )[..., 0]
        for t in taps
    ]
    offset, step = np.zeros(best.shape[:-1], np.int64), 1
    for i in range(len(sizes)) if storage_order else reversed(range(len(sizes))):
        offset, step = offset + coords[i] * step, step * sizes[i]
    planes = values.shape[0] * values.shape[1]
    channel = np.arange(planes).reshape(*values.shape[:2], *[1] * len(sizes))
    return channel * step + offset


class MaxPool(_Pool):
    """Every opset: onnx's shape and padding faults (see :data:`onnxconv.reference.FIXED`)."""


class AveragePool(_Pool):
    """Every opset: onnx's ceil_mode and SAME-with-dilations faults (see
    :data:`onnxconv.reference.FIXED`)."""


# --- Softmax, LogSoftmax, Gemm -----------------------------------------------------------------


class Softmax(_Override):
    """Before opset 13 the input is coerced to 2-D, ``[prod(shape[:axis]), prod(shape[axis:])]``,
    and normalised along the second dimension."""

    log = False

    def fixes(self) -> bool:
        return self.opset < 13

    def _run(self, x: np.ndarray, axis: int = 1) -> tuple[np.ndarray]:
        flat = x.reshape(int(np.prod(x.shape[: axis % x.ndim])), -1)
        shifted = flat - flat.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        y = shifted - np.log(total) if self.log else exp / total
        return (y.reshape(x.shape).astype(x.dtype),)


class LogSoftmax(Softmax):
    """As :class:`Softmax`, the logarithm."""

    log = True


class Gemm(_Override):
    """Before opset 7: ``Y = alpha * A' B' + beta * C`` whether or not C broadcasts."""

    def fixes(self) -> bool:
        return self.opset < 7

    def _run(
        self,
        a: np.ndarray,
        b: np.ndarray,
        c: np.ndarray | None = None,
        alpha: float = 1.0,
        beta: float = 1.0,
        transA: int = 0,
        transB: int = 0,
        broadcast: int = 0,
    ) -> tuple[np.ndarray]:
        y = alpha * ((a.T if transA else a) @ (b.T if transB else b))
        if c is not None:
            if not broadcast and c.shape != y.shape:
                raise ValueError(
                    f"Gemm-{self.opset}: C {c.shape} is not Y's shape {y.shape} and broadcast is 0"
                )
            y = y + beta * c
        return (y.astype(a.dtype),)


# --- Resize, Upsample --------------------------------------------------------------------------

_COORDINATES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "asymmetric": lambda x, scale: x / scale,
    "tf_half_pixel_for_nn": lambda x, scale: (x + 0.5) / scale,
}
_ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "round_prefer_floor": lambda v: np.ceil(v - 0.5),
    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def _resize(
    x: np.ndarray,
    scales: Sequence[float],
    sizes: Sequence[int] | None,
    mode: str,
    coordinates: str,
    nearest_mode: str,
) -> np.ndarray:
    """One axis at a time: output length ``sizes`` or ``floor(length * scale)``; each output
    index maps to ``x_original`` (``coordinates``), which ``nearest`` rounds (``nearest_mode``)
    and ``linear`` interpolates between its two neighbours, clamped to the edges. An axis of
    scale 1 is kept as it is, as onnxruntime does."""
    if sizes is not None and len(sizes):
        scales = [int(o) / n for o, n in zip(sizes, x.shape)]
    y = x
    for axis, scale in enumerate(scales):
        n, scale = y.shape[axis], float(scale)
        n_out = int(sizes[axis]) if sizes is not None and len(sizes) else int(np.floor(n * scale))
        if n_out == n and scale == 1:  # left as it is (tf_half_pixel_for_nn would shift it)
            continue
        original = _COORDINATES[coordinates](np.arange(n_out, dtype=np.float64), scale)
        if mode == "nearest":
            index = np.clip(_ROUNDING[nearest_mode](original), 0, n - 1).astype(np.int64)
            y = np.take(y, index, axis=axis)
        elif mode == "linear":
            original = np.clip(original, 0, n - 1)
            low = np.floor(original).astype(np.int64)
            weight = (original - low).reshape([-1 if a == axis else 1 for a in range(y.ndim)])
            high = np.take(y, np.minimum(low + 1, n - 1), axis=axis)
            y = np.take(y, low, axis=axis) * (1 - weight) + high * weight
        else:
            raise NotImplementedError(f"mode {mode!r} with coordinates {coordinates!r}")
    return y.astype(x.dtype)


class Resize(_Override):
    """Resize-10 (inputs X, scales; asymmetric coordinates) and Resize-11/12 with
    ``tf_half_pixel_for_nn``; onnx's implementation otherwise."""

    def fixes(self) -> bool:
        return self.opset < 11 or (
            self.opset < 13 and self.coordinate_transformation_mode == "tf_half_pixel_for_nn"
        )

    def _run(
        self,
        x: np.ndarray,
        *inputs: np.ndarray | None,
        mode: str = "nearest",
        coordinate_transformation_mode: str = "asymmetric",
        nearest_mode: str = "floor",
        **_unused: Any,
    ) -> tuple[np.ndarray]:
        if self.opset < 11:
            scales, sizes = inputs[0], None
        else:  # X, roi, scales, sizes
            scales, sizes = inputs[1], inputs[2] if len(inputs) > 2 else None
        return (_resize(x, scales, sizes, mode, coordinate_transformation_mode, nearest_mode),)


class Upsample(_Override):
    """Upsample-7 (scales attribute) and 9/10 (scales input): Resize-10's rule."""

    def fixes(self) -> bool:
        return self.opset >= 7

    def _run(
        self, x: np.ndarray, scales: np.ndarray | Sequence[float], mode: str = "nearest"
    ) -> tuple[np.ndarray]:
        return (_resize(x, scales, None, mode, "asymmetric", "floor"),)


# --- Pad ---------------------------------------------------------------------------------------


class Pad(_Override):
    """Every opset: negative pads crop (then the others pad), which onnx's evaluator refuses."""

    def _run(
        self,
        data: np.ndarray,
        pads: Sequence[int] | None = None,
        constant_value: Any = None,
        axes: Sequence[int] | None = None,
        mode: str = "constant",
        value: float = 0.0,
        paddings: Sequence[int] | None = None,
    ) -> tuple[np.ndarray]:
        pads = [int(p) for p in (paddings if pads is None else pads)]
        axes = range(data.ndim) if axes is None else [int(a) % data.ndim for a in axes]
        crop, width = [slice(None)] * data.ndim, [(0, 0)] * data.ndim
        for i, axis in enumerate(axes):
            begin, end = pads[i], pads[len(axes) + i]
            crop[axis] = slice(max(-begin, 0), data.shape[axis] - max(-end, 0))
            width[axis] = (max(begin, 0), max(end, 0))
        cropped = data[tuple(crop)]
        if mode == "constant":
            fill = value if constant_value is None else constant_value
            return (np.pad(cropped, width, constant_values=fill).astype(data.dtype),)
        return (np.pad(cropped, width, mode=mode).astype(data.dtype),)


# --- QuantizeLinear / DequantizeLinear --------------------------------------------------------


def _along(param: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-tensor (scalar) or per-axis (1-D) quantization parameter, shaped to broadcast."""
    if param.ndim == 0 or param.size == 1 and ndim == 0:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = param.size
    return param.reshape(shape)


class _QuantizationOp(_Override):
    """QuantizeLinear and DequantizeLinear before opset 19, which onnx does not implement:
    per tensor, or from opset 13 along ``axis``; :meth:`compute` has the op's formula."""

    def fixes(self) -> bool:
        return self.opset < 19

    def _run(
        self,
        x: np.ndarray,
        scale: np.ndarray,
        zero_point: np.ndarray | None = None,
        axis: int = 1,
    ) -> tuple[np.ndarray]:
        scale = _along(np.asarray(scale), x.ndim, axis)
        zero = 0 if zero_point is None else _along(np.asarray(zero_point), x.ndim, axis)
        return (self.compute(x, scale, zero, zero_point),)

    def compute(
        self, x: np.ndarray, scale: np.ndarray, zero: Any, zero_point: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError


class DequantizeLinear(_QuantizationOp):
    """y = (x - zero_point) * scale, computed in the scale's type, as ONNX Runtime does."""

    def compute(
        self, x: np.ndarray, scale: np.ndarray, zero: Any, zero_point: np.ndarray | None
    ) -> np.ndarray:
        zero = np.asarray(zero, dtype=np.int64)
        return ((x.astype(np.int64) - zero).astype(scale.dtype) * scale).astype(scale.dtype)


class QuantizeLinear(_QuantizationOp):
    """y = saturate(round(x / scale) + zero_point), rounding half to even; uint8 without a zero
    point. x / scale in x's type, as ONNX Runtime computes it: at a .5 boundary a wider type
    would round the other way."""

    def compute(
        self, x: np.ndarray, scale: np.ndarray, zero: Any, zero_point: np.ndarray | None
    ) -> np.ndarray:
        dtype = np.uint8 if zero_point is None else np.asarray(zero_point).dtype
        y = np.rint(x / scale.astype(x.dtype)) + np.asarray(zero, dtype=x.dtype)
        info = np.iinfo(dtype)
        return np.clip(y, info.min, info.max).astype(dtype)


OVERRIDES: list[type[OpRun]] = [
    BatchNormalization,
    MaxPool,
    AveragePool,
    Softmax,
    LogSoftmax,
    Gemm,
    Resize,
    Upsample,
    Pad,
    DequantizeLinear,
    QuantizeLinear,
]
