"""The verdict on one output of one case: the sources decide, the executors are judged.

Two kinds of opinion look at every output, and they are not votes of the same kind:

- **Sources** say what the graph *should* compute: the PyTorch module it was exported from
  (``torch``) and the expected outputs stored beside it (``stored``). PyTorch decides where it
  exists; stored outputs decide where it does not, unless the user declared them untrusted.
- **Executors** run the graph *as written*: ONNX Runtime on the target under test, and onnx's
  reference evaluator (``reference_evaluator``, the spec in numpy, with onnxconv's fixes from
  :mod:`onnxconv.reference`).

=================  ======  ========================================================================
kind               status  when
=================  ======  ========================================================================
(none)             pass    ONNX Runtime matches the deciding source (or, with no source, the
                           reference evaluator) and every other opinion agrees.
``reference``      warn    ONNX Runtime matches the source, the reference evaluator does not: the
                           reference evaluator is suspect (the node type where it departs is named).
``stale_stored``   warn    The executors match PyTorch, the stored outputs do not: they are stale.
``nonfinite``      warn    The output holds NaN or Inf where the deciding opinion has them too.
``export``         fail    Both executors agree with each other but not with the source: the graph
                           is not what the source computes.
``runtime``        fail    ONNX Runtime on this target departs from the source and from the
                           reference evaluator, which agrees with the source.
``overflow``       fail    The reference evaluator, computing in the graph's own precision,
                           gives NaN or Inf where the source is finite: the graph as written
                           overflows (e.g. an fp16 graph), even where this target hides it by
                           computing in fp32 (ONNX Runtime's x86 CPU kernels do).
``disagreement``   fail    Source, ONNX Runtime and the reference evaluator all differ (or the
                           reference evaluator could not run): nobody can say which executor is
                           wrong, only that the target does not compute the source.
``executors``      fail    No source: ONNX Runtime and the reference evaluator differ (a warn when
                           the first departing node is a known reference-evaluator fault; the
                           caller decides that after localising).
``float16``        fail    A float16 deployment of the graph departs from the source (without
                           one, from the fp32 graph on the reference evaluator) beyond fp16's
                           tolerance. The fp32 graph is held to its source first (validate), so
                           what is left is the deployment's: float16's range or rounding, the
                           converter, or ONNX Runtime's float16 kernels. The reference evaluator
                           ran the fp32 graph, not this one, so it cannot say which. A departure
                           shaped like PyTorch's own in float16 (:data:`FP16_RMS_FACTOR`,
                           :data:`FP16_ELEMENT_FACTOR`) passes, saying so: float16's rounding.
=================  ======  ========================================================================

Only ``--stored untrusted`` turns a stored-output mismatch into something other than a decision,
and it says so in the note; nothing else turns a source mismatch into a pass, but fp32 rounding:
where a case's float64 result is at hand (:mod:`onnxconv.float64`), a departure no larger than
:data:`ROUNDING_FACTOR` times this computation's own fp32 rounding (its fp32 twin's distance from
the float64 result; :data:`ILL_CONDITIONED_FACTOR` times on a case fp32 cannot compute) passes,
where the deciding opinion itself lies that close to the float64 result, and the note gives the
figures. A deep network, trained-scale weights or an input far from the data make fp32 itself
miss a fixed tolerance there.

Tolerances: every comparison uses the target's :class:`~onnxconv.parity.Tolerance` with ``atol``
scaled by ``max(1, RMS of the opinion compared against)``: a convolution's absolute rounding error
grows with the magnitude of what it sums, so large activations get a proportionally larger atol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .parity import ParityResult, Tolerance, compare, finite_rms

ORT = "onnxruntime"
TORCH, STORED, REFERENCE = "torch", "stored", "reference_evaluator"
SOURCES = (TORCH, STORED)
"""Source opinions, in order of authority."""

FAIL_KINDS = ("export", "runtime", "overflow", "disagreement", "executors", "float16")
WARN_KINDS = ("reference", "stale_stored", "nonfinite")


#: A departure this many times the case's own fp32 rounding, or less, is rounding: two fp32
#: results of one function each lie within their rounding of its float64 result, so they differ
#: by up to twice the larger, and the one measured may be the smaller (a correct MobileNetV2:
#: twin 2.4e-4, ORT 2.9e-4 and the stored outputs 3.4e-4 from float64; they differed by 5.9e-4).
ROUNDING_FACTOR = 4.0
#: A case whose fp32 twin misses its float64 result by this many times the tolerance is one fp32
#: cannot compute well (EfficientNet-B0 and MobileNetV3 at trained scale on inputs of 8 sigma:
#: the twin 2.9-160x the tolerance; ORT 57x it where the twin was 2.9x) ...
ILL_CONDITIONED = 2.0
#: ... and there two fp32 executors' errors differ by more: a correct EfficientNet-B0's ORT was
#: 20x the reference evaluator's from float64 (its departure 14.6x that rounding), a correct
#: MobileNetV3's 4.8x PyTorch's (departure 5.7x); planted defects the rule must not excuse were
#: 61x (the input clamped to +-10, seen only on such inputs) to 2900x.
ILL_CONDITIONED_FACTOR = 20.0


#: A float16 deployment departs from PyTorch in fp32 as float16's rounding does where its
#: departure looks like PyTorch's own float16 result's: its RMS no more than this many times
#: that result's RMS departure ... (correct deployments of the zoo's MobileNet v1 and ShuffleNet,
#: trained-scale MobileNetV3-small, EfficientNet-B0 and ShuffleNet V2: 0.17-0.85; ORT keeps more
#: in fp32 than PyTorch's CPU half kernels; every logit x1.08, which a max-based bound of 2x
#: let pass, is about 4) ...
FP16_RMS_FACTOR = 1.5
#: ... and no element further than this many times PyTorch's own departure there, or than its
#: RMS departure where that is larger (correct deployments: 0.49-1.8 where they missed fp16's
#: tolerance, up to 2.9 on wide inputs where they met it; one logit of MobileNet v1 at 64x64
#: moved by 0.1, where PyTorch's float16 RMS departure is 0.031, is 3.2, and by 0.2, which a
#: max-based bound let pass, 6: an element's defect is measured against that element's
#: rounding, not against the worst rounding anywhere).
FP16_ELEMENT_FACTOR = 3.0


@dataclass(frozen=True)
class Float64:
    """One output's float64 result, and the opinion that computed the same function in fp32
    (its ``twin``: PyTorch, or the reference evaluator on the graph), whose distance from it is
    this case's own fp32 rounding; ``what`` says how it was computed."""

    value: np.ndarray
    twin: str
    what: str
    #: The case's inputs are onnxconv's own (generated), not the user's stored or given data.
    generated: bool = True


def scaled(tol: Tolerance, reference: np.ndarray) -> Tolerance:
    """``tol`` with atol multiplied by max(1, RMS of the finite elements of ``reference``)."""
    rms = finite_rms(reference)
    return Tolerance(tol.atol * max(1.0, rms), tol.rtol)


#: How a check's note begins where stored outputs declared untrusted disagree with ORT.
UNTRUSTED_DIFFER = "stored outputs (declared untrusted) differ"
#: How a check's note begins where a departure past the tolerance is the case's fp32 rounding.
WITHIN_ROUNDING = "within fp32 rounding"
WITHIN_FP16_ROUNDING = "within fp16 rounding"


def deciding_source(opinions: Mapping[str, Any], trust_stored: bool = True) -> str | None:
    """The source that decides: PyTorch where it exists, else trusted stored outputs, else none."""
    for source in SOURCES:
        if source in opinions and (source != STORED or trust_stored):
            return source
    return None


@dataclass
class OutputCheck:
    """One output of one case on one target, judged."""

    output: str
    status: str  # pass | warn | fail
    kind: str  # "" for a plain pass, else one of the kinds above
    note: str
    decided_by: str | None  # the deciding source, None when there is none
    results: dict[str, ParityResult]  # ONNX Runtime against each opinion
    agreed: list[str] = field(default_factory=list)  # opinions within tolerance of ORT
    reference_vs_source: ParityResult | None = None  # the reference evaluator against the source

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "status": self.status,
            "kind": self.kind,
            "note": self.note,
            "decided_by": self.decided_by,
            "agreed": self.agreed,
            "results": {ref: r.to_dict() for ref, r in self.results.items()},
            "reference_vs_source": self.reference_vs_source.to_dict()
            if self.reference_vs_source
            else None,
        }


def _nonfinite(array: np.ndarray) -> str:
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.floating):
        return ""
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    return f"{nan} NaN and {inf} Inf of {values.size} elements" if nan or inf else ""


def judge(
    name: str,
    actual: np.ndarray,
    opinions: Mapping[str, np.ndarray],
    tol: Tolerance,
    *,
    trust_stored: bool = True,
    deployment: str | None = None,
    float64: Callable[[], Float64 | None] | None = None,
    float16: Callable[[], np.ndarray | None] | None = None,
) -> OutputCheck:
    """The verdict on ONNX Runtime's ``actual`` output against every opinion of it.

    ``opinions`` maps ``torch``/``stored``/``reference_evaluator`` to that opinion's array (any
    subset). The deciding source is :func:`deciding_source`; the verdict follows the module table.
    ``deployment``: ``actual`` is a float16 deployment's (its name), whose ``opinions`` are of
    the fp32 graph: the reference evaluator's is no executor's opinion of the deployment, and a
    mismatch is ``float16``. ``float64``: gives the output's float64 result, which tells fp32
    rounding from a departure (see the module docstring); called only where ONNX Runtime
    departs from the opinion that decides, since computing it costs a run in float64.
    ``float16``: gives PyTorch's own float16 result of the output, which tells a float16
    deployment's rounding from a departure; called only where the deployment departs from
    PyTorch.
    """
    results = {
        op: compare(actual, value, scaled(tol, value), name=name) for op, value in opinions.items()
    }
    agreed = [op for op, r in results.items() if r.passed]
    source = deciding_source(opinions, trust_stored)
    check = OutputCheck(name, "pass", "", "", source, results, agreed)
    if deployment is not None:
        _judge_deployment(check, actual, opinions, trust_stored, deployment, float16)
        return check
    if source is not None and REFERENCE in opinions:
        check.reference_vs_source = compare(
            opinions[REFERENCE], opinions[source], scaled(tol, opinions[source]), name=name
        )
    if source is None:
        if not _within_rounding(check, actual, opinions, REFERENCE, float64, tol):
            _judge_without_source(check)
    elif REFERENCE in opinions and _overflows(opinions[REFERENCE], opinions[source]):
        check.status, check.kind = "fail", "overflow"
        check.note = (
            f"the graph as written overflows: {_nonfinite(opinions[REFERENCE])} on the "
            f"reference evaluator where {source} is finite; onnxruntime: "
            f"{results[source].reason or 'within tolerance of ' + source}"
        )
    elif not results[source].passed:
        if not _within_rounding(check, actual, opinions, source, float64, tol):
            _judge_source_mismatch(check, source)
    else:
        _judge_source_match(check, source, trust_stored)
    nonfinite = _nonfinite(actual)
    if nonfinite and check.status == "pass":
        check.status, check.kind = "warn", "nonfinite"
        check.note = f"{nonfinite}, where {source or REFERENCE} has them too"
    if STORED in results and not trust_stored and not check.note:
        stored = results[STORED]
        check.note = (
            "stored outputs (declared untrusted) agree"
            if stored.passed
            else f"{UNTRUSTED_DIFFER}: {stored.reason}"
        )
    return check


def _judge_deployment(
    check: OutputCheck,
    actual: np.ndarray,
    opinions: Mapping[str, np.ndarray],
    trust_stored: bool,
    deployment: str,
    float16: Callable[[], np.ndarray | None] | None,
) -> None:
    """:func:`judge` of a float16 deployment: decided by the source, else by the fp32 graph on
    the reference evaluator; stored outputs that PyTorch outvotes are still ``stale_stored``."""
    results, source = check.results, check.decided_by
    decider = source or REFERENCE
    if decider not in results:
        raise ValueError(f"{check.output}: no opinion besides onnxruntime")
    if not results[decider].passed:
        if not _within_fp16_rounding(check, actual, opinions, float16):
            check.status, check.kind = "fail", "float16"
            graph = "" if source else " (no source: the fp32 graph on the reference evaluator)"
            check.note = (
                f"the {deployment} deployment departs from {decider}{graph} beyond fp16's "
                f"tolerance, where the fp32 graph stays within fp32's: float16's range or "
                f"rounding, the converter, or ONNX Runtime's float16 kernels: "
                f"{results[decider].reason}"
            )
    elif STORED in results and source == TORCH and not results[STORED].passed and trust_stored:
        check.status, check.kind = "warn", "stale_stored"
        check.note = (
            f"stale stored outputs: the deployment matches {source}, the stored outputs do "
            f"not: {results[STORED].reason}"
        )
    nonfinite = _nonfinite(actual)
    if nonfinite and check.status == "pass":
        check.status, check.kind = "warn", "nonfinite"
        check.note = f"{nonfinite}, where {decider} has them too"


def _within_fp16_rounding(
    check: OutputCheck,
    actual: np.ndarray,
    opinions: Mapping[str, np.ndarray],
    float16: Callable[[], np.ndarray | None] | None,
) -> bool:
    """Whether a float16 deployment's departure from PyTorch is float16's rounding: shaped like
    PyTorch's own float16 result's departure from PyTorch in fp32, within
    :data:`FP16_RMS_FACTOR` of it in RMS and :data:`FP16_ELEMENT_FACTOR` of it element by
    element (then ``check`` passes and its note gives the figures). False where PyTorch does not
    decide, gives no float16 result, or the figures are not finite."""
    if check.decided_by != TORCH or float16 is None:
        return False
    half = float16()
    source = np.asarray(opinions[TORCH], np.float64)
    if half is None or np.shape(half) != source.shape or np.shape(actual) != source.shape:
        return False
    if not source.size:
        return False
    with np.errstate(all="ignore"):
        own = np.abs(np.asarray(half, np.float64) - source)
        mine = np.abs(np.asarray(actual, np.float64) - source)
        own_rms, mine_rms = float(np.sqrt(np.mean(own**2))), float(np.sqrt(np.mean(mine**2)))
        element = float(np.max(mine / np.maximum(own, own_rms)))
    if not all(np.isfinite(v) for v in (own_rms, mine_rms, element)) or own_rms == 0:
        return False
    if mine_rms > FP16_RMS_FACTOR * own_rms or element > FP16_ELEMENT_FACTOR:
        return False
    check.note = (
        f"{WITHIN_FP16_ROUNDING}: the deployment departs from {TORCH} by {mine.max():.3g} (past "
        f"fp16's tolerance: {check.results[TORCH].reason}) as PyTorch's own result in float16 "
        f"does: RMS {mine_rms:.3g} against its {own_rms:.3g}, no element more than "
        f"{element:.3g}x its departure there (bounds {FP16_RMS_FACTOR:g}x, "
        f"{FP16_ELEMENT_FACTOR:g}x)"
    )
    return True


def _within_rounding(
    check: OutputCheck,
    actual: np.ndarray,
    opinions: Mapping[str, np.ndarray],
    against: str,
    float64: Callable[[], Float64 | None] | None,
    tol: Tolerance,
) -> bool:
    """Whether onnxruntime's departure from ``against`` is fp32 rounding (then ``check`` passes
    and its note gives the figures). The case's own rounding is its fp32 twin's distance from
    the float64 result; both onnxruntime's departure and ``against``'s own distance from the
    float64 result must be within :data:`ROUNDING_FACTOR` times it (:data:`ILL_CONDITIONED_FACTOR`
    times on a case fp32 cannot compute: the twin misses the float64 result by
    :data:`ILL_CONDITIONED` times the tolerance), a case of onnxconv's own inputs only: on the
    user's data a correct graph computes well in fp32, and an ill-conditioned case there is
    excused nothing (a graph that multiplies its input by 6 made itself ill-conditioned, and
    its own rounding then covered the defect). The second bound matters where the float64
    result is the graph's (no PyTorch module): a graph that departs from its stored outputs is
    as far from them in float64, however its own rounding grew. False where there is no
    float64 result, nothing to explain, or the figures are not finite."""
    result = check.results.get(against)
    if float64 is None or result is None or result.passed:
        return False
    float64 = float64()
    if float64 is None or float64.twin not in opinions:
        return False
    exact = np.asarray(float64.value, np.float64)
    twin = np.asarray(opinions[float64.twin], np.float64)
    mine, theirs = np.asarray(actual, np.float64), np.asarray(opinions[against], np.float64)
    if not exact.shape == twin.shape == mine.shape == theirs.shape:
        return False
    with np.errstate(all="ignore"):
        rounding = float(np.max(np.abs(twin - exact), initial=0.0))
        departure = float(np.max(np.abs(mine - theirs), initial=0.0))
        gap = float(np.max(np.abs(theirs - exact), initial=0.0))  # the opinion's own
    if not all(np.isfinite(v) for v in (rounding, departure, gap)):
        return False
    worst = compare(twin, exact, scaled(tol, exact)).worst
    ill = worst is not None and worst.tol_ratio >= ILL_CONDITIONED
    if ill and not float64.generated:
        return False  # the user's own data: a correct graph computes it well in fp32
    factor = ILL_CONDITIONED_FACTOR if ill else ROUNDING_FACTOR
    if departure > factor * rounding or gap > factor * rounding:
        return False
    measured = f"{float64.twin} is {rounding:.3g} from {float64.what}"
    if ill:
        measured += (
            f"; an ill-conditioned case: fp32 itself misses it by {worst.tol_ratio:.3g}x the "
            "tolerance"
        )
    check.status, check.kind = "pass", ""
    check.note = (
        f"{WITHIN_ROUNDING}: onnxruntime departs from {against} by {departure:.3g} (past the "
        f"tolerance: {result.reason}), no more than {factor:g}x this case's own fp32 rounding "
        f"({measured})"
    )
    return True


def _overflows(reference: np.ndarray, source: np.ndarray) -> bool:
    """NaN or Inf in the reference evaluator's output where the source has a finite value."""
    reference, source = np.asarray(reference), np.asarray(source)
    if reference.shape != source.shape or not np.issubdtype(reference.dtype, np.floating):
        return False
    return bool(np.any(~np.isfinite(reference) & np.isfinite(source)))


def _judge_source_mismatch(check: OutputCheck, source: str) -> None:
    mismatch = check.results[source].reason
    check.status = "fail"
    if check.reference_vs_source is None:
        check.kind = "disagreement"
        check.note = (
            f"onnxruntime departs from {source} and the reference evaluator could not "
            f"run: {mismatch}"
        )
    elif check.reference_vs_source.passed:
        check.kind = "runtime"
        check.note = (
            f"runtime defect: onnxruntime departs from {source}, which the reference "
            f"evaluator matches: {mismatch}"
        )
    elif check.results[REFERENCE].passed:
        check.kind = "export"
        stale = " (or they are stale: --stored untrusted)" if source == STORED else ""
        if "shape mismatch" in (mismatch or ""):
            stale = f" (another shape: is {source} this graph's source?)"
        check.note = (
            f"export defect: onnxruntime and the reference evaluator agree on a graph "
            f"that does not compute what {source} does{stale}: {mismatch}"
        )
    else:
        check.kind = "disagreement"
        check.note = f"{source}, onnxruntime and the reference evaluator all differ: {mismatch}"


def _judge_source_match(check: OutputCheck, source: str, trust_stored: bool) -> None:
    results = check.results
    if REFERENCE in results and not results[REFERENCE].passed:
        check.status, check.kind = "warn", "reference"
        check.note = (
            f"the reference evaluator departs from onnxruntime and {source}, which "
            f"agree: {results[REFERENCE].reason}"
        )
    elif STORED in results and source != STORED and not results[STORED].passed and trust_stored:
        check.status, check.kind = "warn", "stale_stored"
        check.note = (
            f"stale stored outputs: the executors match {source}, the stored "
            f"outputs do not: {results[STORED].reason}"
        )


def _judge_without_source(check: OutputCheck) -> None:
    result = check.results.get(REFERENCE)
    if result is None:
        raise ValueError(f"{check.output}: no opinion besides onnxruntime")
    if not result.passed:
        check.status, check.kind = "fail", "executors"
        check.note = f"no source: onnxruntime and the reference evaluator differ: {result.reason}"
