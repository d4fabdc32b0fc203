"""PyTorch -> ONNX for the zoo, in the ONNX test-data layout, checked before it is kept.

    <out>/<variant>/model.onnx
    <out>/<variant>/test_data_set_0/input_0.pb     seeded input (TensorProto)
    <out>/<variant>/test_data_set_0/output_0.pb    PyTorch's fp32 output (TensorProto)
    <out>/manifest.json                            one entry per graph (see ``manifest_entry``)

onnx's backend test runner and ONNX Runtime's ``onnx_test_runner`` read these folders as they are.

Every export is checked before it is kept: ``onnx.checker`` (full check), strict shape
inference, the structure its family promises (``graph.checks``), and ONNX Runtime reproducing
PyTorch's output. All graphs of one call are staged in a temporary folder beside the output and
moved into place only when every one passed, so a failed or interrupted export leaves the
previous graphs untouched.

The swap-in and the manifest update happen under the output folder's lock
(:mod:`onnxconv.locking`), with the manifest re-read there, so concurrent exports into one folder
each add their graphs and none is lost. The swap is recorded first in a commit journal
(``.onnxconv-commit.json``): an export killed in the middle of it is rolled forward by the next
export into that folder, so the manifest describes exactly the graph folders on disk.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from . import variants
from .errors import CheckFailed, UserInputError, one_line
from .graph import checks as graph_checks
from .locking import (
    JOURNAL,
    clean_leftovers,
    folder_lock,
    replace_folder,
    signals_deferred,
    staging_dir,
)
from .report import write_json

EXPORTERS = ("dynamo", "torchscript")
#: Opsets each exporter can write: the dynamo exporter starts at 18 (below it would need
#: onnx's version converter); the TorchScript exporter stops at 20 (torch.onnx._constants).
OPSET_RANGE = {"dynamo": (18, 23), "torchscript": (9, 20)}
DEFAULT_OPSET = 18
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
#: ONNX Runtime must reproduce PyTorch's fp32 output this closely before an export is kept.
REPRODUCE_ATOL, REPRODUCE_RTOL = 1e-4, 1e-3


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    exporter: str = "dynamo"
    dynamic_batch: bool = False
    #: Also make height and width dynamic.
    dynamic_hw: bool = False
    verbose: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.exporter not in EXPORTERS:
            raise UserInputError(
                f"unknown exporter {self.exporter!r} (choose from {', '.join(EXPORTERS)})"
            )
        low, high = OPSET_RANGE[self.exporter]
        if not low <= self.opset <= high:
            raise UserInputError(
                f"opset {self.opset} is not supported by the {self.exporter} "
                f"exporter (supported: {low}..{high})"
            )


@dataclass
class ExportResult:
    variant: str
    folder: Path
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.folder / "model.onnx"


def exporter_versions() -> dict[str, str]:
    """The toolchain that wrote a graph, as its manifest records it (onnxconv, torch, onnx,
    onnxscript, onnxruntime). Not :func:`onnxconv.machine.versions`, which describes the timed
    path of a run (distributions, EPs, Python) and belongs in bench and tune reports."""
    import onnxruntime
    import onnxscript

    from . import __version__

    return {
        "onnxconv": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def dynamic_axes(options: ExportOptions) -> dict[int, str]:
    """Input axis -> symbolic name, for the options asked."""
    axes: dict[int, str] = {}
    if options.dynamic_batch:
        axes[0] = "batch"
    if options.dynamic_hw:  # every zoo variant allows it (tested with both exporters)
        axes.update({2: "height", 3: "width"})
    return axes


@contextlib.contextmanager
def quiet(verbose: bool):
    """Keep the exporters' progress prints, warnings and log lines off the terminal, those that
    torch's C++ side writes straight to file descriptors 1 and 2 included."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch", "torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    sink = io.StringIO()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            _descriptors_silenced(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _descriptors_silenced():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def io_names(prefix: str, count: int) -> list[str]:
    """``["input"]`` for one tensor, ``["input_0", "input_1", ...]`` for several."""
    return [prefix] if count == 1 else [f"{prefix}_{i}" for i in range(count)]


def input_axes(options: ExportOptions, ranks: Sequence[int]) -> list[dict[int, str]]:
    """Per input of the given ranks, the axes the options make dynamic: the batch (axis 0) of
    every input, height and width (axes 2, 3) of the rank-4 ones."""
    axes = []
    for rank in ranks:
        named = dynamic_axes(options) if rank == 4 else {}
        if rank != 4 and options.dynamic_batch and rank >= 1:
            named = {0: "batch"}
        axes.append(named)
    return axes


def to_onnx(
    module: torch.nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    axes: dict[int, str] | list[dict[int, str]],
    options: ExportOptions,
    output_count: int = 1,
) -> onnx.ModelProto:
    """One module -> one self-contained ModelProto. Inputs are named ``input`` (or ``input_0``,
    ``input_1``, ...), outputs ``output`` (or ``output_0``, ...); ``axes`` holds the dynamic axes
    of each input (one dict applies to every input)."""
    examples = example if isinstance(example, tuple) else (example,)
    per_input = axes if isinstance(axes, list) else [axes] * len(examples)
    in_names, out_names = io_names("input", len(examples)), io_names("output", output_count)
    with tempfile.TemporaryDirectory(prefix="onnxconv-export-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        with quiet(options.verbose), torch.no_grad():
            if options.exporter == "dynamo":
                shapes = None
                if any(per_input):
                    dims = {n: torch.export.Dim(n, min=1) for a in per_input for n in a.values()}
                    shapes = tuple({i: dims[n] for i, n in a.items()} or None for a in per_input)
                torch.onnx.export(
                    module,
                    examples,
                    path,
                    dynamo=True,
                    external_data=False,
                    opset_version=options.opset,
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_shapes=shapes,
                )
            else:
                batch = {0: "batch"} if any(0 in a for a in per_input) else {}
                dyn = {n: dict(a) for n, a in zip(in_names, per_input)}
                dyn.update({n: dict(batch) for n in out_names})
                torch.onnx.export(
                    module,
                    examples,
                    path,
                    dynamo=False,
                    opset_version=options.opset,
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_axes=dyn if any(per_input) else None,
                    do_constant_folding=True,
                )
        return strip_stack_traces(onnx.load(path))


def exporter_failure(label: str, exporter: str, error: BaseException) -> CheckFailed:
    """One line from an exporter's long message: the line that names the operator when there is
    one (``aten::...``, ``aten.``, "Unsupported ..."), its first line otherwise."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    keys = ("aten::", "aten.", "torch.ops.", "Unsupported", "not supported")
    said = next((line for line in lines if any(key in line for key in keys)), None)
    return CheckFailed(
        f"{label}: the {exporter} exporter failed: {one_line(said or error)}"
        + ("" if said else " (--verbose shows the exporter's own output)")
    )


#: Node metadata the dynamo exporter fills with absolute source paths and line numbers: it would
#: make the bytes depend on where the checkout lives and on unrelated edits.
VOLATILE_METADATA = ("pkg.torch.onnx.stack_trace",)


def strip_stack_traces(model: onnx.ModelProto) -> onnx.ModelProto:
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    for node in nodes:
        keep = [p for p in node.metadata_props if p.key not in VOLATILE_METADATA]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
    return model


def tensor_pb(array: np.ndarray, name: str) -> bytes:
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name).SerializeToString()


def check_export(
    model: onnx.ModelProto,
    spec: variants.VariantSpec,
    config: dict[str, Any],
    example: np.ndarray,
    expected: np.ndarray,
) -> None:
    """Raise CheckFailed naming the variant and the check that failed."""
    check_valid(model, spec.name)
    if spec.structure_kind:
        graph_checks.assert_structure(
            model, spec.structure_kind, spec.structure(config), source=spec.name
        )
    check_reproduces(model, spec.name, {"input": example}, [expected])


def check_valid(model: onnx.ModelProto, label: str) -> None:
    """``onnx.checker`` (full check) and strict shape inference, or CheckFailed."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise CheckFailed(f"{label}: exported graph is not valid ONNX: {one_line(error)}") from None


def check_reproduces(
    model: onnx.ModelProto, label: str, feeds: dict[str, np.ndarray], expected: list[np.ndarray]
) -> None:
    """ONNX Runtime (CPU) must give PyTorch's outputs, in order, or CheckFailed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, feeds)
    for name, actual, want in zip((o.name for o in model.graph.output), outputs, expected):
        if actual.shape != want.shape or not np.allclose(
            actual, want, REPRODUCE_ATOL, REPRODUCE_RTOL
        ):
            worst = np.abs(actual - want).max() if actual.shape == want.shape else "shape"
            raise CheckFailed(
                f"{label}: ONNX Runtime does not reproduce PyTorch's output {name!r} "
                f"(max abs error {worst}, atol {REPRODUCE_ATOL}, rtol {REPRODUCE_RTOL})"
            )


def symbolic_dims(info: onnx.ValueInfoProto) -> dict[str, str]:
    """``{axis: name}`` of a graph input's or output's symbolic dims (what may vary at run time)."""
    dims = info.type.tensor_type.shape.dim
    return {str(i): d.dim_param or "?" for i, d in enumerate(dims) if not d.HasField("dim_value")}


def manifest_entry(
    spec: variants.VariantSpec,
    config: dict[str, Any],
    model: onnx.ModelProto,
    model_bytes: bytes,
    axes: dict[int, str],
    options: ExportOptions,
    output_shape: tuple[int, ...],
) -> dict[str, Any]:
    cost = spec.cost(config)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "variant": spec.name,
        "family": spec.family,
        "paper": spec.paper,
        "config": config,
        "opset": opset,
        "exporter": options.exporter,
        "ir_version": model.ir_version,
        "seed": options.seed,
        "inputs": [
            {
                "name": "input",
                "shape": list(spec.input_shape(config)),
                "dtype": "float32",
                "dynamic_axes": {str(i): n for i, n in axes.items()},
            }
        ],
        "outputs": [
            {
                "name": "output",
                "shape": list(output_shape),
                "dtype": "float32",
                "dynamic_axes": symbolic_dims(model.graph.output[0]),
            }
        ],
        "params": cost.params,
        "macs": cost.macs,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "versions": exporter_versions(),
    }


def export_to_folder(
    spec: variants.VariantSpec, config: dict[str, Any], options: ExportOptions, folder: Path
) -> dict[str, Any]:
    """Export, check and write one graph folder; returns its manifest entry."""
    module = spec.build(config, seed=options.seed)
    example = spec.example_input(config, seed=options.seed)
    with torch.no_grad():
        expected = module(example).numpy()
    axes = dynamic_axes(options)
    try:
        model = to_onnx(module, example, axes, options)
    except Exception as error:  # the exporters raise many types; the user needs one line
        raise exporter_failure(spec.name, options.exporter, error) from None
    check_export(model, spec, config, example.numpy(), expected)
    model_bytes = model.SerializeToString()
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model_bytes)
    (data / "input_0.pb").write_bytes(tensor_pb(example.numpy(), "input"))
    (data / "output_0.pb").write_bytes(tensor_pb(expected, "output"))
    return manifest_entry(spec, config, model, model_bytes, axes, options, expected.shape)


def read_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST
    if not path.exists():
        return {"schema": MANIFEST_SCHEMA, "graphs": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest["graphs"], dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UserInputError(
            f"{path}: not an onnxconv manifest (invalid JSON or no 'graphs')"
        ) from None
    return manifest


def graph_folders(out_dir: str | os.PathLike) -> list[Path]:
    """The graph folders of ``out_dir`` (those holding a model.onnx), by name; names that start
    with a dot (an export's staging or set-aside folders) are never graphs."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return [
        p
        for p in sorted(out.iterdir())
        if not p.name.startswith(".") and (p / "model.onnx").exists()
    ]


def export_variants(
    names: Iterable[str],
    out_dir: str | os.PathLike,
    options: ExportOptions = ExportOptions(),
    overrides: dict[str, Any] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[ExportResult]:
    """Export ``names`` into ``out_dir`` (all or nothing) and update its manifest.

    ``overrides`` apply to every variant that has the key; a key no variant knows is an error.
    """
    options.validate()
    names = list(dict.fromkeys(names))
    if not names:
        raise UserInputError("no variant to export (name one with --variant, or use --all)")
    specs = [variants.get(n) for n in names]
    configs = [
        spec.config({k: v for k, v in (overrides or {}).items() if k in spec.config()})
        for spec in specs
    ]
    unknown = set(overrides or {}) - {k for c in configs for k in c}
    if unknown:
        raise UserInputError(
            f"config key(s) {', '.join(sorted(unknown))} fit none of: {', '.join(names)}"
        )
    for spec, config in zip(specs, configs):
        spec.build(config)  # impossible configs fail here, before anything is written
    jobs = [
        (spec.name, functools.partial(export_to_folder, spec, config, options))
        for spec, config in zip(specs, configs)
    ]
    return export_all_or_nothing(out_dir, jobs, progress)


def export_all_or_nothing(
    out_dir: str | os.PathLike,
    jobs: list[tuple[str, Callable[[Path], dict[str, Any]]]],
    progress: Callable[[str, int, int], None] | None = None,
) -> list[ExportResult]:
    """Run each ``(name, write)`` job into a staged folder, then swap them all in and update the
    manifest (:func:`commit`); a job that raises leaves ``out_dir`` as it was."""
    out = Path(out_dir)
    if out.is_dir():
        read_manifest(out)  # an unreadable manifest stops the export before any work
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = staging_dir(out)
    except OSError as error:
        raise UserInputError(f"{out}: cannot write there ({error.strerror})") from None
    results = []
    try:
        for i, (name, write) in enumerate(jobs):
            if progress:
                progress(name, i, len(jobs))
            entry = write(staging / name)
            results.append(ExportResult(name, out / name, entry))
    except BaseException:  # leave ``out`` as it was: absent, if this call made it
        gone = created and not (out / MANIFEST).exists()  # (no other export committed there)
        shutil.rmtree(out if gone else staging, ignore_errors=True)
        raise
    try:
        commit(out, staging, results)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if progress:
        progress("", len(jobs), len(jobs))
    return results


def commit(out: Path, staging: Path, results: list[ExportResult]) -> None:
    """Swap the staged graphs in and update the manifest, under ``out``'s lock and with SIGINT /
    SIGTERM held off: the manifest is re-read there (another export may have added graphs since)
    and the swap goes through the journal, so even SIGKILL leaves nothing the next export cannot
    finish."""
    with folder_lock(out), signals_deferred():
        recover(out)
        manifest = read_manifest(out)
        graphs = {
            name: entry
            for name, entry in manifest["graphs"].items()
            if (out / name / "model.onnx").exists()  # a folder removed by hand: its entry goes
        }
        graphs.update({result.variant: result.entry for result in results})
        manifest["schema"] = MANIFEST_SCHEMA
        manifest["graphs"] = dict(sorted(graphs.items(), key=lambda kv: order_key(kv[0])))
        # relative to ``out``: the export that rolls a journal forward may run elsewhere
        moves = [[f"{staging.name}/{result.variant}", result.variant] for result in results]
        write_json(out / JOURNAL, {"pid": os.getpid(), "moves": moves, "manifest": manifest})
        apply_journal(out, moves, manifest)


def apply_journal(out: Path, moves: list[list[str]], manifest: dict[str, Any]) -> None:
    """Move each staged folder (a path relative to ``out``) that is still there into place, write
    the manifest, drop the journal. Doing it twice is harmless: what was moved already is not
    there to move."""
    for source, name in moves:
        if (out / source).is_dir():
            replace_folder(out / source, out / name)
    write_json(out / MANIFEST, manifest)
    (out / JOURNAL).unlink(missing_ok=True)


def recover(out: Path) -> None:
    """Finish what an export killed in ``out`` left (call it holding ``out``'s lock): a journal
    there belongs to a dead writer, since the live one removes it before it lets the lock go."""
    journal_path = out / JOURNAL
    if journal_path.exists():
        try:
            journal = json.loads(journal_path.read_text())
            moves, manifest = journal["moves"], journal["manifest"]
        except (ValueError, KeyError, TypeError):  # written atomically: not expected
            journal_path.unlink()
        else:
            apply_journal(out, moves, manifest)
    clean_leftovers(out)


def order_key(name: str) -> tuple[int, str]:
    names = variants.names()
    return (names.index(name), name) if name in names else (len(names), name)
