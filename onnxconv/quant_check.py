"""The verdict of an int8 deployment: its outputs against the fp32 source over many inputs.

An int8 graph is not judged element by element (every element moves by up to half a step):
:mod:`onnxconv.validate` runs it on *evaluation inputs* (the stored test sets, the user's
``--inputs`` and :data:`EVALUATION_SAMPLES` seeded ``normal`` feeds, none of them used for
calibration), stacks each output over all of them and compares it with the fp32 source's
(PyTorch where it speaks for the graph, otherwise the fp32 graph on ONNX Runtime's CPU EP with
optimisations disabled) by :func:`onnxconv.quant_metrics.quant_metrics`. Then:

- ``fail`` / ``quantization``: a metric outside :data:`onnxconv.quant_metrics.TOLERANCES`; the
  reason names the QDQ pairs whose own rounding error is largest
  (:func:`onnxconv.int8.layer_errors`, by local SQNR, on the first evaluation input).
- ``warn`` / ``insensitive``: the metrics pass but the fp32 output hardly depends on the input
  (its spread across the evaluation inputs is below :data:`MIN_SENSITIVITY` of its RMS). Then
  int8 agreement proves little: a constant would agree too. Networks with random weights and
  drawn BatchNorm statistics are like this (the zoo's whole networks were, before their
  statistics were measured on data).
- ``pass`` otherwise.

The per-layer table is recorded for static int8 whatever the verdict (dynamic int8 has no QDQ
pair to pair with the fp32 graph).

``onnxconv tune`` judges its precision candidates (fp16 as well as int8) the same way, with the
user's accuracy budget (:func:`onnxconv.quant_metrics.parse_budget`) as the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from onnxconv import int8
from onnxconv.errors import one_line
from onnxconv.quant_metrics import TOLERANCES, Bound, QuantMetrics, judge, quant_metrics

#: Generated evaluation inputs per int8 cell (top-1/top-5 are meaningful from ~50 rows; the
#: stored test sets and the user's inputs come on top).
EVALUATION_SAMPLES = 48
#: First seed of the evaluation inputs (the validation cases use 0, 1, ...; calibration
#: :data:`onnxconv.precisions.CALIBRATION_SEED` onwards).
EVALUATION_SEED = 1000
#: Below this spread across inputs (std over the inputs, averaged over elements, relative to the
#: output's RMS) the output is called insensitive to its input. Measured over 49 inputs: the
#: zoo networks with drawn BatchNorm statistics shufflenet 1.4e-3, mobilenet_v1 9e-8; the zoo's
#: blocks 0.76 (shuffle_unit) to 0.98 (channel_shuffle).
MIN_SENSITIVITY = 1e-2
#: Pairs named in a failure's reason, and kept in the report.
WORST_LAYERS_NAMED = 3
WORST_LAYERS_KEPT = 8


@dataclass
class QuantVerdict:
    status: str  # pass | warn | fail
    kind: str = ""  # quantization | insensitive
    reason: str = ""
    against: str = ""
    samples: int = 0
    metrics: dict[str, QuantMetrics] = field(default_factory=dict)
    sensitivity: dict[str, float] = field(default_factory=dict)
    layers: list[int8.LayerError] = field(default_factory=list)
    layers_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "kind": self.kind,
            "reason": self.reason,
            "against": self.against,
            "samples": self.samples,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "sensitivity": self.sensitivity,
            "layers": [layer.to_dict() for layer in self.layers],
            "layers_note": self.layers_note,
        }


def headline(quant: Mapping[str, Any]) -> str:
    """``sqnr 37.2 dB, cos 0.99991, top1 1.00`` of the worst output (lowest SQNR) of a
    :meth:`QuantVerdict.to_dict`."""
    metrics = list(quant.get("metrics", {}).values())
    if not metrics:
        return ""
    m = min(metrics, key=lambda m: _sortable(float(m["sqnr_db"])))
    text = f"sqnr {float(m['sqnr_db']):.1f} dB, cos {float(m['cosine']):.5f}"
    if m.get("top1") is not None:
        text += f", top1 {m['top1']:.2f}"
    return text


def _sortable(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One output over every input: concatenated along the batch axis where the arrays have one
    (so a classifier's ``[1, classes]`` rows become ``[N, classes]``), stacked where they are
    scalars, else (inputs of several spatial sizes) flattened and concatenated."""
    shapes = {a.shape[1:] for a in arrays if a.ndim >= 1}
    if len(shapes) == 1 and all(a.ndim >= 1 for a in arrays):
        return np.concatenate([np.asarray(a, np.float64) for a in arrays], axis=0)
    if all(a.ndim == 0 for a in arrays):
        return np.stack([np.asarray(a, np.float64) for a in arrays])
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def sensitivity(per_input: Sequence[np.ndarray]) -> float:
    """How much an output changes with its input: the std across inputs (per element, averaged)
    over the output's RMS; ``inf`` for a single input (nothing to compare), 0 for a constant."""
    if len(per_input) < 2 or len({a.shape for a in per_input}) != 1:
        return math.inf
    stacked = np.stack([np.asarray(a, np.float64) for a in per_input])
    rms = float(np.sqrt(np.mean(stacked**2)))
    if rms == 0.0:
        return 0.0
    return float(np.mean(np.std(stacked, axis=0)) / rms)


def judge_outputs(
    names: Sequence[str],
    expected: Sequence[Mapping[str, np.ndarray]],
    got: Sequence[Mapping[str, np.ndarray]],
    *,
    against: str,
    tolerances: Mapping[str, Bound] | None = None,
) -> QuantVerdict:
    """The metrics verdict on outputs ``names`` of a lower-precision graph: its outputs ``got``
    against ``against``'s ``expected`` (one dict per input), each output stacked over the
    inputs; ``fail`` / ``quantization`` outside ``tolerances`` (default
    :data:`onnxconv.quant_metrics.TOLERANCES`), ``warn`` / ``insensitive`` where the expected
    output hardly depends on the input."""
    verdict = QuantVerdict("pass", against=against, samples=len(expected))
    reasons = []
    for name in names:
        ref = [e[name] for e in expected]
        metrics = quant_metrics(stack(ref), stack([g[name] for g in got]))
        verdict.metrics[name] = metrics
        verdict.sensitivity[name] = sensitivity(ref)
        reasons += judge(metrics, dict(tolerances or TOLERANCES), name=name).reasons
    if reasons:
        verdict.status, verdict.kind = "fail", "quantization"
        verdict.reason = "; ".join(reasons)
        return verdict
    flat = insensitive(verdict.sensitivity, len(expected))
    if flat:
        verdict.status, verdict.kind, verdict.reason = "warn", "insensitive", flat
    return verdict


def insensitive(spreads: Mapping[str, float], inputs: int, where: str = "") -> str:
    """Why agreeing with outputs whose ``spreads`` (:func:`sensitivity` per output name, over
    ``inputs`` inputs) fall below :data:`MIN_SENSITIVITY` proves little; "" where none does."""
    flat = {n: s for n, s in spreads.items() if s < MIN_SENSITIVITY}
    if not flat:
        return ""
    name, spread = min(flat.items(), key=lambda kv: kv[1])
    return (
        f"output {name!r} barely depends on the input (spread {spread:.1e} of its RMS "
        f"across {inputs} inputs{where}): agreeing with it proves little"
    )


def judge_deployment(
    fp32_model: onnx.ModelProto,
    deployed: onnx.ModelProto,
    feeds: Sequence[Mapping[str, np.ndarray]],
    expected: Sequence[Mapping[str, np.ndarray]],
    got: Sequence[Mapping[str, np.ndarray]],
    *,
    against: str,
    static: bool,
    tolerances: Mapping[str, Bound] | None = None,
) -> QuantVerdict:
    """The verdict for one lower-precision deployment (an int8 cell of validate, a precision
    candidate of tune) from its outputs ``got`` and the fp32 source's ``expected`` on the same
    ``feeds`` (one dict per evaluation input): :func:`judge_outputs`, and for a ``static`` QDQ
    graph its pairs compared with the fp32 graph layer by layer (the worst named in a failure's
    reason); ``tolerances``: the bounds (tune passes the user's accuracy budget)."""
    names = [o.name for o in fp32_model.graph.output]
    verdict = judge_outputs(names, expected, got, against=against, tolerances=tolerances)
    if not static:
        verdict.layers_note = "no QDQ pairs to compare (not a static int8 graph)"
    else:
        try:
            errors = int8.layer_errors(fp32_model, deployed, feeds[0])
            verdict.layers = errors[:WORST_LAYERS_KEPT]
        except Exception as error:  # evidence, not the verdict (ORT, or no QDQ pair to pair)
            verdict.layers_note = f"no per-layer comparison: {one_line(error)}"
    worst = [
        f"{e.tensor} ({e.op_type}) {e.local_sqnr_db:.1f} dB"
        for e in verdict.layers[:WORST_LAYERS_NAMED]
    ]
    if verdict.status == "fail" and worst:
        verdict.reason += "; largest own error at " + ", ".join(worst)
    return verdict


def _number(value: Any, digits: str) -> str:
    return "" if value is None else format(float(value), digits)


def markdown_section(cells: Sequence[Any], settings: Mapping[str, Any]) -> list[str]:
    """The int8 part of a validate report: settings, metrics per output, the worst layers.
    ``cells`` are validate cells with ``quant`` evidence."""
    lines = ["## int8 deployments", ""]
    if settings.get("calibration"):
        lines.append(
            f"- calibration: {settings.get('calibration_samples')} {settings.get('calibration')} "
            f"inputs, {settings.get('calibration_method')}; judged on "
            f"{settings.get('evaluation_samples')} further generated inputs plus stored ones"
        )
    if any(c.target.endswith("/fp32") for c in cells):
        lines.append(
            "- a graph that came quantized (its fp32 cells): judged against its source on the "
            "stored test sets and --inputs (else the generated normal inputs)"
        )
    tolerances = settings.get("tolerances") or {k: b.describe() for k, b in TOLERANCES.items()}
    lines += [
        "- tolerances: " + ", ".join(f"{k} {v}" for k, v in tolerances.items()),
        "",
        "| graph | target | status | output | vs | inputs | SQNR dB | cosine | max/range "
        "| mean/range | bias/range | top-1 | top-5 | sensitivity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        quant = cell.quant
        for name, m in quant["metrics"].items():
            lines.append(
                f"| {cell.subject} | {cell.target} | {cell.status} | {name} | "
                f"{quant['against']} | {quant['samples']} | {_number(m['sqnr_db'], '.1f')} | "
                f"{_number(m['cosine'], '.5f')} | {_number(m['max_abs_over_range'], '.4f')} | "
                f"{_number(m['mean_abs_over_range'], '.5f')} | "
                f"{_number(m.get('mean_error_over_range'), '.5f')} | {_number(m['top1'], '.2f')} | "
                f"{_number(m['top5'], '.2f')} | "
                f"{_number(quant['sensitivity'].get(name), '.2g')} |"
            )
    lines += [
        "",
        "Largest own error per QDQ pair (local SQNR: the dequantized tensor against the float "
        "entering its QuantizeLinear; one correct rounding is 35-50 dB):",
        "",
        "| graph | target | tensors, lowest local SQNR first |",
        "|---|---|---|",
    ]
    for cell in cells:
        layers = cell.quant["layers"]
        text = ", ".join(
            f"{e['tensor']} ({e['op_type']}) {_number(e['local_sqnr_db'], '.1f')}"
            for e in layers[:WORST_LAYERS_NAMED]
        )
        lines.append(f"| {cell.subject} | {cell.target} | {text or cell.quant['layers_note']} |")
    return lines
