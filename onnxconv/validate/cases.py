"""Cases: the inputs a subject is checked on (its stored test sets, the user's, generated ones),
each with every opinion that applies (PyTorch, the stored outputs, the reference evaluator)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import onnx

from .. import feeds as feeds_module
from .. import runtime, variants
from ..errors import CheckFailed, UserInputError, one_line
from ..parity import Tolerance, compare, graph_tolerance
from ..reference import run_reference
from ..verdict import REFERENCE, STORED, TORCH, scaled
from .subjects import Subject


@dataclass
class Case:
    label: str
    feeds: dict[str, np.ndarray]
    opinions: dict[str, dict[str, np.ndarray]]  # opinion name -> output name -> array
    #: Why the reference evaluator has no opinion on this case ("" when it has one).
    reference_error: str = ""
    #: The case's float64 result (:func:`onnxconv.float64.float64_outputs`), computed when a
    #: verdict first needs it, or why there is none; None until then.
    float64: Any = None
    #: PyTorch's float16 result of the case (:func:`onnxconv.float64.torch_in_float16`), computed
    #: when a float16 deployment's verdict first needs it, or why there is none; None until then.
    float16: Any = None


#: The label of the case made of the user's ``--inputs``.
INPUTS_CASE = "inputs"


def users_data(subject: Subject, case: Case) -> bool:
    """Whether ``case`` holds the user's own inputs (a stored test set, ``--inputs``), not
    generated ones."""
    return case.label == INPUTS_CASE or any(
        s.label == case.label and not s.generated for s in subject.test_sets
    )


#: Size given to a symbolic spatial axis of a graph that does not say (not a zoo variant).
DEFAULT_SPATIAL = 16


def symbolic_axes(model: onnx.ModelProto) -> set[int]:
    """Axes of the first input without a fixed size."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return {i for i, dim in enumerate(dims) if not dim.HasField("dim_value")}


def dynamic_batch(model: onnx.ModelProto) -> bool:
    return 0 in symbolic_axes(model)


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The first graph input's leading dimension where it is fixed (None where symbolic);
    initializers listed as inputs (IR < 4) are not inputs."""
    inputs = feeds_module.graph_inputs(model)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None


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
    variant's module with the weights the graph was exported with (the manifest's seed), built
    once per subject (again only if its variant, config or seed has changed since)."""
    if subject.module is not None:
        return subject.module
    if not subject.variant:
        return None
    seed = (subject.entry or {}).get("seed", 0)
    built = subject.built_module
    if built is None or built[0] != (subject.variant, subject.config, seed):
        module = variants.get(subject.variant).build(subject.config, seed=seed)
        built = ((subject.variant, copy.deepcopy(subject.config), seed), module)
        subject.built_module = built
    return built[1]


def torch_outputs(subject: Subject, module, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch's outputs for ``feeds``: inputs in the graph's order, outputs by the graph's
    output names in order."""
    import torch

    from ..user_model import flatten_outputs

    tensors = [torch.from_numpy(np.array(feeds[name])) for name in subject.input_names]
    with torch.no_grad():
        outputs = flatten_outputs(module(*tensors))
    names = [o.name for o in subject.model.graph.output]
    if len(outputs) != len(names):
        raise UserInputError(
            f"{subject.model_path}: the PyTorch module returns {len(outputs)} outputs, "
            f"the graph {len(names)}"
        )
    if subject.module_named_by_user:
        for spec, out in zip(runtime.output_specs(subject.model), outputs):
            declared, got = spec.shape or (), tuple(out.shape)
            fixed = [d if isinstance(d, int) else None for d in declared]
            if declared and (
                len(fixed) != len(got) or any(f is not None and f != g for f, g in zip(fixed, got))
            ):
                shown = "x".join("?" if f is None else str(f) for f in fixed)
                raise UserInputError(
                    f"{subject.model_path}: the module {subject.module_source} gives output "
                    f"{spec.name!r} of shape {'x'.join(map(str, got))} where the graph "
                    f"declares {shown}: is it this graph's source (--module-args)?"
                )
    return {name: out.detach().numpy() for name, out in zip(names, outputs)}


def departure(
    model: onnx.ModelProto,
    own: list[dict[str, np.ndarray]],
    expected: list[dict[str, np.ndarray]],
    labels: list[str],
    source: str,
    tol: Tolerance | None = None,
) -> str | None:
    """The first place where the fp32 graph's outputs ``own`` leave ``source``'s ``expected``
    (zipped with ``labels``, one per input: the first ``len(expected)`` inputs) under ``tol``
    (the user's, as validate's fp32 cells take it; default validate's fp32 tolerance); None
    where they stay within it."""
    tol = tol or graph_tolerance(model, "fp32", "cpu")
    for label, got, want in zip(labels, own, expected):
        for name, reference in want.items():
            if name not in got:
                continue
            result = compare(got[name], reference, scaled(tol, reference), f"output {name!r}")
            if not result.passed:
                return f"the fp32 graph departs from {source} on {label}: {result.reason}"
    return None


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
    reference: bool = True,
) -> Case:
    """A case with every opinion that applies: PyTorch, the stored outputs, the reference
    evaluator (unless ``reference`` is False: :func:`with_reference` adds it later)."""
    opinions: dict[str, dict[str, np.ndarray]] = {}
    if module is not None:
        opinions[TORCH] = torch_outputs(subject, module, feeds)
    if stored is not None:
        opinions[STORED] = stored
    case = Case(label, feeds, opinions)
    return with_reference(case, subject) if reference else case


def with_reference(case: Case, subject: Subject) -> Case:
    """``case`` with the reference evaluator's opinion of ``subject``'s graph added (a new case;
    the arrays are shared). A reference evaluator that cannot run is recorded, unless it would be
    the only opinion (then the case cannot be judged: CheckFailed)."""
    try:
        outputs = reference_outputs(subject.model, case.feeds)
    except CheckFailed as error:
        if not case.opinions:
            raise CheckFailed(
                f"{subject.model_path}: {error}; no other opinion to judge onnxruntime by on "
                "these inputs (no PyTorch module, no stored outputs of them)"
            ) from None
        return dataclasses.replace(case, reference_error=str(error))
    return dataclasses.replace(case, opinions={**case.opinions, REFERENCE: outputs})


def overflow_probes(cases: list[Case]) -> list[int]:
    """The cases a float16 deployment's range is checked on (:mod:`onnxconv.fp16_range`): the
    first stored or given input and the first generated one of each distribution (``wide``
    reaches further)."""
    picked, seen = [], set()
    for i, case in enumerate(cases):
        kind = case.label.split("/")[0] if "/" in case.label else "given"
        if kind not in seen:
            seen.add(kind)
            picked.append(i)
    return picked


def make_cases(
    subject: Subject,
    seeds: Iterable[int] = (0, 1),
    distributions: Iterable[str] = ("normal", "wide"),
    batches: Iterable[int] | None = None,
    extra_inputs: dict[str, np.ndarray] | None = None,
    max_input_bytes: int = feeds_module.DEFAULT_MAX_BYTES,
    reference: bool = True,
) -> list[Case]:
    """The stored test sets plus generated inputs, each with every opinion that applies (the
    reference evaluator's only if ``reference``)."""
    for s in subject.test_sets:
        check_feeds(subject, s.inputs, str(subject.model_path.parent / s.label))
    if extra_inputs is not None:
        check_feeds(subject, extra_inputs, "--inputs")
    if batches is None:
        batches = (1, 2) if dynamic_batch(subject.model) else (1,)
    sizes = spatial_sizes(subject)
    generated = []
    skipped: dict[str, str] = {}  # a height x width no sample fits -> why
    for batch, spatial, dist, seed in itertools.product(batches, sizes, distributions, seeds):
        label = f"{dist}/seed{seed}/batch{batch}"
        if spatial != sizes[0]:
            label += f"/{spatial[2]}x{spatial[3]}"
        try:
            feeds = feeds_module.generate(
                subject.model,
                str(subject.model_path),
                batch=batch,
                spatial=spatial,
                distribution=dist,
                seed=seed,
                max_bytes=max_input_bytes,
                samples={**subject.sample, **(extra_inputs or {})},
            )
        except feeds_module.SampleDoesNotFit as error:
            if spatial == sizes[0]:
                raise
            skipped.setdefault(f"{spatial[2]}x{spatial[3]}", one_line(error))
            continue
        generated.append((label, feeds))
    for size, why in skipped.items():
        subject.note(f"no generated cases at {size}: {why}")
    module = torch_module(subject)
    cases = [
        make_case(subject, s.label, s.inputs, s.outputs, module, reference)
        for s in subject.test_sets
    ]
    if extra_inputs is not None:
        cases.append(make_case(subject, INPUTS_CASE, extra_inputs, None, module, reference))
    for label, feeds in generated:
        try:
            cases.append(make_case(subject, label, feeds, None, module, reference))
        except CheckFailed as error:
            if not subject.test_sets:  # nothing at all to judge by
                raise
            subject.note(f"no generated cases: {one_line(error)}; the stored test sets decide")
            break
    return cases
