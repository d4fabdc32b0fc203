"""Subjects: what gets validated (a zoo variant, a test-data folder or a bare ``.onnx`` file),
loaded with its stored test sets and the PyTorch module that speaks for it, if any."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from .. import feeds as feeds_module
from .. import graph, runtime, variants
from ..errors import UserInputError


@dataclass
class TestSet:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    label: str
    #: Inputs onnxconv drew (tune's, with the original graph's outputs as their source), not
    #: the user's data: a case of them may be ill-conditioned (:mod:`onnxconv.verdict`).
    generated: bool = False


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
    #: The variant's module as :func:`onnxconv.validate.cases.torch_module` built it, with the
    #: (variant, config, seed) it was built from: built once per subject, not compared or shown.
    built_module: tuple[tuple[Any, ...], Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: The float64 and float16 copies of the modules that speak for the graph (by id and
    #: dtype), made when a verdict first needs one (:mod:`onnxconv.float64`): a deep network's
    #: takes seconds to make.
    module_copies: dict[Any, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    #: Why ``module`` may hold other weights than the graph was exported with: noted with an
    #: export defect, where it would be the likely cause.
    foreign_weights: str | None = None
    #: The user's own inputs (``validate --inputs``), one more case and a sample.
    given_inputs: dict[str, np.ndarray] | None = None
    #: The user named ``module`` for this graph (``--module``, :func:`attach_module`): an output
    #: of another shape than the graph declares is then the wrong module (an input error), not
    #: an export defect.
    module_named_by_user: bool = False

    @property
    def has_torch(self) -> bool:
        """Whether a PyTorch module speaks for the graph: a zoo variant's, or the user's."""
        return bool(self.variant) or self.module is not None

    def note(self, text: str) -> None:
        """Add ``text`` to :attr:`notes` once (cases and deployments are made more than once
        for one subject, e.g. by tune's proofs)."""
        if text not in self.notes:
            self.notes.append(text)

    @property
    def sample(self) -> dict[str, np.ndarray]:
        """A valid input by name (the user's ``--inputs``, else the first stored test set's),
        where generated inputs take what :func:`onnxconv.feeds.generate` does not draw (integer
        and bool inputs)."""
        stored = self.test_sets[0].inputs if self.test_sets else {}
        return {**stored, **(self.given_inputs or {})}

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


def first_stored_inputs(model_path: Path, count: int) -> list[tuple[Path, np.ndarray | None]]:
    """``test_data_set_0/input_<i>.pb`` beside ``model_path`` for each of ``count`` inputs, with
    its array (None where there is no such file)."""
    files = [model_path.parent / "test_data_set_0" / f"input_{i}.pb" for i in range(count)]
    return [(pb, read_pb(pb)[1] if pb.is_file() else None) for pb in files]


def _numbered(folder: Path, kind: str) -> list[Path]:
    """``<kind>_0.pb``, ``<kind>_1.pb``, ... of a test set, in number order (others ignored)."""
    found = [p for p in folder.glob(f"{kind}_*.pb") if p.stem.removeprefix(f"{kind}_").isdigit()]
    return sorted(found, key=lambda p: int(p.stem.removeprefix(f"{kind}_")))


def _set_order(path: Path) -> tuple[int, str]:
    """test_data_set_2 before test_data_set_10: by number, then by name."""
    suffix = path.name.removeprefix("test_data_set_")
    return (int(suffix) if suffix.isdigit() else -1, path.name)


def load_test_sets(folder: Path, model: onnx.ModelProto) -> list[TestSet]:
    """Every ``test_data_set_*`` of a folder; names come from the files or the model's order."""
    initializers = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in initializers]
    out_names = [o.name for o in model.graph.output]
    sets = []
    for data in sorted(folder.glob("test_data_set_*"), key=_set_order):
        inputs, outputs = _numbered(data, "input"), _numbered(data, "output")
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
            check_finite_input(path, array)
            feeds[name if name in in_names else in_names[i]] = array
        expected = {}
        for i, path in enumerate(outputs):
            name, array = read_pb(path)
            name = name if name in out_names else out_names[i]
            check_stored_output(path, model, name, array)
            expected[name] = array
        sets.append(TestSet(feeds, expected, data.name))
    return sets


def check_finite_input(where: str | Path, array: np.ndarray) -> None:
    """A given input must be finite: a NaN or Inf in it reaches every output it feeds, and the
    verdict would read that as the graph overflowing (UserInputError naming ``where``)."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        raise UserInputError(
            f"{where}: an input holding {nan} NaN and {inf} Inf of {array.size} values; "
            "validate judges finite inputs"
        )


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


def load_subject(
    target: str, graphs_dir: str | Path = "graphs", rebuild_modules: bool = True
) -> Subject:
    """A zoo variant name, a test-data folder, or a bare .onnx file.

    A variant with no graph in ``graphs_dir`` is exported now (with the default options, into a
    temporary folder) and validated from memory. ``rebuild_modules=False``: a user's module that
    a folder's manifest names is not imported (its code is not here), and the folder's stored
    outputs decide.
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
        attach_variant(subject, path.parent / "manifest.json", rebuild_modules)
        return subject
    if not path.exists():
        raise UserInputError(
            f"{path}: no such file, folder or variant{variants.did_you_mean(target)}"
        )
    return Subject(path.stem, path, load_graph(path))


def load_graph(path: Path) -> onnx.ModelProto:
    """The graph at ``path``, which ORT must also load from that file: validate runs it from
    memory, where a model with external data loads that ORT refuses from disk."""
    model = graph.load_model(path)
    feeds_module.require_inputs(model, str(path))
    runtime.check_loads_from_file(path)
    return model


def check_graphs_dir(graphs_dir: Path, names: Iterable[str] | None = None) -> None:
    """``graphs_dir``'s manifest, if there is one, must be readable and every graph it lists
    (of ``names``, default all) must be on disk: UserInputError otherwise."""
    from ..export import MANIFEST, read_manifest

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
    """A folder's ``model.onnx`` with its ``test_data_set_*`` (none: judged as a bare graph)."""
    model_path = path / "model.onnx"
    if not model_path.exists():
        raise UserInputError(f"{path}: no model.onnx in this folder")
    model = load_graph(model_path)
    return Subject(path.name, model_path, model, load_test_sets(path, model))


def export_subject(name: str, graphs_dir: Path) -> Subject:
    """Export variant ``name`` now and load it, test data included, into memory."""
    from ..export import export_variants

    with tempfile.TemporaryDirectory(prefix="onnxconv-validate-") as tmp:
        (result,) = export_variants([name], tmp)
        subject = load_folder(Path(tmp) / name)
    subject.model_path = Path(f"{name} (exported now: not in {graphs_dir})") / "model.onnx"
    subject.variant, subject.config, subject.entry = name, result.entry["config"], result.entry
    return subject


def attach_variant(subject: Subject, manifest_path: Path, rebuild_modules: bool = True) -> None:
    """If the folder's manifest names a zoo variant, PyTorch is the source that decides; if it
    names the user's module (``onnxconv export --module``), that module is rebuilt and decides.

    A model whose sha256 no longer matches the manifest was changed after export: PyTorch still
    decides (the manifest says what the graph should compute), and the subject notes the change.
    """
    from ..export_layout import check_entry, file_sha256, load_json

    if not manifest_path.exists():
        return
    manifest = load_json(manifest_path)
    try:
        entry = manifest["graphs"][subject.label]
    except (KeyError, TypeError):  # someone else's manifest.json, or a graph it does not list
        return
    entry = check_entry(manifest_path, subject.label, entry)
    named = entry.get("variant")
    if named and named not in variants.REGISTRY and not entry.get("module"):
        subject.note(
            f"{manifest_path} names variant {named!r}, which this zoo does not have"
            f"{variants.did_you_mean(named)}: PyTorch cannot speak for the graph"
        )
    if entry.get("variant") in variants.REGISTRY:
        subject.variant, subject.config, subject.entry = entry["variant"], entry["config"], entry
        decider = entry["variant"]
    elif isinstance(entry, dict) and entry.get("module"):
        if not rebuild_modules:
            subject.note(
                f"{manifest_path} names the module {entry['module'].get('path')}, not rebuilt "
                "(--no-module): the stored outputs decide"
            )
            return
        if not attach_recipe(subject, entry, manifest_path):
            return
        decider = entry["module"]["path"]
    else:
        return
    if entry.get("sha256") != file_sha256(subject.model_path):
        subject.notes.append(
            f"{subject.model_path} differs from the sha256 in {manifest_path}: "
            f"changed since export; PyTorch ({decider}) still decides"
        )


def attach_recipe(subject: Subject, entry: dict[str, Any], manifest_path: Path) -> bool:
    """Rebuild the user's module that the manifest names; it speaks for the graph only when its
    weights are those that were exported (same fingerprint). Returns whether it was attached."""
    from ..user_model import rebuild_from_manifest, weights_fingerprint

    recipe, module, notes = rebuild_from_manifest(entry["module"], manifest_path)
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
    """The user says ``module`` is what the graph should compute (``validate --module``); where
    none of its weights is in the graph, :attr:`Subject.foreign_weights` says so."""
    from ..user_model import weights_in_graph

    subject.module, subject.module_source, subject.recipe = module.eval(), source, recipe
    subject.module_named_by_user = True
    found, total = weights_in_graph(module, subject.model)
    if total and not found:
        subject.foreign_weights = (
            f"none of the {total} weight tensors of {source} is among the initializers of "
            f"{subject.model_path} (compared as sorted values; a BatchNorm folded into a Conv "
            "changes them too): a graph exported from other weights (another seed: "
            "--module-seed; a checkpoint, another configuration) fails against the module as an "
            "export defect"
        )
