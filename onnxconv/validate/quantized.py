"""The verdict on a graph that came quantized (it computes in int8: QDQ pairs, QLinear or integer
ops) whose sources, PyTorch or stored outputs, say what the float function gives. No element-by-
element tolerance fits that: int8 rounding moves every element, and an input beyond the
calibrated range clips.

- What the graph *does*: onnxruntime is held to the reference evaluator element by element,
  within the graph's tolerance (one quantization step of its outputs). Where elements fall
  outside it, the two executors are compared by the int8 metrics: ONNX Runtime's fused integer
  kernels (levels ``extended`` and ``all``) round intermediate tensors where the reference
  evaluator rounds only at each QuantizeLinear, and one intermediate step can move an output by
  more than one of its own. Within the bounds that is a pass whose reason says how many elements
  moved; beyond them, FAIL ``executors``.
- What it *should* do: its outputs are held to the deciding source by the int8 metrics
  (:func:`onnxconv.quant_check.judge_outputs`, FAIL ``quantization`` outside the bounds), on
  the user's own data (stored test sets, ``--inputs``), which lie in the range the graph was
  calibrated for; where there is none, on the generated ``normal`` inputs (a note says so), never
  on the ``wide`` ones, which clip by design. Stored outputs that PyTorch outvotes and that fall
  outside the bounds are ``stale_stored`` (WARN); stored outputs declared untrusted are shown,
  never deciding.
- An output that hardly moves with the input proves little (WARN ``insensitive``): judged on a
  single stored input, its spread is read off the reference evaluator's outputs on every case.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from .. import quant_check, runtime
from ..parity import Tolerance
from ..quant_metrics import Bound
from ..verdict import REFERENCE, STORED, TORCH, UNTRUSTED_DIFFER, deciding_source
from .cases import Case, users_data
from .cells import Cell, judge_case, record_worst, status_of, summarise, warn_if_blind
from .subjects import Subject

Outputs = dict[str, np.ndarray]


def judge_quantized(
    cell: Cell,
    subject: Subject,
    cases: list[Case],
    outputs: list[Outputs],
    target: runtime.Target,
    tol: Tolerance,
    trust_stored: bool,
    localise_failures: bool,
    bounds: Mapping[str, Bound] | None = None,
) -> None:
    """``cell``'s verdict from onnxruntime's ``outputs`` on ``cases`` (see the module)."""
    names = [o.name for o in subject.model.graph.output]
    executed = [(c, g) for c, g in zip(cases, outputs) if REFERENCE in c.opinions]
    _judge_executors(cell, subject, executed, target, tol, localise_failures, names, bounds)
    sourced = [(c, g) for c, g in zip(cases, outputs) if deciding_source(c.opinions, trust_stored)]
    judged_on = [(c, g) for c, g in sourced if users_data(subject, c)]
    if not judged_on:
        judged_on = [(c, g) for c, g in sourced if c.label.startswith("normal/")]
        if judged_on:
            subject.note(
                "the graph came quantized: it is judged against its source on generated normal "
                "inputs, which may lie outside its calibrated range (stored test sets or "
                "--inputs from that range judge it instead)"
            )
    untrusted = _against(names, zip(cases, outputs), STORED, bounds) if not trust_stored else None
    if not judged_on:
        if cell.status == "pass":
            warn_if_blind(cell, [c for c, _ in executed], tol)
        if cell.status == "pass" and untrusted and untrusted.status == "fail":
            cell.reason = f"{UNTRUSTED_DIFFER}: {untrusted.reason}"
        return
    source = deciding_source(judged_on[0][0].opinions, trust_stored)
    verdict = _against(names, judged_on, source, bounds)
    assert verdict is not None  # every case judged on holds its deciding source
    verdict.layers_note = "the graph came quantized: no fp32 graph to pair its QDQ pairs with"
    if verdict.status == "pass" and len(judged_on) == 1 and executed:
        # the cases of one shape (a dynamic batch gives two), on the reference evaluator
        by_shape: dict[tuple[int, ...], list[Case]] = {}
        for case, _ in executed:
            by_shape.setdefault(case.opinions[REFERENCE][names[0]].shape, []).append(case)
        alike = max(by_shape.values(), key=len)
        spreads = {
            name: quant_check.sensitivity([c.opinions[REFERENCE][name] for c in alike])
            for name in names
        }
        flat = quant_check.insensitive(spreads, len(alike), " on the reference evaluator")
        if flat:
            verdict.status, verdict.kind, verdict.reason = "warn", "insensitive", flat
    cell.quant = verdict.to_dict()
    cell.deciders = [source, *cell.deciders]
    if cell.status == "fail":
        return
    if verdict.status == "fail":
        cell.status, cell.kind = "fail", verdict.kind
        cell.reason = f"the int8 graph departs from {source} beyond int8 rounding: {verdict.reason}"
    elif verdict.status == "warn" and cell.status == "pass":
        cell.status, cell.kind, cell.reason = "warn", verdict.kind, verdict.reason
    elif source == TORCH and trust_stored and cell.status == "pass":
        stored = _against(names, judged_on, STORED, bounds)
        if stored and stored.status == "fail":
            cell.status, cell.kind = "warn", "stale_stored"
            cell.reason = (
                f"stale stored outputs: the int8 graph is within int8 rounding of {source}, "
                f"the stored outputs are not: {stored.reason}"
            )
    elif cell.status == "pass" and untrusted and untrusted.status == "fail":
        cell.reason = f"{UNTRUSTED_DIFFER}: {untrusted.reason}"


def _against(
    names: list[str],
    pairs,
    opinion: str,
    bounds: Mapping[str, Bound] | None,
) -> quant_check.QuantVerdict | None:
    """The int8 metrics of onnxruntime's outputs against ``opinion`` on the ``(case, outputs)``
    pairs that hold it; None where none does."""
    held = [(c, g) for c, g in pairs if opinion in c.opinions]
    if not held:
        return None
    return quant_check.judge_outputs(
        names,
        [c.opinions[opinion] for c, _ in held],
        [g for _, g in held],
        against=opinion,
        tolerances=bounds,
    )


def _judge_executors(
    cell: Cell,
    subject: Subject,
    executed: list[tuple[Case, Outputs]],
    target: runtime.Target,
    tol: Tolerance,
    localise_failures: bool,
    names: list[str],
    bounds: Mapping[str, Bound] | None,
) -> None:
    """onnxruntime against the reference evaluator: element by element within ``tol``, and
    where that fails, by the int8 metrics (see the module)."""
    for case, got in executed:
        alone = dataclasses.replace(case, opinions={REFERENCE: case.opinions[REFERENCE]})
        result = judge_case(subject, alone, got, target, tol, True, localise_failures)
        record_worst(cell, result)
        cell.cases.append(result)
    summarise(cell)
    failed = [(r, o) for r in cell.cases for o in r.outputs if o.kind == "executors"]
    if not failed:
        return
    rounding = _against(names, executed, REFERENCE, bounds)
    assert rounding is not None  # a failed check compared with the reference evaluator
    for result, check in failed:
        detail = check.results[REFERENCE].reason
        if rounding.status == "fail":
            check.note = (
                "onnxruntime departs from the reference evaluator on this int8 graph beyond "
                f"int8 rounding ({rounding.reason}); element by element: {detail}"
            )
        else:
            check.status, check.kind = "pass", ""
            check.note = f"within int8 rounding of the reference evaluator: {detail}"
            result.status = status_of(o.status for o in result.outputs)
    summarise(cell)
    if rounding.status != "fail" and cell.status == "pass":
        result, check = failed[0]
        cell.reason = (
            f"{result.case}, output {check.output!r}: onnxruntime rounds differently from the "
            f"reference evaluator beyond one output step, within the int8 bounds "
            f"({quant_check.headline(rounding.to_dict())}), as fused integer kernels do: "
            f"{check.results[REFERENCE].reason}"
        )
