"""Does the graph compute what its source says, on every target? Per graph, per target, with
the evidence.

A *subject* is what gets validated: a zoo variant, a folder in the ONNX test-data layout
(``model.onnx`` + ``test_data_set_*/{input,output}_*.pb``) or a bare ``.onnx`` file. A *target* is
``ep/opt_level/precision`` (``runtime.Target``). Every (subject, target) pair is a *cell*.

Each cell runs several *cases*: the stored test sets, and generated inputs (two seeds × two
distributions, ``normal`` and ``wide`` = 8 × normal for large activations, and a second batch size
when the batch axis is dynamic). Every case carries the opinions that apply: the *sources*
(PyTorch for zoo variants, the stored outputs of test-data folders) and the reference evaluator,
an *executor* like ONNX Runtime. :mod:`onnxconv.verdict` judges each output (pass, warn or fail,
and which kind); a cell takes its worst case. A failure is localised to the first node that
departs (fp32 targets): for an export defect of a zoo graph, against a fresh export of the
variant; otherwise ONNX Runtime against the reference evaluator on the same graph. A cell is
``unavailable`` when its EP cannot run the graph on its own (never a pass).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from . import feeds as feeds_module
from . import graph, quant_check, runtime, variants
from . import precisions as precisions_module
from .divergence import first_divergence
from .errors import CheckFailed, UserInputError, one_line
from .fp16 import CONVERTER_CHANGES
from .machine import describe_gpus
from .parity import Tolerance, default_tolerance
from .quant_metrics import TOLERANCES, Bound
from .reference import KNOWN_FAULTS, run_reference
from .retarget import retarget
from .verdict import REFERENCE, SOURCES, STORED, TORCH, OutputCheck, judge

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
    #: What the report must say about the subject itself (e.g. a graph changed since export).
    notes: list[str] = field(default_factory=list)
    #: The user's PyTorch module that speaks for the graph (not a zoo variant), and where it
    #: came from (an import path, or "a module in memory").
    module: Any = None
    module_source: str = ""
    #: How a worker process can rebuild ``module`` (``ModuleRecipe.to_dict()``), if it can.
    recipe: dict[str, Any] | None = None

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
            raise UserInputError(
                f"{data}: {len(inputs)} input_*.pb files but the model has "
                f"{len(in_names)} inputs ({', '.join(in_names)})"
            )
        if len(outputs) != len(out_names):
            raise UserInputError(
                f"{data}: {len(outputs)} output_*.pb files but the model has "
                f"{len(out_names)} outputs ({', '.join(out_names)})"
            )
        feeds = {}
        for i, path in enumerate(inputs):
            name, array = read_pb(path)
            feeds[name if name in in_names else in_names[i]] = array
        expected = {}
        for i, path in enumerate(outputs):
            name, array = read_pb(path)
            name = name if name in out_names else out_names[i]
            check_stored_output(path, model, name, array)
            expected[name] = array
        sets.append(TestSet(feeds, expected, data.name))
    return sets


def check_stored_output(path: Path, model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """A stored output must have the dtype, rank and fixed dims the model declares for it:
    otherwise the file, not the graph, is wrong (UserInputError naming both)."""
    (declared,) = [o for o in model.graph.output if o.name == name]
    tensor = declared.type.tensor_type
    want = ""
    if tensor.elem_type:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        want = str(dtype) if array.dtype != dtype else ""
    if tensor.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        fits = len(dims) == array.ndim and all(d in (None, n) for d, n in zip(dims, array.shape))
        if not fits or want:
            shown = ["?" if d is None else str(d) for d in dims]
            want = f"{want or array.dtype} [{', '.join(shown)}]"
    if want:
        raise UserInputError(
            f"{path}: stored output {name!r} is {array.dtype} {list(array.shape)}, "
            f"but the model declares {want}"
        )


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
            check_graphs_dir(graphs_dir, [target])
            return export_subject(target, graphs_dir)
    if path.is_dir():
        subject = load_folder(path)
        attach_variant(subject, path.parent / "manifest.json")
        return subject
    if not path.exists():
        raise UserInputError(
            f"{path}: no such file, folder or variant{variants.did_you_mean(target)}"
        )
    return Subject(path.stem, path, graph.load_model(path))


def check_graphs_dir(graphs_dir: Path, names: Iterable[str] | None = None) -> None:
    """``graphs_dir``'s manifest, if there is one, must be readable and every graph it lists
    (of ``names``, default all) must be on disk: UserInputError otherwise."""
    from .export import MANIFEST, read_manifest

    if not (graphs_dir / MANIFEST).exists():
        return
    listed = read_manifest(graphs_dir)["graphs"]
    missing = [
        n
        for n in (listed if names is None else [n for n in names if n in listed])
        if not (graphs_dir / n / "model.onnx").is_file()
    ]
    if missing:
        raise UserInputError(
            f"{graphs_dir / MANIFEST} lists {', '.join(missing)} but "
            f"{graphs_dir / missing[0] / 'model.onnx'} is missing "
            f"(re-export: onnxconv export --variant {missing[0]} --out {graphs_dir})"
        )


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
    """If the folder's manifest names a zoo variant, PyTorch is the source that decides; if it
    names the user's module (``onnxconv export --module``), that module is rebuilt and decides.

    A model whose sha256 no longer matches the manifest was changed after export: PyTorch still
    decides (the manifest says what the graph should compute), and the subject notes the change.
    """
    if not manifest_path.exists():
        return
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserInputError(f"{manifest_path}: not JSON (a broken onnxconv manifest?)") from None
    try:
        entry = manifest["graphs"][subject.label]
    except (KeyError, TypeError):  # someone else's manifest.json, or a graph it does not list
        return
    if entry.get("variant") in variants.REGISTRY:
        subject.variant, subject.config, subject.entry = entry["variant"], entry["config"], entry
        decider = entry["variant"]
    elif isinstance(entry, dict) and entry.get("module"):
        if not attach_recipe(subject, entry, manifest_path):
            return
        decider = entry["module"]["path"]
    else:
        return
    import hashlib

    if entry.get("sha256") != hashlib.sha256(subject.model_path.read_bytes()).hexdigest():
        subject.notes.append(
            f"{subject.model_path} differs from the sha256 in {manifest_path}: "
            f"changed since export; PyTorch ({decider}) still decides"
        )


def attach_recipe(subject: Subject, entry: dict[str, Any], manifest_path: Path) -> bool:
    """Rebuild the user's module that the manifest names; it speaks for the graph only when its
    weights are those that were exported (same fingerprint). Returns whether it was attached."""
    from .user_model import ModuleRecipe, weights_fingerprint

    recipe = ModuleRecipe.from_dict(entry["module"])
    module, notes = recipe.build()
    subject.notes += notes
    if weights_fingerprint(module) != entry.get("weights_sha256"):
        subject.notes.append(
            f"{recipe.path} rebuilt now has other weights than the module exported "
            f"(weights_sha256 in {manifest_path}): it is not this graph's source and is not used"
        )
        return False
    subject.module, subject.module_source, subject.entry = module, recipe.path, entry
    subject.recipe = recipe.to_dict()
    return True


def attach_module(
    subject: Subject, module: Any, source: str, recipe: dict[str, Any] | None = None
) -> None:
    """The user says ``module`` is what the graph should compute (``validate --module``)."""
    subject.module, subject.module_source, subject.recipe = module.eval(), source, recipe


# --- cases ---------------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    feeds: dict[str, np.ndarray]
    opinions: dict[str, dict[str, np.ndarray]]  # opinion name -> output name -> array
    #: Why the reference evaluator has no opinion on this case ("" when it has one).
    reference_error: str = ""


#: Size given to a symbolic spatial axis of a graph that does not say (not a zoo variant).
DEFAULT_SPATIAL = 16


def symbolic_axes(model: onnx.ModelProto) -> set[int]:
    """Axes of the first input without a fixed size."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return {i for i, dim in enumerate(dims) if not dim.HasField("dim_value")}


def dynamic_batch(model: onnx.ModelProto) -> bool:
    return 0 in symbolic_axes(model)


def spatial_sizes(subject: Subject) -> list[dict[int, int]]:
    """The export's own height and width, and, when they are dynamic, a second, different size
    (odd sizes, so stride-2 and padding paths see a shape the export never did)."""
    shape = ((subject.entry or {}).get("inputs") or [{}])[0].get("shape", [])
    if subject.config:
        h, w = subject.config["height"], subject.config["width"]
    elif len(shape) == 4:
        h, w = shape[2], shape[3]
    else:
        h = w = DEFAULT_SPATIAL
    sizes = [{2: h, 3: w}]
    if symbolic_axes(subject.model) & {2, 3}:
        sizes.append({2: h + 3, 3: w + 5})
    return sizes


def reference_outputs(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The reference evaluator's outputs (onnxconv's fixes applied); CheckFailed if it cannot."""
    return run_reference(model, feeds)


def torch_module(subject: Subject):
    """The PyTorch module that speaks for the graph, or None: the user's module, or the
    variant's module with the weights the graph was exported with (the manifest's seed)."""
    if subject.module is not None:
        return subject.module
    if not subject.variant:
        return None
    seed = (subject.entry or {}).get("seed", 0)
    return variants.get(subject.variant).build(subject.config, seed=seed)


def torch_outputs(subject: Subject, module, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch's outputs for ``feeds``: inputs in the graph's order, outputs by the graph's
    output names in order."""
    import torch

    from .user_model import flatten_outputs

    tensors = [torch.from_numpy(np.array(feeds[name])) for name in subject.input_names]
    with torch.no_grad():
        outputs = flatten_outputs(module(*tensors))
    names = [o.name for o in subject.model.graph.output]
    if len(outputs) != len(names):
        raise UserInputError(
            f"{subject.model_path}: the PyTorch module returns {len(outputs)} outputs, "
            f"the graph {len(names)}"
        )
    return {name: out.detach().numpy() for name, out in zip(names, outputs)}


def check_feeds(subject: Subject, feeds: dict[str, np.ndarray], source: str) -> None:
    """Inputs must match the model's declared names, dtypes and dimensions (checked before any
    session exists: the references run first)."""
    runtime.check_feeds(
        f"{source} ({subject.model_path})",
        runtime.input_specs(subject.model, subject.input_names),
        feeds,
    )


def make_case(
    subject: Subject,
    label: str,
    feeds: dict[str, np.ndarray],
    stored: dict[str, np.ndarray] | None,
    module,
) -> Case:
    """A case with every opinion that applies: PyTorch, the stored outputs, the reference
    evaluator. A reference evaluator that cannot run is recorded, unless it is the only opinion
    (then the case cannot be judged: CheckFailed)."""
    opinions: dict[str, dict[str, np.ndarray]] = {}
    if module is not None:
        opinions[TORCH] = torch_outputs(subject, module, feeds)
    if stored is not None:
        opinions[STORED] = stored
    try:
        opinions[REFERENCE] = reference_outputs(subject.model, feeds)
    except CheckFailed as error:
        if not opinions:
            raise CheckFailed(
                f"{subject.model_path}: {error}; no other opinion to judge "
                "onnxruntime by (no PyTorch module, no stored outputs)"
            ) from None
        return Case(label, feeds, opinions, str(error))
    return Case(label, feeds, opinions)


def make_cases(
    subject: Subject,
    seeds: Iterable[int] = (0, 1),
    distributions: Iterable[str] = ("normal", "wide"),
    batches: Iterable[int] | None = None,
    extra_inputs: dict[str, np.ndarray] | None = None,
    max_input_bytes: int = feeds_module.DEFAULT_MAX_BYTES,
) -> list[Case]:
    """The stored test sets plus generated inputs, each with every opinion that applies."""
    for s in subject.test_sets:
        check_feeds(subject, s.inputs, str(subject.model_path.parent / s.label))
    if extra_inputs is not None:
        check_feeds(subject, extra_inputs, "--inputs")
    if batches is None:
        batches = (1, 2) if dynamic_batch(subject.model) else (1,)
    sizes = spatial_sizes(subject)
    generated = []
    for batch, spatial, dist, seed in itertools.product(batches, sizes, distributions, seeds):
        label = f"{dist}/seed{seed}/batch{batch}"
        if spatial != sizes[0]:
            label += f"/{spatial[2]}x{spatial[3]}"
        generated.append(
            (
                label,
                feeds_module.generate(
                    subject.model,
                    str(subject.model_path),
                    batch=batch,
                    spatial=spatial,
                    distribution=dist,
                    seed=seed,
                    max_bytes=max_input_bytes,
                ),
            )
        )
    module = torch_module(subject)
    cases = [make_case(subject, s.label, s.inputs, s.outputs, module) for s in subject.test_sets]
    if extra_inputs is not None:
        cases.append(make_case(subject, "inputs", extra_inputs, None, module))
    cases += [make_case(subject, label, feeds, None, module) for label, feeds in generated]
    return cases


# --- cells ----------------------------------------------------------------------------------------


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

    from .export import ExportOptions, to_onnx

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
    against_export = kind == "export" and bool(
        (subject.variant or subject.module is not None) and subject.entry
    )
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


def _status(statuses: Iterable[str]) -> str:
    statuses = set(statuses)
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


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
    for name in (o.name for o in subject.model.graph.output):
        opinions = {op: values[name] for op, values in case.opinions.items() if name in values}
        checks.append(judge(name, got[name], opinions, tol, trust_stored=trust_stored))
    result = CaseResult(
        case.label, _status(c.status for c in checks), checks, note=case.reference_error
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
        result.status = _status(c.status for c in checks)
    return result


def _record_worst(cell: Cell, case: CaseResult) -> None:
    for check in case.outputs:
        for opinion, result in check.results.items():
            if result.max_abs is None:
                continue
            if opinion not in cell.worst or result.max_abs > cell.worst[opinion]["max_abs"]:
                cell.worst[opinion] = {
                    "case": case.case,
                    "output": check.output,
                    "max_abs": result.max_abs,
                    "max_rel": result.max_rel,
                    "atol": result.tolerance.atol,
                    "rtol": result.tolerance.rtol,
                }


def _summarise(cell: Cell) -> None:
    """Status, reason, kind and agreement of a cell from its cases."""
    cell.status = _status(c.status for c in cell.cases)
    cell.deciders = sorted(
        {c.decided_by or REFERENCE for case in cell.cases for c in case.outputs},
        key=lambda op: (*SOURCES, REFERENCE).index(op),
    )
    if cell.status == "pass":
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
) -> list[dict[str, np.ndarray]] | None:
    """``model`` (the deployment ``target.precision`` names) run on every feed dict, with the
    providers and node placement recorded in ``cell``; ``None`` (and ``cell`` unavailable) when
    the target's EP cannot run it by itself."""
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
            )
            cell.providers = info.providers
            outputs = [runtime.run(info, precisions_module.feeds_for(model, f)) for f in feeds]
            placement = runtime.node_placement(info.end_profiling())
    except runtime.EpUnavailable as error:
        cell.status, cell.reason = "unavailable", error.reason
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
) -> Cell:
    """One subject on one float target; ``model`` is the deployment at ``target.precision``
    (default: the subject's own fp32 graph). ``session_config`` / ``session_options`` go to
    :func:`runtime.make_session` (session settings under test, e.g. by ``onnxconv tune``)."""
    cell = Cell(subject.label, target.id, "pass")
    tol = tol or default_tolerance(target.precision, target.ep)
    outputs = run_on_target(
        cell,
        subject.model if model is None else model,
        target,
        [case.feeds for case in cases],
        threads,
        cuda_options,
        session_config,
        session_options,
    )
    if outputs is None:
        return cell
    for case, got in zip(cases, outputs):
        result = judge_case(subject, case, got, target, tol, trust_stored, localise_failures)
        _record_worst(cell, result)
        cell.cases.append(result)
    _summarise(cell)
    return cell


# --- deployments and int8 cells -----------------------------------------------------------------


def deployments(
    subject: Subject,
    names: Iterable[str],
    calibration: list[dict[str, np.ndarray]] | None,
    method: str,
    max_input_bytes: int,
) -> dict[str, onnx.ModelProto | CheckFailed]:
    """The subject's graph at every precision, or why it cannot be made (per precision)."""
    made: dict[str, onnx.ModelProto | CheckFailed] = {}
    for name in names:
        feeds = None
        if precisions_module.get(name).needs_calibration:
            feeds = calibration or calibration_feeds(subject, max_input_bytes)
        try:
            made[name] = precisions_module.deploy(
                subject.model, name, feeds, method=method, label=str(subject.model_path)
            )
        except CheckFailed as error:
            made[name] = error
            continue
        changes = {p.key: p.value for p in made[name].metadata_props}.get(CONVERTER_CHANGES)
        if changes:
            subject.notes.append(f"{name}: {changes}")
    return made


def seeded_feeds(
    subject: Subject, first_seed: int, count: int, max_input_bytes: int
) -> list[dict[str, np.ndarray]]:
    """``count`` seeded ``normal`` inputs at the export's size, seeds ``first_seed`` onwards."""
    return [
        feeds_module.generate(
            subject.model,
            str(subject.model_path),
            batch=1,
            spatial=spatial_sizes(subject)[0],
            distribution="normal",
            seed=first_seed + i,
            max_bytes=max_input_bytes,
        )
        for i in range(count)
    ]


def calibration_feeds(subject: Subject, max_input_bytes: int) -> list[dict[str, np.ndarray]]:
    """The int8 calibration inputs: seeds disjoint from every other case."""
    return seeded_feeds(
        subject,
        precisions_module.CALIBRATION_SEED,
        precisions_module.CALIBRATION_SAMPLES,
        max_input_bytes,
    )


@dataclass
class Evaluation:
    """The inputs an int8 deployment is judged on, and the fp32 source's outputs for them."""

    feeds: list[dict[str, np.ndarray]]
    expected: list[dict[str, np.ndarray]]
    against: str


#: Who speaks for the fp32 graph when no PyTorch module does (the fp32 cells check that graph).
FP32_GRAPH = "fp32 graph"


def evaluation(
    subject: Subject,
    extra_inputs: dict[str, np.ndarray] | None,
    samples: int,
    max_input_bytes: int,
) -> Evaluation:
    """Stored inputs, the user's inputs and ``samples`` generated ones; PyTorch's outputs where a
    module speaks for the graph, else the fp32 graph's on ORT CPU with optimisations off."""
    feeds = [s.inputs for s in subject.test_sets]
    feeds += [extra_inputs] if extra_inputs is not None else []
    feeds += seeded_feeds(subject, quant_check.EVALUATION_SEED, samples, max_input_bytes)
    module = torch_module(subject)
    if module is not None:
        return Evaluation(feeds, [torch_outputs(subject, module, f) for f in feeds], TORCH)
    info = runtime.make_session(subject.model, runtime.Target("cpu", "disabled"))
    return Evaluation(feeds, [runtime.run(info, f) for f in feeds], FP32_GRAPH)


def run_judged_cell(
    subject: Subject,
    target: runtime.Target,
    deployed: onnx.ModelProto,
    judged_on: Evaluation,
    threads: int | None,
    cuda_options: dict[str, str] | None = None,
    *,
    tolerances: Mapping[str, Bound] | None = None,
    session_config: dict[str, str] | None = None,
    session_options: dict[str, Any] | None = None,
) -> Cell:
    """One subject's deployment at a lower precision on one target, judged by
    :mod:`onnxconv.quant_check` against the fp32 source (validate's int8 cells with the default
    tolerances; tune's precision candidates with the user's accuracy budget)."""
    cell = Cell(subject.label, target.id, "pass")
    got = run_on_target(
        cell,
        deployed,
        target,
        judged_on.feeds,
        threads,
        cuda_options,
        session_config,
        session_options,
    )
    if got is None:
        return cell
    verdict = quant_check.judge_deployment(
        subject.model,
        deployed,
        judged_on.feeds,
        judged_on.expected,
        got,
        against=judged_on.against,
        static=precisions_module.get(target.precision).needs_calibration,
        tolerances=tolerances,
    )
    cell.status, cell.kind, cell.reason = verdict.status, verdict.kind, verdict.reason
    cell.deciders = [judged_on.against]
    cell.quant = verdict.to_dict()
    return cell


def undeployable_cell(subject: Subject, target: runtime.Target, error: CheckFailed) -> Cell:
    """No graph at this precision: nothing to quantize is ``unavailable`` (there is no such
    deployment), a converter or quantizer failure is a ``fail`` of kind ``conversion``."""
    from .int8 import NothingToQuantize

    status = "unavailable" if isinstance(error, NothingToQuantize) else "fail"
    return Cell(subject.label, target.id, status, reason=str(error), kind="conversion")


# --- the whole run ------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """JSON schema (``to_dict``): ``schema`` (2), ``kind`` ("validate"), ``environment``
    (versions, machine), ``settings`` (eps, opt_levels, precisions, seeds, distributions,
    tolerance overrides, threads, whether stored outputs are trusted, the input size limit),
    ``subjects`` (label, model path, variant, config, cases, opinions, notes), ``cells`` (one per
    subject × target: status; for a warn or fail its ``kind`` (export, runtime, disagreement,
    executors; reference, stale_stored, nonfinite — see :mod:`onnxconv.verdict`), the opinions
    that ``agreed`` with ONNX Runtime and the ``deciders``; ``reason``; providers and node
    placement; ``worst``: per opinion, ONNX Runtime's largest error against it; per case and
    output the metrics against every opinion, the reference evaluator against the source, and
    the first divergent node; for an int8 cell ``quant``: the metrics per output against the
    fp32 source, their sensitivity to the input and the worst QDQ pairs, see
    :mod:`onnxconv.quant_check`), ``summary`` (counts per status). With int8 precisions,
    ``settings.int8`` records the calibration (given or generated, count, seed, method), the
    evaluation inputs and the tolerances."""

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
        return {
            "schema": 2,
            "kind": "validate",
            "environment": self.environment,
            "settings": self.settings,
            "subjects": self.subjects,
            "cells": [c.to_dict() for c in self.cells],
            "summary": self.summary(),
        }


def validate(
    subjects: list[Subject],
    eps: list[str],
    opt_levels: list[str],
    precisions: list[str],
    *,
    seeds=(0, 1),
    distributions=("normal", "wide"),
    batches: list[int] | None = None,
    extra_inputs: dict[str, np.ndarray] | None = None,
    tol: Tolerance | None = None,
    threads: int | None = None,
    localise_failures=True,
    cuda_options: dict[str, str] | None = None,
    trust_stored: bool = True,
    max_input_bytes: int = feeds_module.DEFAULT_MAX_BYTES,
    progress: Callable[[str, int, int], None] | None = None,
    calibration: list[dict[str, np.ndarray]] | None = None,
    calibration_method: str = "minmax",
    int8_samples: int = quant_check.EVALUATION_SAMPLES,
    target_opset: int | None = None,
) -> ValidationReport:
    """Every subject on every target. ``trust_stored=False`` shows stored outputs without letting
    them decide (for a user who knows they are stale). ``calibration`` (feed dicts; default
    generated), ``calibration_method`` and ``int8_samples`` (generated evaluation inputs) apply
    to the int8 precisions (:mod:`onnxconv.precisions`). ``target_opset``: every graph is first
    brought to that opset (:mod:`onnxconv.retarget`); one that cannot be fails every cell as
    ``conversion``."""
    from .report import environment

    int8_precisions = [p for p in precisions if precisions_module.is_int8(p)]

    targets = [
        runtime.Target(ep, level, precision)
        for ep in eps
        for precision in precisions
        for level in opt_levels
    ]
    total = len(subjects) * len(targets)
    cells, subject_info = [], []
    for s_index, subject in enumerate(subjects):
        if progress:
            progress(f"{subject.label} (references)", s_index * len(targets), total)
        if target_opset is not None:
            try:
                subject = retarget(subject, target_opset, max_input_bytes)
            except CheckFailed as error:
                label = f"{subject.label}@opset{target_opset}"
                cells += [
                    Cell(label, t.id, "fail", reason=str(error), kind="conversion") for t in targets
                ]
                subject_info.append(
                    {
                        "label": label,
                        "model": str(subject.model_path),
                        "variant": subject.variant,
                        "module": subject.module_source or None,
                        "config": subject.config,
                        "cases": [],
                        "notes": [str(error)],
                        "opinions": [],
                    }
                )
                continue
        cases = make_cases(subject, seeds, distributions, batches, extra_inputs, max_input_bytes)
        deployed = deployments(
            subject, precisions, calibration, calibration_method, max_input_bytes
        )
        judged_on = (
            evaluation(subject, extra_inputs, int8_samples, max_input_bytes)
            if int8_precisions
            else None
        )
        subject_info.append(
            {
                "label": subject.label,
                "model": str(subject.model_path),
                "variant": subject.variant,
                "module": subject.module_source or None,
                "config": subject.config,
                "cases": [c.label for c in cases],
                "notes": subject.notes,
                "opinions": sorted({r for c in cases for r in c.opinions}),
            }
        )
        for t_index, target in enumerate(targets):
            if progress:
                progress(f"{subject.label} {target.id}", s_index * len(targets) + t_index, total)
            model = deployed[target.precision]
            if isinstance(model, CheckFailed):
                cells.append(undeployable_cell(subject, target, model))
            elif precisions_module.is_int8(target.precision):
                cells.append(
                    run_judged_cell(subject, target, model, judged_on, threads, cuda_options)
                )
            else:
                cells.append(
                    run_cell(
                        subject,
                        target,
                        cases,
                        tol,
                        threads,
                        localise_failures,
                        cuda_options,
                        trust_stored,
                        model=model,
                    )
                )
    if progress:
        progress("", total, total)
    settings = {
        "eps": eps,
        "opt_levels": opt_levels,
        "precisions": precisions,
        "seeds": list(seeds),
        "distributions": list(distributions),
        "batches": batches,
        "tolerance_override": tol.to_dict() if tol else None,
        "threads": threads,
        "cuda_options": {**runtime.DEFAULT_CUDA_OPTIONS, **(cuda_options or {})},
        "tolerance_defaults": {
            f"{p}/{ep}": default_tolerance(p, ep).to_dict()
            for p in precisions
            if p not in int8_precisions
            for ep in eps
        },
        "atol_scaling": "atol x max(1, RMS of the opinion compared against)",
        "stored_outputs": "trusted" if trust_stored else "untrusted",
        "max_input_bytes": max_input_bytes,
        "target_opset": target_opset,
    }
    if int8_precisions:
        settings["int8"] = {
            "calibration": "given" if calibration else "generated",
            "calibration_samples": len(calibration or ()) or precisions_module.CALIBRATION_SAMPLES,
            "calibration_seed": None if calibration else precisions_module.CALIBRATION_SEED,
            "calibration_method": calibration_method,
            "evaluation_samples": int8_samples,
            "evaluation_seed": quant_check.EVALUATION_SEED,
            "tolerances": {k: b.describe() for k, b in TOLERANCES.items()},
            "min_sensitivity": quant_check.MIN_SENSITIVITY,
        }
    return ValidationReport(environment(), settings, subject_info, cells)


def headline_text(cell: Cell) -> str:
    """``1.23e-06 vs torch``: the worst error against the opinion that decided; for an int8
    cell its quantization metrics (``sqnr 37.2 dB, cos 0.99991 vs torch``)."""
    if cell.quant:
        return f"{quant_check.headline(cell.quant)} vs {cell.quant['against']}"
    headline = cell.headline()
    return f"{headline[1]['max_abs']:.2e} vs {headline[0]}" if headline else ""


def brief_rows(cells: Iterable[Cell], width: int = 110) -> list[tuple[str, ...]]:
    """One row per graph and EP: how its cells ended, the worst error, the first problem."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.subject, cell.target.split("/")[0]), []).append(cell)
    rows = []
    for (subject, ep), group in groups.items():
        counts: dict[str, int] = {}
        for cell in group:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        judged = [c for c in group if c.headline()]
        worst = max(judged, key=lambda c: c.headline()[1]["max_abs"], default=None)
        problem = next((f"{c.target}: {c.reason}" for c in group if c.status != "pass"), "")
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        rows.append(
            (
                subject,
                ep,
                summary,
                headline_text(worst) if worst else "",
                textwrap.shorten(problem, width, placeholder=" …"),
            )
        )
    return rows


def to_markdown(report: ValidationReport) -> str:
    env = report.environment
    summary = ", ".join(f"{n} {status}" for status, n in sorted(report.summary().items()))
    lines = [
        "# onnxconv validate",
        "",
        f"- machine: {env['machine']['cpu_model']}, {env['machine']['logical_cores']} "
        f"logical cores; created {env['created']}",
        f"- GPU: {describe_gpus(env['machine']) or 'none seen by nvidia-smi'}",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if isinstance(v, str)),
        f"- stored outputs: {report.settings['stored_outputs']}",
        f"- summary: {summary}",
    ]
    lines += [
        f"- {ep} is not in the matrix: {reason}"
        for ep, reason in report.settings.get("eps_left_out", {}).items()
    ]
    lines += [f"- note: {note}" for s in report.subjects for note in s["notes"]]
    lines += [
        "",
        "## Per graph and EP",
        "",
        "| graph | ep | cells | worst max abs | first problem |",
        "|---|---|---|---|---|",
    ]
    lines += [
        "| " + " | ".join(v.replace("|", "/") for v in row) + " |"
        for row in brief_rows(report.cells, width=400)
    ]
    lines += [
        "",
        "## Every cell",
        "",
        "| graph | target | status | kind | worst max abs per opinion | placement | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in report.cells:
        worst = ", ".join(f"{op} {w['max_abs']:.3g}" for op, w in cell.worst.items())
        if cell.quant:
            worst = headline_text(cell)
        lines.append(
            f"| {cell.subject} | {cell.target} | {cell.status} | {cell.kind} | "
            f"{worst} | {cell.placement} | {cell.reason.replace('|', '/')} |"
        )
    quant_cells = [c for c in report.cells if c.quant]
    if quant_cells:
        lines += ["", *quant_check.markdown_section(quant_cells, report.settings.get("int8", {}))]
    return "\n".join(lines) + "\n"
