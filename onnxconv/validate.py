"""Does ONNX Runtime compute what PyTorch computes? Per graph, per target, with the evidence.

A *subject* is what gets validated: a zoo variant, a folder in the ONNX test-data layout
(``model.onnx`` + ``test_data_set_*/{input,output}_*.pb``) or a bare ``.onnx`` file. A *target* is
``ep/opt_level/precision`` (``runtime.Target``). Every (subject, target) pair is a *cell*.

Each cell runs several *cases*: the stored test sets, and generated inputs (two seeds × two
distributions, ``normal`` and ``wide`` = 8 × normal for large activations, and a second batch size
when the batch axis is dynamic). Every case has at least two independent opinions besides ONNX
Runtime: PyTorch (zoo variants), the stored outputs (test-data folders) and onnx's
``ReferenceEvaluator``, which shares no code with either.

Verdict of a case, per output:
- ``pass``: ONNX Runtime agrees with every reference.
- ``warn``: one reference disagrees with ONNX Runtime while the others agree with it: the
  dissenting reference is named (with its metrics and, for the reference evaluator, the first node
  where it departs); the case passes.
- ``fail``: otherwise; the first node whose ONNX Runtime output departs from the reference
  evaluator is named (fp32 targets).
A cell is ``unavailable`` when its EP cannot run the graph on its own (never a pass).

Tolerances: ``parity.default_tolerance(precision, ep)`` unless overridden, with ``atol`` scaled
by ``max(1, RMS of the reference output)``: a convolution's absolute rounding error grows with
the magnitude of what it sums, so the ``wide`` inputs get a proportionally larger ``atol``.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from . import graph, runtime, variants
from .divergence import first_divergence
from .errors import CheckFailed, UserInputError, one_line
from .machine import describe_gpus
from .parity import ParityResult, Tolerance, compare, default_tolerance, odd_one_out

DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "wide": lambda rng, shape: 8.0 * rng.standard_normal(shape),
}
ORT = "onnxruntime"
TORCH, STORED, REFERENCE = "torch", "stored", "reference_evaluator"


# --- subjects ----------------------------------------------------------------------------------

@dataclass
class TestSet:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    label: str


@dataclass
class Subject:
    label: str
    model_path: Path
    model: onnx.ModelProto
    test_sets: list[TestSet] = field(default_factory=list)
    variant: str | None = None
    config: dict[str, Any] | None = None
    #: The manifest entry that ties the graph to its variant (exporter, opset, dynamic axes).
    entry: dict[str, Any] | None = None

    @property
    def input_names(self) -> list[str]:
        initializers = {i.name for i in self.model.graph.initializer}
        return [i.name for i in self.model.graph.input if i.name not in initializers]


def read_pb(path: Path) -> tuple[str, np.ndarray]:
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        return tensor.name, numpy_helper.to_array(tensor)
    except Exception as error:
        raise UserInputError(f"{path}: not a TensorProto file ({type(error).__name__})") from None


def load_test_sets(folder: Path, model: onnx.ModelProto) -> list[TestSet]:
    """Every ``test_data_set_*`` of a folder; names come from the files or the model's order."""
    initializers = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in initializers]
    out_names = [o.name for o in model.graph.output]
    sets = []
    for data in sorted(folder.glob("test_data_set_*")):
        inputs = sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        outputs = sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        if len(inputs) != len(in_names):
            raise UserInputError(f"{data}: {len(inputs)} input_*.pb files but the model has "
                                 f"{len(in_names)} inputs ({', '.join(in_names)})")
        if len(outputs) != len(out_names):
            raise UserInputError(f"{data}: {len(outputs)} output_*.pb files but the model has "
                                 f"{len(out_names)} outputs ({', '.join(out_names)})")
        feeds = {}
        for i, path in enumerate(inputs):
            name, array = read_pb(path)
            feeds[name if name in in_names else in_names[i]] = array
        expected = {}
        for i, path in enumerate(outputs):
            name, array = read_pb(path)
            expected[name if name in out_names else out_names[i]] = array
        sets.append(TestSet(feeds, expected, data.name))
    return sets


def load_subject(target: str, graphs_dir: str | Path = "graphs") -> Subject:
    """A zoo variant name, a test-data folder, or a bare .onnx file.

    A variant with no graph in ``graphs_dir`` is exported now (with the default options, into a
    temporary folder) and validated from memory.
    """
    path = Path(target)
    graphs_dir = Path(graphs_dir)
    if not path.exists() and target in variants.REGISTRY:
        path = graphs_dir / target
        if not (path / "model.onnx").exists():
            return export_subject(target, graphs_dir)
    if path.is_dir():
        subject = load_folder(path)
        attach_variant(subject, path.parent / "manifest.json")
        return subject
    if not path.exists():
        raise UserInputError(f"{path}: no such file, folder or variant")
    return Subject(path.stem, path, graph.load_model(path))


def load_folder(path: Path) -> Subject:
    model_path = path / "model.onnx"
    if not model_path.exists():
        raise UserInputError(f"{path}: no model.onnx in this folder")
    model = graph.load_model(model_path)
    subject = Subject(path.name, model_path, model, load_test_sets(path, model))
    if not subject.test_sets:
        raise UserInputError(f"{path}: no test_data_set_* folder with input_*.pb files")
    return subject


def export_subject(name: str, graphs_dir: Path) -> Subject:
    """Export variant ``name`` now and load it, test data included, into memory."""
    from .export import export_variants

    with tempfile.TemporaryDirectory(prefix="onnxconv-validate-") as tmp:
        (result,) = export_variants([name], tmp)
        subject = load_folder(Path(tmp) / name)
    subject.model_path = Path(f"{name} (exported now: not in {graphs_dir})") / "model.onnx"
    subject.variant, subject.config, subject.entry = name, result.entry["config"], result.entry
    return subject


def attach_variant(subject: Subject, manifest_path: Path) -> None:
    """If the folder's manifest names a zoo variant with this exact model, PyTorch can opine."""
    if not manifest_path.exists():
        return
    try:
        entry = json.loads(manifest_path.read_text())["graphs"][subject.label]
    except (ValueError, KeyError, TypeError):
        return
    import hashlib
    if entry.get("sha256") != hashlib.sha256(subject.model_path.read_bytes()).hexdigest():
        return
    if entry.get("variant") in variants.REGISTRY:
        subject.variant, subject.config, subject.entry = entry["variant"], entry["config"], entry


# --- cases ---------------------------------------------------------------------------------------

@dataclass
class Case:
    label: str
    feeds: dict[str, np.ndarray]
    references: dict[str, dict[str, np.ndarray]]  # reference name -> output name -> array


#: Size given to a symbolic spatial axis of a graph that does not say (not a zoo variant).
DEFAULT_SPATIAL = 16


def input_shape(info: onnx.ValueInfoProto, batch: int, spatial: dict[int, int]) -> tuple:
    """Fixed dims as declared; a symbolic batch axis -> ``batch``, other symbolic axes ->
    ``spatial[axis]`` (1 for a symbolic channel axis)."""
    shape = []
    for i, dim in enumerate(info.type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif i == 0:
            shape.append(batch)
        else:
            shape.append(spatial.get(i, 1))
    return tuple(shape)


def symbolic_axes(model: onnx.ModelProto) -> set[int]:
    """Axes of the first input without a fixed size."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return {i for i, dim in enumerate(dims) if not dim.HasField("dim_value")}


def dynamic_batch(model: onnx.ModelProto) -> bool:
    return 0 in symbolic_axes(model)


def spatial_sizes(subject: Subject) -> list[dict[int, int]]:
    """The export's own height and width, and, when they are dynamic, a second, different size
    (odd sizes, so stride-2 and padding paths see a shape the export never did)."""
    if subject.config:
        h, w = subject.config["height"], subject.config["width"]
    else:
        h = w = DEFAULT_SPATIAL
    sizes = [{2: h, 3: w}]
    if symbolic_axes(subject.model) & {2, 3}:
        sizes.append({2: h + 3, 3: w + 5})
    return sizes


def reference_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in model.graph.output]
    try:
        values = ReferenceEvaluator(model).run(names, feeds)
    except Exception as error:  # an opinion that could not be formed is no opinion
        raise CheckFailed(f"onnx ReferenceEvaluator failed: {one_line(error)}") from None
    return dict(zip(names, (np.asarray(v) for v in values)))


def torch_module(subject: Subject):
    """The variant's module with the weights the graph was exported with (the manifest's seed)."""
    seed = (subject.entry or {}).get("seed", 0)
    return variants.get(subject.variant).build(subject.config, seed=seed)


def torch_outputs(subject: Subject, module, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    (name,) = feeds
    with torch.no_grad():
        out = module(torch.from_numpy(np.array(feeds[name])))
    return {subject.model.graph.output[0].name: out.numpy()}


def check_feeds(subject: Subject, feeds: dict[str, np.ndarray], source: str) -> None:
    """Inputs must match the model's declared names, dtypes and dimensions (checked before any
    session exists: the references run first)."""
    runtime.check_feeds(f"{source} ({subject.model_path})",
                        runtime.input_specs(subject.model, subject.input_names), feeds)


def make_cases(subject: Subject, seeds: Iterable[int] = (0, 1),
               distributions: Iterable[str] = ("normal", "wide"),
               batches: Iterable[int] | None = None,
               extra_inputs: dict[str, np.ndarray] | None = None) -> list[Case]:
    """The stored test sets plus generated inputs, each with every reference that applies."""
    module = torch_module(subject) if subject.variant else None

    def opinions(feeds: dict[str, np.ndarray], stored: dict[str, np.ndarray] | None):
        refs: dict[str, dict[str, np.ndarray]] = {}
        if module is not None:
            refs[TORCH] = torch_outputs(subject, module, feeds)
        if stored is not None:
            refs[STORED] = stored
        refs[REFERENCE] = reference_outputs(subject.model, feeds)
        return refs

    for s in subject.test_sets:
        check_feeds(subject, s.inputs, str(subject.model_path.parent / s.label))
    if extra_inputs is not None:
        check_feeds(subject, extra_inputs, "--inputs")
    cases = [Case(s.label, s.inputs, opinions(s.inputs, s.outputs)) for s in subject.test_sets]
    if extra_inputs is not None:
        cases.append(Case("inputs", extra_inputs, opinions(extra_inputs, None)))
    if batches is None:
        batches = (1, 2) if dynamic_batch(subject.model) else (1,)
    sizes = spatial_sizes(subject)
    initializers = {i.name for i in subject.model.graph.initializer}
    inputs = [i for i in subject.model.graph.input if i.name not in initializers]
    for batch, spatial, dist, seed in itertools.product(batches, sizes, distributions, seeds):
        rng = np.random.default_rng(seed)
        feeds = {}
        for info in inputs:
            elem = info.type.tensor_type.elem_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            if not np.issubdtype(dtype, np.floating):
                raise UserInputError(f"{subject.model_path}: input {info.name!r} is "
                                     f"{dtype}; supply inputs with --inputs FILE.npz")
            shape = input_shape(info, batch, spatial)
            feeds[info.name] = DISTRIBUTIONS[dist](rng, shape).astype(dtype)
        label = f"{dist}/seed{seed}/batch{batch}"
        if spatial != sizes[0]:
            label += f"/{spatial[2]}x{spatial[3]}"
        cases.append(Case(label, feeds, opinions(feeds, None)))
    return cases


# --- cells ----------------------------------------------------------------------------------------

@dataclass
class OutputCheck:
    output: str
    status: str                      # pass | warn | fail
    results: dict[str, ParityResult]  # reference -> ORT vs that reference
    dissenter: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "status": self.status, "dissenter": self.dissenter,
                "note": self.note,
                "results": {ref: r.to_dict() for ref, r in self.results.items()}}


@dataclass
class CaseResult:
    case: str
    status: str
    outputs: list[OutputCheck]
    divergence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "status": self.status, "divergence": self.divergence,
                "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class Cell:
    subject: str
    target: str
    status: str                     # pass | warn | fail | unavailable
    reason: str = ""
    providers: list[str] = field(default_factory=list)
    placement: dict[str, int] = field(default_factory=dict)
    placement_nodes: dict[str, list[str]] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    worst: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        plain = {k: v for k, v in vars(self).items() if k != "cases"}
        return {**plain, "cases": [c.to_dict() for c in self.cases]}


def scaled(tol: Tolerance, reference: np.ndarray) -> Tolerance:
    rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64)))) if reference.size else 0
    return Tolerance(tol.atol * max(1.0, rms if np.isfinite(rms) else 1.0), tol.rtol)


def judge_output(name: str, actual: np.ndarray, refs: dict[str, np.ndarray],
                 tol: Tolerance) -> OutputCheck:
    results = {ref: compare(actual, value, scaled(tol, value), name=name)
               for ref, value in refs.items()}
    if all(r.passed for r in results.values()):
        return OutputCheck(name, "pass", results)
    failed = [ref for ref, r in results.items() if not r.passed]
    if len(failed) == 1 and len(results) >= 2:
        dissenter = odd_one_out({ORT: actual, **refs}, scaled(tol, refs[failed[0]]))
        if dissenter == failed[0]:
            note = (f"reference {dissenter!r} disagrees with onnxruntime and "
                    f"{', '.join(r for r in refs if r != dissenter)}: {results[dissenter].reason}")
            return OutputCheck(name, "warn", results, dissenter, note)
    worst = max(failed, key=lambda ref: results[ref].frac_bad)
    return OutputCheck(name, "fail", results, None,
                       f"onnxruntime vs {worst}: {results[worst].reason}")


def fresh_export(subject: Subject) -> onnx.ModelProto:
    """The variant exported again from PyTorch with the manifest's settings: the exporters are
    deterministic, so its tensor names match the subject's and intermediates can be paired."""
    from .export import ExportOptions, dynamic_axes, to_onnx

    entry = subject.entry or {}
    spec = variants.get(subject.variant)
    options = ExportOptions(opset=entry["opset"], exporter=entry["exporter"],
                            seed=entry.get("seed", 0))
    axes = {int(i): n for i, n in entry["inputs"][0]["dynamic_axes"].items()}
    options = ExportOptions(**{**vars(options), "dynamic_batch": 0 in axes,
                               "dynamic_hw": 2 in axes})
    module = spec.build(subject.config, seed=options.seed)
    return to_onnx(module, spec.example_input(subject.config), dynamic_axes(options),
                   options)


def localise(subject: Subject, case: Case, target: runtime.Target, tol: Tolerance,
             dissenting_reference: bool) -> dict[str, Any] | None:
    """The first node whose output departs, found by comparing intermediate tensors.

    A failing zoo graph is compared node by node with a fresh export of its variant evaluated by
    onnx's reference evaluator (a defect in the graph itself shows up at the node that carries
    it); any other graph, or a dissenting reference evaluator, with the reference evaluator on
    the same graph (a runtime or reference bug shows up at the first node computed differently).
    """
    try:
        reference_model = None
        if subject.variant and subject.entry and not dissenting_reference:
            reference_model = fresh_export(subject)
        divergence = first_divergence(subject.model, case.feeds, target, tol,
                                              reference_model=reference_model)
    except Exception as error:  # localisation is evidence, not a verdict
        return {"error": f"could not localise: {one_line(error)}"}
    if divergence is None:
        return None
    info = divergence.to_dict()
    info["against"] = "fresh export of " + subject.variant if reference_model else REFERENCE
    return info


def run_cell(subject: Subject, target: runtime.Target, cases: list[Case],
             tol: Tolerance | None, threads: int | None, localise_failures: bool,
             cuda_options: dict[str, str] | None = None) -> Cell:
    cell = Cell(subject.label, target.id, "pass")
    tol = tol or default_tolerance(target.precision, target.ep)
    try:
        with tempfile.TemporaryDirectory(prefix="onnxconv-profile-") as tmp:
            info = runtime.make_session(subject.model, target, threads=threads, profile=True,
                                        cuda_options=cuda_options,
                                        profile_prefix=Path(tmp) / "profile")
            cell.providers = info.providers
            outputs = [runtime.run(info, case.feeds) for case in cases]
            placement = runtime.node_placement(info.end_profiling())
    except runtime.EpUnavailable as error:
        cell.status, cell.reason = "unavailable", error.reason
        return cell
    cell.placement_nodes = placement
    cell.placement = {ep: len(nodes) for ep, nodes in placement.items()}
    if target.ep != "cpu" and set(placement) - {target.ep}:
        cell.status = "unavailable"
        cell.reason = f"nodes ran outside {target.ep}: {cell.placement}"
        return cell
    worst: tuple[float, dict[str, Any]] = (-1.0, {})
    for case, got in zip(cases, outputs):
        checks = []
        for name in (o.name for o in subject.model.graph.output):
            refs = {ref: values[name] for ref, values in case.references.items() if name in values}
            check = judge_output(name, got[name], refs, tol)
            checks.append(check)
            for ref, result in check.results.items():
                if ref != check.dissenter and result.max_abs is not None \
                        and result.max_abs > worst[0]:
                    worst = (result.max_abs, {"case": case.label, "output": name,
                                              "reference": ref, "max_abs": result.max_abs,
                                              "max_rel": result.max_rel,
                                              "atol": result.tolerance.atol,
                                              "rtol": result.tolerance.rtol})
        status = "fail" if any(c.status == "fail" for c in checks) else \
            "warn" if any(c.status == "warn" for c in checks) else "pass"
        result = CaseResult(case.label, status, checks)
        if localise_failures and target.precision == "fp32":
            if status == "fail":
                result.divergence = localise(subject, case, target, tol, False)
            elif status == "warn" and any(c.dissenter == REFERENCE for c in checks):
                result.divergence = localise(subject, case, target, tol, True)
        cell.cases.append(result)
    cell.worst = worst[1]
    statuses = {c.status for c in cell.cases}
    cell.status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    failing = [(c, o) for c in cell.cases for o in c.outputs if o.status == "fail"]
    if failing:
        case, check = failing[0]
        cell.reason = f"{case.case}, output {check.output!r}: {check.note}"
        if case.divergence and "node_name" in case.divergence:
            d = case.divergence
            cell.reason += f"; first departs at node {d['node_name']} ({d['op_type']})"
    elif cell.status == "warn":
        case, check = next((c, o) for c in cell.cases for o in c.outputs if o.status == "warn")
        cell.reason = f"{case.case}, output {check.output!r}: {check.note}"
    return cell


# --- the whole run ----------------------------------------------------------------------------------

@dataclass
class ValidationReport:
    """JSON schema (``to_dict``): ``schema`` (1), ``kind`` ("validate"), ``environment``
    (versions, machine), ``settings`` (eps, opt_levels, precisions, seeds, distributions,
    tolerance overrides, threads), ``subjects`` (label, model path, variant, config, cases),
    ``cells`` (one per subject × target: status, reason, providers, node placement, per case and
    output the metrics against each reference, dissenting reference, first divergent node),
    ``summary`` (counts per status)."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    subjects: list[dict[str, Any]]
    cells: list[Cell]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for cell in self.cells:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {"schema": 1, "kind": "validate", "environment": self.environment,
                "settings": self.settings, "subjects": self.subjects,
                "cells": [c.to_dict() for c in self.cells], "summary": self.summary()}


def default_eps() -> list[str]:
    """cpu, cuda (reported unavailable where it is) and any other compute EP of this build."""
    others = [ep for ep in runtime.available_eps() if ep not in ("cpu", "cuda", "azure")]
    return ["cpu", "cuda", *others]


def validate(subjects: list[Subject], eps: list[str], opt_levels: list[str],
             precisions: list[str], *, seeds=(0, 1), distributions=("normal", "wide"),
             batches: list[int] | None = None, extra_inputs: dict[str, np.ndarray] | None = None,
             tol: Tolerance | None = None, threads: int | None = None, localise_failures=True,
             cuda_options: dict[str, str] | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> ValidationReport:
    from .report import environment

    targets = [runtime.Target(ep, level, precision)
               for ep in eps for precision in precisions for level in opt_levels]
    total = len(subjects) * len(targets)
    cells, subject_info = [], []
    for s_index, subject in enumerate(subjects):
        if progress:
            progress(f"{subject.label} (references)", s_index * len(targets), total)
        cases = make_cases(subject, seeds, distributions, batches, extra_inputs)
        subject_info.append({"label": subject.label, "model": str(subject.model_path),
                             "variant": subject.variant, "config": subject.config,
                             "cases": [c.label for c in cases],
                             "references": sorted({r for c in cases for r in c.references})})
        for t_index, target in enumerate(targets):
            if progress:
                progress(f"{subject.label} {target.id}", s_index * len(targets) + t_index, total)
            cells.append(run_cell(subject, target, cases, tol, threads, localise_failures,
                                  cuda_options))
    if progress:
        progress("", total, total)
    settings = {"eps": eps, "opt_levels": opt_levels, "precisions": precisions,
                "seeds": list(seeds), "distributions": list(distributions), "batches": batches,
                "tolerance_override": tol.to_dict() if tol else None, "threads": threads,
                "cuda_options": {**runtime.DEFAULT_CUDA_OPTIONS, **(cuda_options or {})},
                "tolerance_defaults": {f"{p}/{ep}": default_tolerance(p, ep).to_dict()
                                       for p in precisions for ep in eps},
                "atol_scaling": "atol x max(1, RMS of the reference output)"}
    return ValidationReport(environment(), settings, subject_info, cells)


def brief_rows(cells: Iterable[Cell]) -> list[tuple[str, ...]]:
    """One row per graph and EP: how its cells ended, the worst error, the first problem."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.subject, cell.target.split("/")[0]), []).append(cell)
    rows = []
    for (subject, ep), group in groups.items():
        counts: dict[str, int] = {}
        for cell in group:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        worst = max((c.worst for c in group if c.worst), key=lambda w: w["max_abs"], default={})
        metric = f"{worst['max_abs']:.2e} vs {worst['reference']}" if worst else ""
        problem = next((f"{c.target}: {c.reason}" for c in group if c.status != "pass"), "")
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        rows.append((subject, ep, summary, metric, problem[:110]))
    return rows


def to_markdown(report: ValidationReport) -> str:
    env = report.environment
    lines = ["# onnxconv validate", "",
             f"- machine: {env['machine']['cpu_model']}, {env['machine']['logical_cores']} "
             f"logical cores; created {env['created']}",
             f"- GPU: {describe_gpus(env['machine']) or 'none seen by nvidia-smi'}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()
                                        if isinstance(v, str)),
             f"- summary: {report.summary()}", "", "## Per graph and EP", "",
             "| graph | ep | cells | worst max abs | first problem |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(v.replace("|", "/") for v in row) + " |"
              for row in brief_rows(report.cells)]
    lines += ["", "## Every cell", "",
              "| graph | target | status | worst max abs | vs | placement | note |",
              "|---|---|---|---|---|---|---|"]
    for cell in report.cells:
        worst = cell.worst
        lines.append(f"| {cell.subject} | {cell.target} | {cell.status} | "
                     f"{worst.get('max_abs', ''):.3g} | {worst.get('reference', '')} | "
                     f"{cell.placement} | {cell.reason.replace('|', '/')} |" if worst else
                     f"| {cell.subject} | {cell.target} | {cell.status} |  |  | "
                     f"{cell.placement} | {cell.reason.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
