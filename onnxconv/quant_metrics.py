"""Accuracy of an int8 output against its fp32 source: metrics, tolerances, verdict.

Elementwise tolerances (:mod:`onnxconv.parity`) do not fit quantization: int8 rounding moves
every element by up to half a step, so the question is not "is each element close" but "how
much noise did quantization add, relative to the signal". The metrics here answer that:

- ``sqnr_db``: signal-to-quantization-noise ratio, ``10*log10(sum(ref^2) / sum((ref-got)^2))``
  (``inf`` when identical). One uint8 rounding of a tensor spread over its calibrated range
  costs ~35-43 dB (measured on the zoo); every quantized layer adds noise, so it falls with
  depth.
- ``cosine``: cosine similarity of the flattened arrays (direction only: blind to a scale
  error, which ``sqnr_db`` and the error ratios catch).
- ``max_abs_over_range``, ``mean_abs_over_range``: ``|ref - got|`` max and mean divided by the
  output range ``max(ref) - min(ref)``; one int8 step of an output quantized over its range is
  ``1/255`` of it (~0.0039). ``max_abs`` catches a few wild elements that SQNR averages away.
- ``mean_error_over_range``: ``|mean(got - ref)|`` over the output range: a bias. Rounding is
  unbiased, so correct int8 leaves it near 0 whatever its noise; an off-by-one zero point moves
  every element one step the same way (~0.0039).
- ``top1`` / ``top5``: only for classifier outputs (2-D ``[N, classes]`` with ``classes >= 10``):
  the fraction of rows whose int8 top-1 class is the fp32 top-1 class, and whose fp32 top-1
  class is among the int8 top-5 classes (top-5 accuracy with the fp32 model as ground truth).

Every metric is computed in float64 over the whole array; a non-finite value in either array
makes ``sqnr_db`` and ``cosine`` NaN and the error ratios ``inf``, which fail every bound.

Tolerances (:data:`TOLERANCES`) are floors/ceilings for correct per-channel int8 (MinMax
calibration, uint8 activations, symmetric int8 weights) of one block of the zoo, with margin;
the comments at the table give the measurements they rest on. :func:`judge` turns metrics into
``"pass"``/``"fail"`` plus one line per violated bound.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from onnxconv.errors import UserInputError, did_you_mean

#: A 2-D output ``[N, classes]`` with at least this many classes is a classifier's logits.
MIN_CLASSES = 10


@dataclass(frozen=True)
class QuantMetrics:
    """How far an int8 output is from the fp32 output it replaces (see module docstring)."""

    sqnr_db: float
    cosine: float
    max_abs_over_range: float
    mean_abs_over_range: float
    top1: float | None = None
    """Fraction of rows whose top-1 class agrees; ``None`` when the output is no classifier's."""
    top5: float | None = None
    """Fraction of rows whose fp32 top-1 class is in the int8 top-5; ``None`` likewise."""
    size: int = 0
    mean_error_over_range: float | None = None
    """``|mean(got - ref)|`` over the output range: a systematic bias (None in reports written
    before it)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) for k, v in asdict(self).items()}


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf" / "-inf" / "nan": JSON has no literal for them
    return value


def sqnr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    """``10*log10(sum(ref^2) / sum((ref - got)^2))`` in float64; ``inf`` when the arrays are
    equal, ``-inf`` when the reference is all zeros but ``actual`` is not, ``nan`` for
    non-finite inputs."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    if not (np.isfinite(ref).all() and np.isfinite(got).all()):
        return math.nan
    noise = float(np.sum((ref - got) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _topk_agreement(reference: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    ref_top1 = np.argmax(reference, axis=1)
    got_top1 = np.argmax(actual, axis=1)
    # stable sort: ties resolve the same way every run
    got_top5 = np.argsort(-actual, axis=1, kind="stable")[:, :5]
    top1 = float(np.mean(ref_top1 == got_top1))
    top5 = float(np.mean(np.any(got_top5 == ref_top1[:, None], axis=1)))
    return top1, top5


def is_classifier_output(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 and shape[1] >= MIN_CLASSES


def quant_metrics(reference: np.ndarray, actual: np.ndarray) -> QuantMetrics:
    """Metrics of ``actual`` (int8 model) against ``reference`` (fp32 source), same shape."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    if ref.shape != got.shape:
        raise UserInputError(
            f"int8 output shape {list(got.shape)} differs from the fp32 shape {list(ref.shape)}"
        )
    if ref.size == 0:
        raise UserInputError("cannot measure quantization error of an empty output")
    top1 = top5 = None
    if is_classifier_output(ref.shape):
        top1, top5 = _topk_agreement(ref, got)
    if not (np.isfinite(ref).all() and np.isfinite(got).all()):
        return QuantMetrics(
            math.nan, math.nan, math.inf, math.inf, top1, top5, int(ref.size), math.inf
        )
    err = np.abs(ref - got)
    span = float(ref.max() - ref.min())
    norms = float(np.linalg.norm(ref) * np.linalg.norm(got))
    if norms == 0.0:
        cosine = 1.0 if not err.any() else 0.0
    else:
        cosine = float(np.dot(ref.ravel(), got.ravel()) / norms)
    bias = abs(float(np.mean(got - ref)))
    if span == 0.0:  # a constant output: any error is infinitely large relative to no range
        max_rel = 0.0 if not err.any() else math.inf
        mean_rel = bias_rel = max_rel
    else:
        max_rel = float(err.max()) / span
        mean_rel = float(err.mean()) / span
        bias_rel = bias / span
    return QuantMetrics(
        sqnr_db=sqnr_db(ref, got),
        cosine=cosine,
        max_abs_over_range=max_rel,
        mean_abs_over_range=mean_rel,
        top1=top1,
        top5=top5,
        size=int(ref.size),
        mean_error_over_range=bias_rel,
    )


@dataclass(frozen=True)
class Bound:
    """``metric >= value`` (``at_least``) or ``metric <= value``."""

    value: float
    at_least: bool

    def holds(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        return measured >= self.value if self.at_least else measured <= self.value

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:g}"


# Tolerances for one quantized block's output (a few quantized tensors in series, like every
# committed zoo graph). Measured with per-channel int8 from :func:`onnxconv.int8.quantize_static`
# (MinMax on 8 seeded normal feeds, uint8 activations, symmetric int8 weights; onnxruntime 1.32
# CPU, AVX512-VNNI), against PyTorch on 4 fresh feeds; per-tensor weights gave the same numbers
# to within 0.15 dB on every graph (random weights have equal ranges in every channel):
#
#   variant             QDQ pairs  SQNR dB  cosine   max/range  mean/range
#   standard                2       36.2    0.99988   0.0074     0.00138
#   pointwise               2       36.0    0.99987   0.0075     0.00148
#   flattened               4       31.2    0.99962   0.0867     0.00138
#   inception               9       37.6    0.99991   0.1064     0.00069
#   depthwise               2       36.2    0.99988   0.0204     0.00122
#   separable               3       34.0    0.99980   0.0245     0.00169
#   grouped                 2       36.0    0.99988   0.0545     0.00121
#   shuffle_unit            8       37.6    0.99991   0.0483     0.00109
#   shuffle_unit_s2         9       31.6    0.99965   0.0164     0.00173
#   shufflenet_v2_unit     10       35.7    0.99987   0.0102     0.00107
#
# Whole random-weight networks are out of scope (see the int8 tests' docstring): with drawn
# BatchNorm statistics their output no longer depends on the input, and with measured
# statistics (as the zoo builds its networks) a 40 dB perturbation of the *input alone* leaves
# 10-14 dB at the logits, so correct int8 (every QDQ pair 35-43 dB on its own) ends at 5-9 dB.
TOLERANCES: dict[str, Bound] = {
    # One uint8 requantization of a tensor spanning ~9 sigma costs ~40 dB; a block stacks a few
    # of them plus weight rounding: 31-38 dB measured. 25 dB (noise rms 5.6 % of the signal)
    # keeps 6 dB under the worst graph; a scale x2 in any one pair lands at 0-16 dB.
    "sqnr_db": Bound(25.0, at_least=True),
    # 1 - cos ~ noise/(2*signal) for small zero-mean noise: 25 dB <-> 0.9984. Worst measured
    # 0.99962. Scale-blind on purpose: it separates "wrong direction" from "wrong magnitude".
    "cosine": Bound(0.998, at_least=True),
    # Dominated by saturation: MinMax calibrates the range on finite data, and a fresh input
    # beyond it clips (flattened: output -1.51 vs calibrated -1.26 = 23 steps; inception 0.11
    # of the range). 0.25 allows ~2x the worst clipping seen; a gross error exceeds it.
    "max_abs_over_range": Bound(0.25, at_least=False),
    # Noise per element, consistent with the SQNR floor: correct zoo blocks 0.0007-0.0017 of
    # the range, realistic ones at 25-28 dB (MobileNetV3 and EfficientNet blocks with
    # squeeze-and-excitation, trained-scale random weights) up to 0.0031. It was 0.0025, set
    # to catch a one-step bias, and failed those correct blocks; the bias is the next bound's.
    "mean_abs_over_range": Bound(0.005, at_least=False),
    # A systematic bias: |mean error| of correct int8, 10 zoo blocks and 11 realistic ones
    # (MobileNetV2/V3, EfficientNet, ShuffleNetV2, ResNeXt, RegNet blocks), 0.00000-0.00009 of
    # the range; an off-by-one zero point at the output 0.0036-0.0044 (one step: 0.0039). A
    # quarter step (0.001) sits 11x above the one and 3.6x below the other.
    "mean_error_over_range": Bound(0.001, at_least=False),
    # Logits at the SQNR floor: i.i.d. Gaussian logits plus noise at 25 dB keep top-1 in
    # 0.90 (1000 classes) to 0.95 (10 classes) of rows and top-5 in >= 0.9997 (simulated,
    # 20 000 rows); these bounds ask no more than the SQNR floor implies. Meaningful from
    # ~50 rows: with a batch of 8, one flipped row is 0.125.
    "top1": Bound(0.90, at_least=True),
    "top5": Bound(0.99, at_least=True),
}


@dataclass(frozen=True)
class Judgement:
    status: str
    """``"pass"`` or ``"fail"``."""
    reasons: tuple[str, ...]
    """One line per violated bound (empty when passing)."""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": list(self.reasons)}


def judge(
    metrics: QuantMetrics, tolerances: dict[str, Bound] | None = None, *, name: str = "output"
) -> Judgement:
    """Check ``metrics`` against ``tolerances`` (default :data:`TOLERANCES`); a metric that is
    ``None`` (top-k of a non-classifier output) is not judged."""
    tolerances = TOLERANCES if tolerances is None else tolerances
    unknown = set(tolerances) - set(asdict(metrics))
    if unknown:
        raise UserInputError(f"no such quantization metric(s): {', '.join(sorted(unknown))}")
    reasons = []
    for metric, bound in tolerances.items():
        measured = getattr(metrics, metric)
        if measured is None or bound.holds(measured):
            continue
        reasons.append(f"{name}: {metric} = {measured:.4g}, expected {bound.describe()}")
    return Judgement("fail" if reasons else "pass", tuple(reasons))


#: What ``--accuracy-budget default`` means, and what the metrics a budget does not name keep.
BUDGET_DEFAULT = "default"


def parse_budget(text: str) -> dict[str, Bound]:
    """An accuracy budget from ``metric=value,...`` (e.g. ``sqnr_db=30,top1=0.99``): each named
    metric's bound replaces the one in :data:`TOLERANCES`, in the same direction (a floor for
    ``sqnr_db``, ``cosine``, ``top1``, ``top5``; a ceiling for the error ratios); the metrics it
    does not name keep :data:`TOLERANCES`, so naming one metric never drops the others.
    ``default`` is :data:`TOLERANCES` unchanged."""
    budget = dict(TOLERANCES)
    if text.strip() == BUDGET_DEFAULT:
        return budget
    named: set[str] = set()
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in TOLERANCES:
            raise UserInputError(
                f"accuracy budget {item.strip()!r}: expected metric=value with a metric among "
                f"{', '.join(TOLERANCES)} (or the word {BUDGET_DEFAULT!r})"
                f"{did_you_mean(name, TOLERANCES)}"
            )
        if name in named:
            raise UserInputError(f"accuracy budget {text!r}: {name} is named twice")
        named.add(name)
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UserInputError(f"accuracy budget {item.strip()!r}: {value!r} is not a number")
        low, high = _BUDGET_RANGE.get(name, (-math.inf, math.inf))
        if not low <= number <= high:
            raise UserInputError(
                f"accuracy budget {item.strip()!r}: {name} lies between {low:g} and {high:g}"
            )
        budget[name] = Bound(number, TOLERANCES[name].at_least)
    return budget


#: The values each metric can take (a bound outside them judges nothing, or everything).
_BUDGET_RANGE = {
    "cosine": (-1.0, 1.0),
    "top1": (0.0, 1.0),
    "top5": (0.0, 1.0),
    "max_abs_over_range": (0.0, math.inf),
    "mean_abs_over_range": (0.0, math.inf),
    "mean_error_over_range": (0.0, math.inf),
}


def describe_budget(budget: dict[str, Bound]) -> str:
    """``sqnr_db >= 30, cosine >= 0.998, ...``"""
    return ", ".join(f"{name} {bound.describe()}" for name, bound in budget.items())


def budget_spec(budget: dict[str, Bound]) -> str:
    """``sqnr_db=30,cosine=0.998,...``: every bound, as :func:`parse_budget` reads it back."""
    return ",".join(f"{name}={bound.value!r}" for name, bound in budget.items())
