"""Cells: one subject on one float target, run on ONNX Runtime with its node placement recorded,
every case judged by :mod:`onnxconv.verdict` and a failure localised to the first node that
departs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx

from .. import float64, runtime
from .. import precisions as precisions_module
from ..divergence import first_divergence
from ..errors import CheckFailed, UserInputError, one_line
from ..parity import Tolerance, graph_tolerance
from ..quant_metrics import Bound
from ..reference import KNOWN_FAULTS
from ..sensitivity import blind_spot
from ..verdict import (
    REFERENCE,
    SOURCES,
    UNTRUSTED_DIFFER,
    WITHIN_FP16_ROUNDING,
    WITHIN_ROUNDING,
    Float64,
    OutputCheck,
    deciding_source,
    judge,
)
from .cases import Case, torch_module, users_data
from .subjects import Subject


@dataclass
class CaseResult:
    case: str
    status: str
    outputs: list[OutputCheck]
    divergence: dict[str, Any] | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "status": self.status,
            "note": self.note,
            "divergence": self.divergence,
            "outputs": [o.to_dict() for o in self.outputs],
        }


@dataclass
class Cell:
    """One subject on one target. ``kind`` and ``agreed`` describe the first problem (see
    :mod:`onnxconv.verdict`); ``worst`` holds, per opinion, ONNX Runtime's largest error against
    it over every case and output."""

    subject: str
    target: str
    status: str  # pass | warn | fail | unavailable
    reason: str = ""
    kind: str = ""
    agreed: list[str] = field(default_factory=list)
    deciders: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    placement: dict[str, int] = field(default_factory=dict)
    placement_nodes: dict[str, list[str]] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    worst: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: An int8 cell's evidence: :meth:`onnxconv.quant_check.QuantVerdict.to_dict`.
    quant: dict[str, Any] | None = None

    def headline(self) -> tuple[str, dict[str, Any]] | None:
        """The worst error against the opinion that decided (a source before the reference)."""
        for opinion in (*SOURCES, REFERENCE):
            if opinion in self.deciders and opinion in self.worst:
                return opinion, self.worst[opinion]
        return None

    def to_dict(self) -> dict[str, Any]:
        plain = {k: v for k, v in vars(self).items() if k != "cases"}
        return {**plain, "cases": [c.to_dict() for c in self.cases]}


def fresh_export(subject: Subject) -> onnx.ModelProto:
    """The source module exported again with the manifest's settings: the exporters are
    deterministic, so its tensor names match the subject's and intermediates can be paired."""
    import torch

    from ..export import ExportOptions, to_onnx

    entry = subject.entry or {}
    options = ExportOptions(
        opset=entry["opset"], exporter=entry["exporter"], seed=entry.get("seed", 0)
    )
    axes = [{int(i): n for i, n in x["dynamic_axes"].items()} for x in entry["inputs"]]
    examples = tuple(
        torch.zeros(x["shape"], dtype=getattr(torch, x.get("dtype", "float32")))
        for x in entry["inputs"]
    )
    module = torch_module(subject)
    return to_onnx(module, examples, axes, options, output_count=len(entry["outputs"]))


def localise(
    subject: Subject, case: Case, target: runtime.Target, tol: Tolerance, kind: str
) -> dict[str, Any] | None:
    """The first node whose output departs, found by comparing intermediate tensors.

    An export defect of a zoo graph is found node by node against a fresh export of its variant
    on the reference evaluator (the defect shows at the node that carries it). Every other kind
    compares ONNX Runtime with the reference evaluator on the same graph (a runtime or reference
    fault shows at the first node computed differently). An export defect with only stored
    outputs as its source has nothing to pair intermediates with: ``None``.
    """
    against_export = kind == "export" and subject.has_torch and bool(subject.entry)
    if kind == "export" and not against_export:
        return None
    try:
        reference_model = fresh_export(subject) if against_export else None
        divergence = first_divergence(
            subject.model, case.feeds, target, tol, reference_model=reference_model
        )
    except Exception as error:  # localisation is evidence, not a verdict
        return {"error": f"could not localise: {one_line(error)}"}
    if divergence is None:
        return None
    info = divergence.to_dict()
    info["against"] = (
        f"fresh export of {subject.variant or subject.module_source}"
        if against_export
        else REFERENCE
    )
    return info


def status_of(statuses: Iterable[str]) -> str:
    statuses = set(statuses)
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def case_float64(subject: Subject, case: Case):
    """The case's float64 result (computed once, kept on the case), or why there is none."""
    if case.float64 is None:
        case.float64 = float64.float64_outputs(
            subject.model,
            case.feeds,
            case.opinions,
            torch_module(subject),
            subject.input_names,
            subject.module_copies,
        )
    return case.float64


def case_float16(subject: Subject, case: Case, name: str) -> np.ndarray | None:
    """PyTorch's float16 result of the case's output ``name`` (computed once, kept on the
    case), or None where no module speaks for the graph or it cannot run in float16."""
    module = torch_module(subject)
    if module is None:
        return None
    if case.float16 is None:
        outputs = [o.name for o in subject.model.graph.output]
        case.float16 = float64.torch_in_float16(
            module, case.feeds, subject.input_names, outputs, subject.module_copies
        )
    return None if isinstance(case.float16, str) else case.float16.get(name)


def judge_case(
    subject: Subject,
    case: Case,
    got: dict[str, np.ndarray],
    target: runtime.Target,
    tol: Tolerance,
    trust_stored: bool,
    localise_failures: bool,
) -> CaseResult:
    checks = []
    deployment = None if target.precision == "fp32" else target.precision  # float16's
    for name in (o.name for o in subject.model.graph.output):
        opinions = {op: values[name] for op, values in case.opinions.items() if name in values}
        asked: list[str] = []

        def exact(name: str = name) -> Float64 | None:
            asked.append(name)
            return float64.for_output(
                case_float64(subject, case), name, not users_data(subject, case)
            )

        def half(name: str = name) -> np.ndarray | None:
            asked.append(name)
            return case_float16(subject, case, name)

        check = judge(
            name,
            got[name],
            opinions,
            tol,
            trust_stored=trust_stored,
            deployment=deployment,
            float64=exact,
            float16=half,
        )
        why = case.float16 if deployment else case.float64
        if asked and check.status == "fail" and isinstance(why, str):
            check.note += f"; {why}"  # why rounding could not be told
        checks.append(check)
    result = CaseResult(
        case.label, status_of(c.status for c in checks), checks, note=case.reference_error
    )
    problem = next((c for c in checks if c.status == "fail"), None) or next(
        (c for c in checks if c.kind == "reference"), None
    )
    if problem is None or not localise_failures or target.precision != "fp32":
        return result
    result.divergence = localise(subject, case, target, tol, problem.kind)
    op_type = (result.divergence or {}).get("op_type")
    if problem.kind == "executors" and op_type in KNOWN_FAULTS:
        problem.status = "warn"
        problem.note += (
            f"; first departs at a {op_type}, a known reference-evaluator fault "
            f"({KNOWN_FAULTS[op_type]})"
        )
        result.status = status_of(c.status for c in checks)
    return result


def record_worst(cell: Cell, case: CaseResult) -> None:
    """Per opinion, the largest absolute error over the cell's cases (where, and under which
    tolerance), and ``tol_used``: the largest share of its tolerance any element took
    (``abs_err / (atol + rtol*|reference|)``, above 1 outside it), which says how close to
    failing the cell came, as the absolute error alone cannot."""
    for check in case.outputs:
        for opinion, result in check.results.items():
            if result.max_abs is None:
                continue
            used = result.worst.tol_ratio if result.worst else None
            before = cell.worst.get(opinion)
            if before is None or result.max_abs > before["max_abs"]:
                cell.worst[opinion] = {
                    "case": case.case,
                    "output": check.output,
                    "max_abs": result.max_abs,
                    "max_rel": result.max_rel,
                    "atol": result.tolerance.atol,
                    "rtol": result.tolerance.rtol,
                    "tol_used": before["tol_used"] if before else None,
                }
            mine = cell.worst[opinion]
            if used is not None and (mine["tol_used"] is None or used > mine["tol_used"]):
                mine["tol_used"] = used


def summarise(cell: Cell) -> None:
    """Status, reason, kind and agreement of a cell from its cases."""
    cell.status = status_of(c.status for c in cell.cases)
    cell.deciders = sorted(
        {c.decided_by or REFERENCE for case in cell.cases for c in case.outputs},
        key=lambda op: (*SOURCES, REFERENCE).index(op),
    )
    if cell.status == "pass":
        differing = [
            (c, o)
            for c in cell.cases
            for o in c.outputs
            if o.note.startswith((UNTRUSTED_DIFFER, WITHIN_ROUNDING, WITHIN_FP16_ROUNDING))
        ]
        if differing:  # shown, never deciding: but shown
            case, check = differing[0]
            cell.reason = f"{case.case}, output {check.output!r}: {check.note}"
        return
    case, check = next((c, o) for c in cell.cases for o in c.outputs if o.status == cell.status)
    cell.kind, cell.agreed = check.kind, list(check.agreed)
    cell.reason = f"{case.case}, output {check.output!r}: {check.note}"
    d = case.divergence or {}
    if "node_name" in d:
        cell.reason += (
            f"; first departs at node {d['node_name']} ({d['op_type']}), against {d['against']}"
        )


def run_on_target(
    cell: Cell,
    model: onnx.ModelProto,
    target: runtime.Target,
    feeds: list[dict[str, np.ndarray]],
    threads: int | None,
    cuda_options: dict[str, str] | None = None,
    session_config: dict[str, str] | None = None,
    session_options: dict[str, Any] | None = None,
    label: str | None = None,
) -> list[dict[str, np.ndarray]] | None:
    """``model`` (the deployment ``target.precision`` names; ``label``, its file, in messages)
    run on every feed dict, with the providers and node placement recorded in ``cell``;
    ``None`` when the target's EP cannot run it by itself (``cell`` unavailable) or a
    deployment onnxconv made does not load (``cell`` a FAIL of kind ``conversion``: the
    converter wrote an invalid graph)."""
    try:
        with tempfile.TemporaryDirectory(prefix="onnxconv-profile-") as tmp:
            info = runtime.make_session(
                model,
                target,
                threads=threads,
                profile=True,
                cuda_options=cuda_options,
                profile_prefix=Path(tmp) / "profile",
                session_config=session_config,
                session_options=session_options,
                label=label,
            )
            cell.providers = info.providers
            outputs = [runtime.run(info, precisions_module.feeds_for(model, f)) for f in feeds]
            placement = runtime.node_placement(info.end_profiling())
    except runtime.EpUnavailable as error:
        cell.status, cell.reason = "unavailable", error.reason
        return None
    except UserInputError as error:
        if target.precision == "fp32":  # the user's own graph: bad input
            raise
        cell.status, cell.kind = "fail", "conversion"
        cell.reason = f"the {target.precision} deployment does not load: {error}"
        return None
    cell.placement_nodes = placement
    cell.placement = {ep: len(nodes) for ep, nodes in placement.items()}
    if target.ep != "cpu" and set(placement) - {target.ep}:
        cell.status = "unavailable"
        cell.reason = f"nodes ran outside {target.ep}: {cell.placement}"
        return None
    return outputs


def run_cell(
    subject: Subject,
    target: runtime.Target,
    cases: list[Case],
    tol: Tolerance | None,
    threads: int | None,
    localise_failures: bool,
    cuda_options: dict[str, str] | None = None,
    trust_stored: bool = True,
    session_config: dict[str, str] | None = None,
    session_options: dict[str, Any] | None = None,
    model: onnx.ModelProto | None = None,
    quantized: bool = False,
    bounds: Mapping[str, Bound] | None = None,
) -> Cell:
    """One subject on one float target; ``model`` is the deployment at ``target.precision``
    (default: the subject's own fp32 graph). ``session_config`` / ``session_options`` go to
    :func:`runtime.make_session` (session settings under test, e.g. by ``onnxconv tune``).
    ``quantized``: the graph came quantized and its sources speak for the float function
    (:func:`.quantized.judge_quantized`, within ``bounds``: default validate's int8 tolerances)."""
    check_judgeable(subject, cases, trust_stored)
    cell = Cell(subject.label, target.id, "pass")
    tol = tol or graph_tolerance(
        subject.model if model is None else model, target.precision, target.ep
    )
    outputs = run_on_target(
        cell,
        subject.model if model is None else model,
        target,
        [case.feeds for case in cases],
        threads,
        cuda_options,
        session_config,
        session_options,
        label=str(subject.model_path),
    )
    if outputs is None:
        return cell
    if quantized:
        from .quantized import judge_quantized

        judge_quantized(
            cell, subject, cases, outputs, target, tol, trust_stored, localise_failures, bounds
        )
        return cell
    for case, got in zip(cases, outputs):
        result = judge_case(subject, case, got, target, tol, trust_stored, localise_failures)
        record_worst(cell, result)
        cell.cases.append(result)
    summarise(cell)
    if cell.status == "pass":
        warn_if_blind(cell, cases, tol)
    return cell


def check_judgeable(subject: Subject, cases: list[Case], trust_stored: bool) -> None:
    """Raise :class:`CheckFailed` (one line) for a case that nothing can judge onnxruntime by:
    the reference evaluator could not run and its only source is stored outputs declared
    untrusted."""
    for case in cases:
        if REFERENCE not in case.opinions and not deciding_source(case.opinions, trust_stored):
            raise CheckFailed(
                f"{subject.model_path}: {case.reference_error or 'no reference evaluator'}; "
                f"nothing else judges onnxruntime on {case.label}: its stored outputs are "
                "declared untrusted (--stored untrusted)"
            )


def warn_if_blind(cell: Cell, cases: list[Case], tol: Tolerance) -> None:
    """A pass that a wrong graph would have earned too is a ``warn`` of kind ``insensitive``
    (:mod:`onnxconv.sensitivity`): the deciding opinion's outputs, one input each."""
    expected, labels, seen = [], [], []
    for case, result in zip(cases, cell.cases):
        if any(_same_feeds(case.feeds, other) for other in seen):
            continue
        seen.append(case.feeds)
        labels.append(case.label)
        expected.append(
            {
                o.output: case.opinions[o.decided_by or REFERENCE][o.output]
                for o in result.outputs
                if o.output in case.opinions.get(o.decided_by or REFERENCE, {})
            }
        )
    why = blind_spot(expected, tol, labels)
    if why:
        cell.status, cell.kind, cell.reason = "warn", "insensitive", why


def _same_feeds(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
