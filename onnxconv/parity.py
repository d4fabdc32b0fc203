"""Compare arrays -> :class:`ParityResult` (metrics and a verdict).

Verdict
-------
An element *fails* when ``|actual - reference| > atol + rtol * |reference|`` (the
``numpy.isclose`` convention: the tolerance scales with the *reference*, so the comparison
is not symmetric). Non-finite values follow ``numpy.isclose(equal_nan=True)``: NaN matches
NaN at the same index, ``+inf`` matches ``+inf``; every other pairing involving a NaN or an
inf fails. So a NaN in ``actual`` where the reference is finite is always a failure. A shape
mismatch is a failure with a reason, never an exception.

Default tolerances (:func:`default_tolerance`)
----------------------------------------------

==========  ===================  ======  ======  ==============================================
precision   ep                   atol    rtol    why
==========  ===================  ======  ======  ==============================================
fp32        cpu                  1e-4    1e-3    Same IEEE fp32 math as the reference, only the
                                                 summation order differs (MLAS blocking,
                                                 im2col vs direct, fused Conv+BN): a few ulps
                                                 times sqrt(K) for K = C_in/g * k * k terms.
fp32        cuda / other EPs     5e-4    2e-3    TF32 is off (``use_tf32=0``), but cuDNN's
                                                 EXHAUSTIVE search may pick FFT or Winograd
                                                 algorithms, whose transforms round
                                                 differently from a direct sum.
fp16        any                  1e-2    1e-2    fp16 has an 11-bit significand, unit roundoff
                                                 u = 2**-11 ~ 4.9e-4. Inputs, weights and every
                                                 activation are rounded (>= 3u per layer), and a
                                                 conv output sums K = C*k*k products: the
                                                 random-walk error is ~ sqrt(K)*u*|x||w|, e.g.
                                                 K = 288 -> ~17u ~ 8e-3 of the output scale.
==========  ===================  ======  ======  ==============================================

These are floors for one block of a few layers; deep networks compound the error, so callers
may pass a looser :class:`Tolerance` per output.

Metrics
-------
All metrics are computed in float64 over the elements where both arrays are finite
(non-finite values are counted separately in ``nan_*`` / ``inf_*``):

- ``max_abs``, ``mean_abs``, ``rms``: of ``|actual - reference|``.
- ``max_rel``: max of ``|actual - reference| / max(|reference|, REL_EPS)`` with
  ``REL_EPS = 1e-12``. The guard only avoids division by zero; near zero the relative error
  is not meaningful (it can be huge), which is why the verdict uses ``atol + rtol*|ref|``.
- ``cosine``: cosine similarity of the flattened arrays (1.0 when both are all zeros, 0.0 when
  exactly one is).
- ``histogram``: counts of ``|actual - reference|`` in fixed log10 bins with edges
  ``[0, 1e-12, 1e-11, ..., 1e2, inf]``; a non-finite mismatch counts as an infinite error and a
  non-finite match (NaN vs NaN, inf vs inf) as zero error, so the counts sum to ``size``.
- ``worst``: the element with the largest ratio ``|a - r| / (atol + rtol*|r|)`` (how many times
  over its allowed error); a non-finite mismatch beats any finite one. When ``n_bad > 0`` the
  worst element is always one of the bad ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from onnxconv import precisions
from onnxconv.errors import UserInputError

REL_EPS = 1e-12
"""Guard in the denominator of the relative error: ``|a - r| / max(|r|, REL_EPS)``."""

HISTOGRAM_EDGES: tuple[float, ...] = (0.0,) + tuple(10.0**e for e in range(-12, 3)) + (math.inf,)
"""Fixed bin edges of the absolute-error histogram: 0, 1e-12, 1e-11, ..., 1e2, inf."""


@dataclass(frozen=True)
class Tolerance:
    """An element fails when ``|actual - reference| > atol + rtol * |reference|``."""

    atol: float
    rtol: float

    def __post_init__(self) -> None:
        for label, value in (("atol", self.atol), ("rtol", self.rtol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UserInputError(
                    f"tolerance {label} must be a finite number >= 0, got {value!r}"
                )

    def __str__(self) -> str:
        return f"atol={self.atol:g} rtol={self.rtol:g}"

    def to_dict(self) -> dict[str, float]:
        return {"atol": float(self.atol), "rtol": float(self.rtol)}


_DEFAULT_TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("fp32", "cpu"): Tolerance(atol=1e-4, rtol=1e-3),
    ("fp32", "*"): Tolerance(atol=5e-4, rtol=2e-3),
    ("fp16", "*"): Tolerance(atol=1e-2, rtol=1e-2),
}


def default_tolerance(precision: str, ep: str) -> Tolerance:
    """Tolerance for outputs computed at ``precision`` on ``ep`` (see the module table): every
    fp16 deployment (``fp16``, ``fp16-io``, ``fp16-onnxconv``) shares fp16's. int8 is not judged
    element by element (:mod:`onnxconv.quant_metrics`)."""
    spec = precisions.get(precision)
    if spec.family != "float":
        raise UserInputError(
            f"precision {precision} is judged by quantization metrics, not by a tolerance"
        )
    precision = "fp16" if precision.startswith("fp16") else precision
    key = (precision, ep) if (precision, ep) in _DEFAULT_TOLERANCES else (precision, "*")
    return _DEFAULT_TOLERANCES[key]


def graph_tolerance(model: Any, precision: str, ep: str) -> Tolerance:
    """:func:`default_tolerance`, except for a graph brought at a lower precision than its
    target's (:func:`onnxconv.precisions.computes_in`): a float16 graph gets fp16's; a quantized
    one fp32's plus one quantization step of its outputs (the largest scale of a
    DequantizeLinear that gives an output, fp16's where none does), since a float difference
    too small to see moves a value across a rounding boundary, by one whole step."""
    tol = default_tolerance(precision, ep)
    native = precisions.computes_in(model)
    if precision != "fp32" or native == "fp32":
        return tol
    if native == "fp16":
        return default_tolerance("fp16", ep)
    from onnx import numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    steps = [
        float(np.max(np.abs(numpy_helper.to_array(weights[n.input[1]]))))
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.output[0] in outputs and n.input[1] in weights
    ]
    if not steps:
        return default_tolerance("fp16", ep)
    return Tolerance(atol=tol.atol + max(steps), rtol=tol.rtol)


@dataclass(frozen=True)
class WorstElement:
    """The element furthest outside (or closest to) its tolerance."""

    index: tuple[int, ...]
    actual: float
    reference: float
    abs_err: float
    tol_ratio: float
    """``abs_err / (atol + rtol*|reference|)``; > 1 means the element fails."""


@dataclass(frozen=True)
class ErrorHistogram:
    """Counts of ``|actual - reference|`` per bin ``[edges[i], edges[i+1])`` (last bin closed)."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass
class ParityResult:
    """Everything known about one comparison; ``passed`` is the verdict."""

    name: str
    passed: bool
    reason: str | None
    """One line saying why it failed; ``None`` when it passed."""
    shape: tuple[int, ...]
    reference_shape: tuple[int, ...]
    dtype: str
    reference_dtype: str
    tolerance: Tolerance
    size: int = 0
    max_abs: float | None = None
    max_rel: float | None = None
    mean_abs: float | None = None
    rms: float | None = None
    cosine: float | None = None
    n_bad: int = 0
    frac_bad: float = 0.0
    worst: WorstElement | None = None
    nan_actual: int = 0
    inf_actual: int = 0
    nan_reference: int = 0
    inf_reference: int = 0
    histogram: ErrorHistogram | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only; non-finite floats become ``None`` (JSON has no NaN)."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def _fmt(x: float) -> str:
    return f"{x:.6g}"


#: Elements compared at a time: the float64 temporaries of a chunk stay in cache, and a
#: comparison of gigabyte outputs (a large batch) needs megabytes, not gigabytes, beside them.
CHUNK = 1 << 14


def finite_rms(array: np.ndarray) -> float:
    """The root mean square of the finite elements of ``array`` in float64 (0.0 when none is),
    chunk by chunk (no float64 copy of a large array)."""
    flat = np.asarray(array).reshape(-1)
    total, count = 0.0, 0
    for begin in range(0, flat.size, CHUNK):
        values = flat[begin : begin + CHUNK].astype(np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            values = values[finite]
        total += float(np.dot(values, values))
        count += values.size
    return math.sqrt(total / count) if count else 0.0


_LOWER_EDGES = np.asarray(HISTOGRAM_EDGES[:-1])


def _bin_counts(errors: np.ndarray) -> np.ndarray:
    """Counts of ``errors`` (non-negative, no NaN) in the histogram's bins, bin ``k`` holding
    ``edges[k] <= e < edges[k + 1]``: the number at or above each lower edge, differenced (a
    comparison per edge up to the largest error costs a fraction of a binary search each)."""
    at_least = np.zeros(len(_LOWER_EDGES) + 1, dtype=np.int64)
    at_least[0] = errors.size
    top = errors.max() if errors.size else 0.0
    for k in range(1, len(_LOWER_EDGES)):
        if _LOWER_EDGES[k] > top:
            break
        at_least[k] = np.count_nonzero(errors >= _LOWER_EDGES[k])
    return at_least[:-1] - at_least[1:]


class _Accumulator:
    """The metrics of :func:`compare`, accumulated chunk by chunk over the flattened arrays."""

    def __init__(self, tol: Tolerance) -> None:
        self.tol = tol
        self.n_bad = self.n_finite = self.nan_new = 0
        self.nan_actual = self.inf_actual = self.nan_reference = self.inf_reference = 0
        self.counts = np.zeros(len(HISTOGRAM_EDGES) - 1, dtype=np.int64)
        self.max_abs = self.max_rel = 0.0
        self.sum_abs = self.sum_sq = self.dot = self.norm_a = self.norm_r = 0.0
        self.worst_at, self.worst_ratio, self.worst_err = 0, -1.0, 0.0

    def add(self, actual: np.ndarray, reference: np.ndarray, offset: int) -> None:
        a = actual.astype(np.float64)
        r = reference.astype(np.float64)
        # A NaN or infinity anywhere makes the sum non-finite (finite float64 values of a chunk
        # cannot overflow it unless they are near 1e308; then the general path runs, no harm).
        with np.errstate(invalid="ignore", over="ignore"):
            finite = math.isfinite(float(a.sum()) + float(r.sum()))
        if finite:
            self._add_finite(a, r, offset)
            return
        nan_a, nan_r = np.isnan(a), np.isnan(r)
        inf_a, inf_r = np.isinf(a), np.isinf(r)
        finite = ~(nan_a | nan_r | inf_a | inf_r)
        nonfinite_match = (nan_a & nan_r) | (inf_a & inf_r & (a == r))
        nonfinite_bad = ~finite & ~nonfinite_match
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.where(finite, np.abs(a - r), 0.0)
            allowed = self.tol.atol + self.tol.rtol * np.where(finite, np.abs(r), 0.0)
        bad = (finite & (err > allowed)) | nonfinite_bad
        self.n_bad += int(np.count_nonzero(bad))
        self.nan_new += int(np.count_nonzero(nan_a & ~nan_r))
        self.nan_actual += int(np.count_nonzero(nan_a))
        self.inf_actual += int(np.count_nonzero(inf_a))
        self.nan_reference += int(np.count_nonzero(nan_r))
        self.inf_reference += int(np.count_nonzero(inf_r))

        # Non-finite mismatches are infinite errors, non-finite matches zero errors.
        errors = np.where(nonfinite_bad, np.inf, err)
        self.counts += _bin_counts(errors)

        n_finite = int(np.count_nonzero(finite))
        if n_finite:
            all_finite = n_finite == a.size
            e = err if all_finite else err[finite]
            rf, af = (r, a) if all_finite else (r[finite], a[finite])
            self._add_sums(e, af, rf, np.abs(rf))

        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(finite, err / allowed, 0.0)  # allowed == 0 only if atol == r == 0
        ratio = np.where(finite & (err == 0), 0.0, ratio)
        self._note_worst(np.where(nonfinite_bad, np.inf, ratio), errors, offset)

    def _add_sums(self, err: np.ndarray, a: np.ndarray, r: np.ndarray, abs_r: np.ndarray) -> None:
        """The maxima and sums over finite elements (``err``: their ``|a - r|``)."""
        self.n_finite += err.size
        self.max_abs = max(self.max_abs, float(err.max()))
        self.max_rel = max(self.max_rel, float((err / np.maximum(abs_r, REL_EPS)).max()))
        self.sum_abs += float(err.sum())
        self.sum_sq += float(np.dot(err, err))
        self.dot += float(np.dot(a, r))
        self.norm_a += float(np.dot(a, a))
        self.norm_r += float(np.dot(r, r))

    def _add_finite(self, a: np.ndarray, r: np.ndarray, offset: int) -> None:
        """:meth:`add` for a chunk whose elements are all finite in both arrays (nearly every
        chunk): the same metrics, without the masks that non-finite values need."""
        err = np.abs(a - r)
        abs_r = np.abs(r)
        allowed = self.tol.atol + self.tol.rtol * abs_r
        self.n_bad += int(np.count_nonzero(err > allowed))
        self.counts += _bin_counts(err)
        self._add_sums(err, a, r, abs_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = err / allowed  # allowed == 0 only where atol == r == 0
        if self.tol.atol == 0:
            ratio[err == 0] = 0.0
        self._note_worst(ratio, err, offset)

    def _note_worst(self, ratio: np.ndarray, err: np.ndarray, offset: int) -> None:
        """Keep the chunk's largest error-to-tolerance ratio if it beats every earlier chunk's:
        strictly, so the first maximum over all chunks wins (a non-finite mismatch: inf)."""
        flat = int(np.argmax(ratio))  # the chunk's first maximum
        if ratio[flat] > self.worst_ratio:
            self.worst_at, self.worst_ratio = offset + flat, float(ratio[flat])
            self.worst_err = float(err[flat])


def compare(
    actual: np.ndarray,
    reference: np.ndarray,
    tol: Tolerance,
    name: str = "output",
) -> ParityResult:
    """Compare ``actual`` against ``reference`` element-wise under ``tol``."""
    a_in = np.asarray(actual)
    r_in = np.asarray(reference)
    common = dict(
        name=name,
        shape=tuple(int(d) for d in a_in.shape),
        reference_shape=tuple(int(d) for d in r_in.shape),
        dtype=str(a_in.dtype),
        reference_dtype=str(r_in.dtype),
        tolerance=tol,
    )
    if a_in.shape != r_in.shape:
        return ParityResult(
            passed=False,
            reason=f"{name}: shape mismatch: actual {tuple(a_in.shape)} vs reference "
            f"{tuple(r_in.shape)}",
            size=int(a_in.size),
            **common,
        )
    for arr, label in ((a_in, "actual"), (r_in, "reference")):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise UserInputError(f"{name}: cannot compare {label} array of dtype {arr.dtype}")

    size = int(a_in.size)
    acc = _Accumulator(tol)
    a_flat, r_flat = a_in.reshape(-1), r_in.reshape(-1)
    for begin in range(0, size, CHUNK):
        acc.add(a_flat[begin : begin + CHUNK], r_flat[begin : begin + CHUNK], begin)
    n_bad = acc.n_bad
    histogram = ErrorHistogram(edges=HISTOGRAM_EDGES, counts=tuple(int(c) for c in acc.counts))

    max_abs = max_rel = mean_abs = rms = cosine = None
    if acc.n_finite:
        max_abs, max_rel = acc.max_abs, acc.max_rel
        mean_abs = acc.sum_abs / acc.n_finite
        rms = math.sqrt(acc.sum_sq / acc.n_finite)
        na, nr = math.sqrt(acc.norm_a), math.sqrt(acc.norm_r)
        if na == 0.0 and nr == 0.0:
            cosine = 1.0
        elif na == 0.0 or nr == 0.0:
            cosine = 0.0
        else:
            cosine = float(np.clip(acc.dot / (na * nr), -1.0, 1.0))

    worst = None
    if size:
        idx = tuple(int(i) for i in np.unravel_index(acc.worst_at, a_in.shape))
        actual_value, reference_value = float(a_in[idx]), float(r_in[idx])
        worst = WorstElement(
            index=idx,
            actual=actual_value,
            reference=reference_value,
            abs_err=acc.worst_err,
            tol_ratio=acc.worst_ratio,
        )

    passed = n_bad == 0
    reason = None
    if not passed:
        assert worst is not None
        parts = [f"{name}: {n_bad} of {size} elements outside {tol}"]
        nan_new = acc.nan_new
        if nan_new:
            parts.append(f"{nan_new} NaN in actual where the reference has none")
        parts.append(
            f"worst at {worst.index}: {_fmt(worst.actual)} vs {_fmt(worst.reference)}"
            f" (abs err {_fmt(worst.abs_err)})"
        )
        reason = "; ".join(parts)

    return ParityResult(
        passed=passed,
        reason=reason,
        size=size,
        max_abs=max_abs,
        max_rel=max_rel,
        mean_abs=mean_abs,
        rms=rms,
        cosine=cosine,
        n_bad=n_bad,
        frac_bad=(n_bad / size) if size else 0.0,
        worst=worst,
        nan_actual=acc.nan_actual,
        inf_actual=acc.inf_actual,
        nan_reference=acc.nan_reference,
        inf_reference=acc.inf_reference,
        histogram=histogram,
        **common,
    )


def within(actual: np.ndarray, reference: np.ndarray, tol: Tolerance) -> bool:
    """``compare(actual, reference, tol).passed`` without the metrics: stops at the first chunk
    holding an element outside ``tol``, so that arrays far apart cost a chunk, not a pass over
    gigabytes (the sensitivity check asks this of outputs that nearly always differ)."""
    a_in, r_in = np.asarray(actual), np.asarray(reference)
    if a_in.shape != r_in.shape:
        return False
    a_flat, r_flat = a_in.reshape(-1), r_in.reshape(-1)
    for begin in range(0, a_flat.size, CHUNK):
        a = a_flat[begin : begin + CHUNK].astype(np.float64)
        r = r_flat[begin : begin + CHUNK].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            ok = (
                np.isfinite(a) & np.isfinite(r) & (np.abs(a - r) <= tol.atol + tol.rtol * np.abs(r))
            )
        if ok.all():
            continue
        # as compare: a NaN matches a NaN, an infinity the same infinity
        matched = (np.isnan(a) & np.isnan(r)) | (np.isinf(a) & (a == r))
        if not (ok | matched).all():
            return False
    return True


__all__ = [
    "HISTOGRAM_EDGES",
    "REL_EPS",
    "ErrorHistogram",
    "ParityResult",
    "Tolerance",
    "WorstElement",
    "compare",
    "default_tolerance",
    "finite_rms",
    "within",
]
