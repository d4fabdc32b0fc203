"""What is benched and its inputs: :class:`Source` (a registry variant or an ``.onnx`` file),
:func:`resolve_sources` from the names and paths given, and :func:`prepare` (parent process,
never timed): the exported graph, the saved inputs and the cost of one source at one batch."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from .. import feeds, precisions
from ..errors import UserInputError
from ..errors import one_line as _one_line
from ..export_layout import file_sha256
from ..graph import graph_cost, with_input_shapes
from ..graph.index import load_model
from ..validate.cases import fixed_batch
from ..validate.subjects import first_stored_inputs, load_graph
from .settings import BenchSettings


@dataclass(frozen=True)
class TunedTarget:
    """Where and how a ``tuned.json``'s graph runs (:mod:`onnxconv.tune.recheck`): its one ORT
    target, session settings, and the threads it was tuned for."""

    record: str
    ep: str
    opt_level: str
    precision: str
    settings: str  # the settings' name, e.g. level=all,spinning=0
    session_config: dict[str, str]
    session_options: dict[str, Any]
    cuda_options: dict[str, str]
    threads: int
    #: The original graph tune proved it equal to: its multiply-adds are the useful work (a
    #: rewrite such as grouped_merge multiplies zeros too).
    original: str = ""


@dataclass
class Source:
    """What to bench: a registry variant, or a bare ONNX file (or a tuned.json's graph)."""

    label: str
    kind: str  # "variant" or "onnx"
    variant: str | None = None
    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    #: The recipe of the user's module that the graph came from (its manifest entry, or
    #: ``bench --module``): PyTorch is timed beside it.
    module: dict[str, Any] | None = None
    #: A tuned.json's graph runs on its own target and settings only.
    tuned: TunedTarget | None = None
    #: For a graph of an export folder whose manifest records a zoo variant (then ``variant``):
    #: the config PyTorch builds it with, beside the graph.
    torch_config: dict[str, Any] | None = None
    #: Why PyTorch is not timed beside a graph whose manifest names a module (``--no-module``).
    torch_left_out: str | None = None
    #: The sha256 of an ``onnx`` source's graph file (bench-compare knows the graph by it).
    graph_sha256: str | None = None
    #: The batch the graph is made for: its first input's fixed batch, or the batch a tuned
    #: record was tuned at (None: a dynamic batch, or a variant).
    own_batch: int | None = None

    @property
    def has_torch(self) -> bool:
        return self.variant is not None or self.module is not None


def resolve_sources(
    items: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    variant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    modules: bool = True,
) -> list[Source]:
    """Variant names, ``.onnx`` paths (or folders holding ``model.onnx``) and ``tuned.json``
    records -> sources.

    ``overrides`` apply to every variant whose config has the key (a key no variant knows is an
    error); ``variant_overrides[name]`` apply to that variant only, strictly. ``modules``: import
    the module a graph's manifest names, to time it beside the graph (see :func:`torch_of`).
    """
    from .. import variants
    from ..tune.recheck import is_tuned_record

    items = list(dict.fromkeys(items))  # the same name twice is benched once
    if not items:
        raise UserInputError("nothing to bench: name at least one variant or .onnx file")
    sources: list[Source] = []
    for item in items:
        text = str(item)
        if isinstance(item, str) and text in variants.REGISTRY:
            sources.append(Source(label=text, kind="variant", variant=text))
            continue
        path = Path(item)
        if is_tuned_record(path):
            sources.append(tuned_source(path, modules))
            continue
        looks_like_path = (
            not isinstance(item, str) or path.suffix == ".onnx" or os.sep in text or path.exists()
        )
        if not looks_like_path:
            variants.get(text)  # raises the one-line "unknown variant ... (known: ...)"
        if path.is_dir():
            if not (path / "model.onnx").is_file():
                raise UserInputError(
                    f"{path}: folder without model.onnx (expected an .onnx file "
                    "or a test-data folder)"
                )
            path = path / "model.onnx"
        if not path.exists():
            raise UserInputError(f"{path}: no such file")
        model = load_graph(path)  # fails early, with one line, on anything it cannot run
        label = path.parent.name if path.name == "model.onnx" else path.stem
        sources.append(
            Source(
                label=label,
                kind="onnx",
                path=path.resolve(),
                graph_sha256=file_sha256(path),
                own_batch=fixed_batch(model),
                **torch_of(path, modules),
            )
        )
    for tuned in [s for s in sources if s.tuned is not None]:
        for source in sources:  # its original, dynamic: timed at the batch it was tuned at
            if source.tuned is None and source.own_batch is None and source.path is not None:
                if str(source.path.resolve()) == tuned.tuned.original:
                    source.own_batch = tuned.own_batch
    common = dict(overrides or {})
    per_variant = {k: dict(v) for k, v in (variant_overrides or {}).items()}
    names = [s.variant for s in sources if s.kind == "variant"]
    for name in per_variant:
        if name not in names:
            raise UserInputError(f"overrides given for {name!r}, which is not benched")
    used: set[str] = set()
    for source in sources:
        if source.kind != "variant":
            continue
        spec = variants.get(source.variant)
        known = spec.config()
        applicable = {k: v for k, v in common.items() if k in known and k != "batch"}
        used.update(applicable)
        source.overrides = {**applicable, **per_variant.get(source.variant, {})}
        if "batch" in source.overrides:
            raise UserInputError("set batch sizes with batches, not in the config overrides")
        spec.build(spec.config(source.overrides))  # impossible configs fail here, up front
    unknown = set(common) - used - {"batch"}
    if unknown:
        raise variants.unknown_config_keys(unknown, map(variants.get, names))
    if "batch" in common:
        raise UserInputError("set batch sizes with batches, not in the config overrides")
    return sources


def tuned_source(record: Path, modules: bool = True) -> Source:
    """A ``tuned.json``'s graph, checked unchanged since tune wrote it, with its target and
    settings; PyTorch is timed beside it when the original's manifest records the module."""
    from ..tune.recheck import read_record

    tuned = read_record(record)  # a folder tune --out wrote: its tuned.json
    original = tuned.original_path
    name = original.parent.name if original.name == "model.onnx" else original.stem
    settings = tuned.settings
    return Source(
        label=f"{name}.tuned",
        kind="onnx",
        path=tuned.model_path.resolve(),
        graph_sha256=file_sha256(tuned.model_path),
        own_batch=tuned.batch,
        **torch_of(original, modules),
        tuned=TunedTarget(
            record=str(tuned.path),
            ep=tuned.ep,
            opt_level=settings.opt_level,
            precision=tuned.precision,
            settings=settings.name,
            session_config=settings.session_config(),
            session_options=settings.session_options(),
            cuda_options=dict(settings.cuda),
            threads=tuned.threads,
            original=str(original.resolve()),
        ),
    )


def torch_of(model_path: Path, modules: bool = True) -> dict[str, Any]:
    """What PyTorch runs beside a graph of an export folder, as :class:`Source` fields: the
    user's module recipe (``module``) or the zoo variant and its config (``variant``,
    ``torch_config``) that the folder's manifest records for it; nothing for other graphs.

    The user's module is built here once, so that one whose code cannot be imported is one line
    (:class:`~onnxconv.errors.ModuleUnavailable`) before anything is timed; with ``modules``
    False (``bench --no-module``) it is not imported, and ``torch_left_out`` says so."""
    from .. import variants
    from ..user_model import rebuild_from_manifest

    manifest = Path(os.path.normpath(model_path.parent.parent / "manifest.json"))
    if model_path.name != "model.onnx" or not manifest.is_file():
        return {}
    try:
        entry = json.loads(manifest.read_text())["graphs"][model_path.parent.name]
        recipe = dict(entry["module"]) if entry.get("module") else None
        if recipe is None and entry.get("variant") in variants.REGISTRY:
            return {"variant": entry["variant"], "torch_config": dict(entry["config"])}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        return {}
    if recipe is None:
        return {}
    if not modules:
        return {"torch_left_out": f"the module {manifest} names is not imported (--no-module)"}
    rebuild_from_manifest(recipe, manifest)
    return {"module": recipe}


@dataclass
class Prepared:
    """One source at one batch, ready to time: its graph, saved inputs and cost (or ``error``)."""

    source: Source
    batch: int
    config: dict[str, Any] | None
    model_path: Path
    inputs: dict[str, Path]
    input_elems: int
    macs: int | None  # whole batch
    params: int | None
    macs_source: str
    error: str | None = None
    #: Per precision: the deployed graph and its inputs, or why it could not be made.
    deployed: dict[str, Deployed | str] = field(default_factory=dict)
    #: What a bare graph already computes in, where lower than fp32 (else None).
    computes_in: str | None = None


@dataclass(frozen=True)
class Deployed:
    """The graph at one precision and the inputs it is fed (float16 ones for ``fp16-io``)."""

    model_path: Path
    inputs: dict[str, Path]

    def job(self) -> dict[str, Any]:
        """The worker job's ``model`` and ``inputs``."""
        inputs = {name: str(path) for name, path in self.inputs.items()}
        return {"model": str(self.model_path), "inputs": inputs}


def deploy_all(prep: Prepared, names: Sequence[str], seed: int) -> dict[str, Deployed | str]:
    """``prep``'s graph at every precision (:func:`onnxconv.precisions.deploy`), written beside
    its inputs; int8 is calibrated on seeded ``normal`` inputs of the benched shape. A
    deployment that cannot be made is its error line (the cells record it, nothing is timed)."""
    from ..errors import OnnxconvError

    deployed: dict[str, Deployed | str] = {}
    if prep.error:
        return deployed
    model = load_model(prep.model_path)
    folder = next(iter(prep.inputs.values())).parent
    given = {name: np.load(path) for name, path in prep.inputs.items()}
    for name in names:
        if name == "fp32":
            deployed[name] = Deployed(prep.model_path, dict(prep.inputs))
            continue
        try:
            calibration = None
            if precisions.get(name).needs_calibration:
                calibration = _calibration(model, given, seed)
            label = str(prep.source.path or prep.source.label)  # not the bench's temporary copy
            graph = precisions.deploy(model, name, calibration, label=label)
        except OnnxconvError as error:
            deployed[name] = f"no {name} deployment: {_one_line(error)}"
            continue
        path = folder / f"model.{name}.onnx"
        path.write_bytes(graph.SerializeToString())
        inputs = {}
        for input_name, array in precisions.feeds_for(graph, given).items():
            inputs[input_name] = prep.inputs[input_name]
            if array.dtype != given[input_name].dtype:
                inputs[input_name] = folder / f"{input_name}.{name}.npy"
                np.save(inputs[input_name], array)
        deployed[name] = Deployed(path, inputs)
    return deployed


def _calibration(
    model: onnx.ModelProto, given: dict[str, np.ndarray], seed: int
) -> list[dict[str, np.ndarray]]:
    """Seeded ``normal`` feeds of the benched shapes (the timed input is not among them)."""
    from ..precisions import CALIBRATION_SAMPLES, CALIBRATION_SEED

    shape = next(iter(given.values())).shape
    spatial = {axis: size for axis, size in enumerate(shape) if axis > 0}
    return [
        feeds.generate(
            model,
            "calibration",
            batch=shape[0] if shape else 1,
            spatial=spatial,
            distribution="normal",
            seed=CALIBRATION_SEED + seed + i,
        )
        for i in range(CALIBRATION_SAMPLES)
    ]


def prepare_variant(source: Source, batch: int, settings: BenchSettings, work: Path) -> Prepared:
    """Build and export the variant; its example input is what both ORT and PyTorch are fed."""
    from .. import variants
    from ..export import ExportOptions, to_onnx

    spec = variants.get(source.variant)
    config = spec.config({**source.overrides, "batch": batch})
    folder = work / f"{source.label}-b{batch}"
    folder.mkdir(parents=True, exist_ok=True)
    module = spec.build(config, seed=settings.seed)
    example = spec.example_input(config, seed=settings.seed)
    x_path = folder / "input_0.npy"
    np.save(x_path, example.numpy())
    model_path = folder / "model.onnx"
    cost = spec.cost(config)
    prepared = Prepared(
        source,
        batch,
        config,
        model_path,
        {"input": x_path},
        int(example.numel()),
        cost.macs * batch,
        cost.params,
        "analytic",
    )
    try:
        options = ExportOptions(
            opset=settings.opset, exporter=settings.exporter, seed=settings.seed
        )
        model = to_onnx(module, example, {}, options)
    except Exception as error:  # the exporters raise many types: the cell records one line
        prepared.error = f"export failed: {_one_line(error)}"
        return prepared
    names = [i.name for i in model.graph.input]
    prepared.inputs = {names[0]: x_path}
    model_path.write_bytes(model.SerializeToString())
    return prepared


#: The element types of the inputs generated for a bare graph: floats get seeded normal values
#: (:func:`onnxconv.feeds.generate`), integers and bools zeros.
_GENERATED_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT64,
    onnx.TensorProto.BOOL,
)


def prepare_onnx(source: Source, batch: int, settings: BenchSettings, work: Path) -> Prepared:
    """Seeded inputs for a bare graph (a test-data folder's own input where its shape fits)."""
    model = load_model(source.path)
    folder = work / f"{source.label}-b{batch}"
    folder.mkdir(parents=True, exist_ok=True)
    infos = feeds.graph_inputs(model)
    # A test-data folder's own inputs: used where their shape fits, and they size a symbolic
    # height and width.
    stored = first_stored_inputs(source.path, len(infos))
    shapes = [
        _bench_shape(source, vi, batch, None if array is None else array.shape, first=i == 0)
        for i, (vi, (_, array)) in enumerate(zip(infos, stored))
    ]
    # feeds.generate draws the float inputs, in order, from one generator seeded once. Integer
    # and bool inputs are zeros and draw nothing, nor does an empty input (a dimension of 0,
    # which generate refuses), so only the other float inputs go in.
    floats = onnx.ModelProto()
    floats.graph.input.extend(
        vi for vi, shape in zip(infos, shapes) if _is_float(vi) and 0 not in shape
    )
    generated = feeds.generate(
        floats,
        str(source.path),
        batch=batch,
        spatial={},
        distribution="normal",
        seed=settings.seed,
        max_bytes=sys.maxsize,  # the bench sets no limit: the graph and batch asked for decide
    )
    inputs: dict[str, Path] = {}
    elems = 0
    for i, (vi, shape, (pb, own)) in enumerate(zip(infos, shapes, stored)):
        data = generated.get(vi.name)
        if data is None:
            data = np.zeros(shape, dtype=_np_dtype(vi))
        if own is not None:
            if own.dtype != data.dtype:
                raise UserInputError(
                    f"{pb}: holds {own.dtype}, the graph's input {vi.name!r} takes {data.dtype}"
                )
            if list(own.shape) == shape:
                data = own
        path = folder / f"input_{i}.npy"
        np.save(path, data)
        inputs[vi.name] = path
        elems += int(np.prod(shape)) if shape else 1
    # a tuned graph computes its original's function: the original's multiply-adds are the
    # useful work (grouped_merge and grouped_pad multiply zeros as well)
    costed = load_model(source.tuned.original) if source.tuned and source.tuned.original else model
    params, macs = graph_cost(
        with_input_shapes(costed, {vi.name: shape for vi, shape in zip(infos, shapes)})
    )
    # the variant's config, where PyTorch runs one beside it, at the batch this cell runs
    config = {**source.torch_config, "batch": batch} if source.torch_config else None
    prepared = Prepared(source, batch, config, source.path, inputs, elems, macs, params, "graph")
    native = precisions.computes_in(model)
    prepared.computes_in = None if native == "fp32" else native
    return prepared


def _bench_shape(
    source: Source,
    vi: onnx.ValueInfoProto,
    batch: int,
    stored: tuple[int, ...] | None,
    first: bool = True,
) -> list[int]:
    """The shape fed to a graph input at ``batch``: a symbolic dimension other than the batch
    (``export --dynamic-hw``) takes the size of the folder's ``stored`` input (the export's
    example). The ``first`` input's leading dimension is the batch (as
    :func:`onnxconv.validate.fixed_batch` reads it); another input's fixed leading dimension is
    its own size (a vector of 4 beside an image). A :class:`UserInputError` for a symbolic
    dimension without a stored size, a first input with a fixed batch of another size, or an
    element type not in :data:`_GENERATED_TYPES`."""
    tt = vi.type.tensor_type
    shape = []
    for axis, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value"):
            shape.append(d.dim_value)
        elif axis == 0:
            shape.append(batch)
        elif stored is not None and len(stored) == len(tt.shape.dim):
            shape.append(int(stored[axis]))
        else:
            raise UserInputError(
                f"{source.path}: input {vi.name!r} has a symbolic "
                f"dimension {axis} ({d.dim_param or '?'}) and no stored input to take its size "
                "from; only the batch may be dynamic in a bare graph"
            )
    if first and shape and shape[0] != batch:
        raise UserInputError(
            f"{source.path}: input {vi.name!r} has a fixed batch of "
            f"{shape[0]}; cannot bench batch {batch} (bench it with --batch {shape[0]}, or "
            "without --batch)"
        )
    if tt.elem_type not in _GENERATED_TYPES:
        raise UserInputError(
            f"{source.path}: input {vi.name!r} has an element type "
            f"({tt.elem_type}) the bench cannot generate"
        )
    return shape


def _np_dtype(vi: onnx.ValueInfoProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def _is_float(vi: onnx.ValueInfoProto) -> bool:
    return bool(np.issubdtype(_np_dtype(vi), np.floating))


def prepare(source: Source, batch: int, settings: BenchSettings, work: Path) -> Prepared:
    """The graph, saved inputs and cost of ``source`` at ``batch`` (its files under ``work``)."""
    return (prepare_variant if source.kind == "variant" else prepare_onnx)(
        source, batch, settings, work
    )
