"""PyTorch -> ONNX for the zoo, in the ONNX test-data layout, checked before it is kept.

The pieces: the exporter call (:mod:`onnxconv.export_onnx`), the checks
(:mod:`onnxconv.export_checks`), the folder layout and manifest (:mod:`onnxconv.export_layout`);
this module runs them per variant and writes the result atomically. Their names are importable
from here too.

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

import functools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from . import variants
from .errors import UserInputError
from .export_checks import (
    REPRODUCE_ATOL,
    REPRODUCE_RTOL,
    check_export,
    check_reproduces,
    check_valid,
)
from .export_layout import (
    MANIFEST,
    MANIFEST_SCHEMA,
    exporter_versions,
    graph_folders,
    manifest_entry,
    order_key,
    read_manifest,
    symbolic_dims,
    tensor_pb,
)
from .export_onnx import (
    DEFAULT_OPSET,
    EXPORTERS,
    OPSET_RANGE,
    VOLATILE_METADATA,
    ExportOptions,
    dynamic_axes,
    exporter_failure,
    input_axes,
    io_names,
    quiet,
    strip_stack_traces,
    to_onnx,
)
from .locking import (
    JOURNAL,
    clean_leftovers,
    folder_lock,
    replace_folder,
    signals_deferred,
    staging_dir,
)
from .report import write_json


@dataclass
class ExportResult:
    variant: str
    folder: Path
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.folder / "model.onnx"


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
    check_export(model, spec, config, example.numpy(), expected, module)
    model_bytes = model.SerializeToString()
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model_bytes)
    (data / "input_0.pb").write_bytes(tensor_pb(example.numpy(), "input"))
    (data / "output_0.pb").write_bytes(tensor_pb(expected, "output"))
    return manifest_entry(spec, config, model, model_bytes, axes, options, expected.shape)


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
        raise variants.unknown_config_keys(unknown, specs)
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
        read_manifest(out, check_entries=False)  # an unreadable one stops it before any work
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
        manifest = read_manifest(out, check_entries=False)
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


#: Names other modules import from here. ``check_export``, ``replace_folder`` and ``write_json``
#: are looked up in this module's globals, so patching them here reaches the export.
__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "JOURNAL",
    "MANIFEST",
    "MANIFEST_SCHEMA",
    "OPSET_RANGE",
    "REPRODUCE_ATOL",
    "REPRODUCE_RTOL",
    "VOLATILE_METADATA",
    "ExportOptions",
    "ExportResult",
    "apply_journal",
    "check_export",
    "check_reproduces",
    "check_valid",
    "commit",
    "dynamic_axes",
    "export_all_or_nothing",
    "export_to_folder",
    "export_variants",
    "exporter_failure",
    "exporter_versions",
    "graph_folders",
    "input_axes",
    "io_names",
    "manifest_entry",
    "order_key",
    "quiet",
    "read_manifest",
    "recover",
    "replace_folder",
    "strip_stack_traces",
    "symbolic_dims",
    "tensor_pb",
    "to_onnx",
    "write_json",
]
