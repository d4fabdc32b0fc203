"""Detection power, measured: the mutation suite (:mod:`onnxconv.mutations`) through ``validate``.

Every mutant of every graph is validated the way a user would meet it:

- ``folder``: a test-data folder with ``model.onnx`` and ``test_data_set_0`` and no manifest, so
  the stored outputs are the source that decides;
- ``module``: the bare ``model.onnx`` beside the PyTorch module it was exported from (zoo graphs
  only), so PyTorch decides.

A mutant is *caught* when its cell fails (``validate`` exits 1). Subtle mutants (a change below
the default fp32 tolerance by design) that pass are reported with their *margin* (the worst
element's error as a fraction of what the tolerance allows) and validated again at
:data:`TIGHT`, which must catch them while the unmutated graph still passes at :data:`TIGHT`.
The unmutated graphs are validated over :data:`CLEAN_SEEDS` and both input distributions at every
optimisation level: any failure or warning there is a false alarm.

``precision="int8"`` measures the verdict on quantized graphs: every graph is first quantized
as ``validate --precision int8`` deploys it (QDQ, per-channel weights, MinMax calibration on
its seeded calibration inputs) and held as the user holds a quantized graph, beside its fp32
stored outputs or its PyTorch module; validate judges it by the int8 bounds. The mutations
are those that apply to a QDQ graph (the int8 ones among them); the subtle ones, sized against
the fp32 elementwise tolerance, lie far inside int8's own noise and are not planted.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from . import mutations, validate, variants
from .errors import UserInputError
from .machine import describe_gpus
from .parity import Tolerance
from .precisions import NoDeployment
from .runtime import EpUnavailable, ep_unavailable_reason

TIGHT = Tolerance(atol=1e-5, rtol=1e-5)
"""The stated tighter tolerance that subtle mutants are checked at."""
CLEAN_SEEDS = (0, 1, 2, 3, 4)
LAYOUTS = ("folder", "module")
LEVELS = ("disabled", "basic", "extended", "all")
PRECISIONS = ("fp32", "int8")


@dataclass
class Original:
    """An unmutated graph with its stored test data, and the manifest entry naming its PyTorch
    module when it is a zoo graph."""

    label: str
    model: onnx.ModelProto
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    entry: dict[str, Any] | None = None


@dataclass
class Planted:
    graph: str
    mutation: str
    layout: str
    description: str
    subtle: bool
    status: str
    kind: str
    reason: str
    output: str | None = None
    worst_index: list[int] | None = None
    margin: float | None = None  # the worst error / what the tolerance allows (>1: caught)
    tight_status: str | None = None  # the verdict at TIGHT, for a subtle mutant that passed
    tight_clean: str | None = None  # the unmutated graph's verdict at TIGHT (must be pass)

    @property
    def caught(self) -> bool:
        """Failed at the default tolerance, or at TIGHT where the unmutated graph passes."""
        return self.status == "fail" or (self.tight_status == "fail" and self.tight_clean == "pass")


@dataclass
class Clean:
    graph: str
    layout: str
    tolerance: str
    statuses: dict[str, int]
    reason: str

    @property
    def false_alarm(self) -> bool:
        return set(self.statuses) != {"pass"}

    @property
    def verdict(self) -> str:
        return next(s for s in ("fail", "warn", "unavailable", "pass") if s in self.statuses)


@dataclass
class DetectionReport:
    """JSON schema (``to_dict``): ``schema`` (1), ``kind`` ("detection"), ``environment``,
    ``settings`` (levels, seeds, tolerances), ``planted`` (graph, mutation, layout, what was
    planted, verdict, kind, the output and worst element reported, margin, the verdict at the
    tight tolerance; null margin: NaN or Inf where the source is finite), ``clean`` (every
    unmutated graph and layout: cell statuses), ``summary``."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    planted: list[Planted] = field(default_factory=list)
    clean: list[Clean] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        default = [p for p in self.planted if p.status == "fail"]
        return {
            "planted": len(self.planted),
            "caught": sum(p.caught for p in self.planted),
            "caught_at_default_tolerance": len(default),
            "subtle_caught_only_at_tight": sum(
                p.caught and p.status != "fail" for p in self.planted
            ),
            "clean_checks": len(self.clean),
            "false_alarms": sum(c.false_alarm for c in self.clean),
        }

    @property
    def ok(self) -> bool:
        s = self.summary()
        return s["caught"] == s["planted"] and s["false_alarms"] == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "kind": "detection",
            "environment": self.environment,
            "settings": self.settings,
            "planted": [
                {**asdict(p), "margin": _finite(p.margin), "caught": p.caught} for p in self.planted
            ],
            "clean": [{**asdict(c), "false_alarm": c.false_alarm} for c in self.clean],
            "summary": self.summary(),
        }


def _finite(value: float | None) -> float | None:
    """JSON has no Inf: a non-finite margin (NaN or Inf where the source is finite) is null."""
    return value if value is not None and math.isfinite(value) else None


def load_original(folder: Path, entry: dict[str, Any] | None = None) -> Original:
    """A test-data folder (``model.onnx`` + ``test_data_set_0``) as a graph to mutate."""
    subject = validate.load_folder(folder)
    first = subject.test_sets[0]
    return Original(folder.name, subject.model, first.inputs, first.outputs, entry)


def zoo_originals(graphs_dir: Path, names: Iterable[str] | None = None) -> list[Original]:
    """The graphs of a folder written by ``onnxconv export``, each with its manifest entry."""
    from .export_layout import read_manifest

    manifest_path = graphs_dir / "manifest.json"
    if not manifest_path.exists():
        raise UserInputError(f"{manifest_path}: no such file (not a folder written by export)")
    entries = read_manifest(graphs_dir)["graphs"]
    wanted = list(entries) if names is None else list(names)
    unknown = [n for n in wanted if n not in entries]
    if unknown:
        raise UserInputError(f"{manifest_path}: no graph named {', '.join(unknown)}")
    # The module layout rebuilds a zoo variant; a graph exported from the user's own module
    # (no variant in its entry) is planted in the folder layout only.
    return [
        load_original(
            graphs_dir / n, entries[n] if entries[n].get("variant") in variants.REGISTRY else None
        )
        for n in wanted
    ]


def _write_folder(
    folder: Path,
    model: onnx.ModelProto,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
) -> None:
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    for kind, arrays in (("input", inputs), ("output", outputs)):
        for i, (name, array) in enumerate(arrays.items()):
            (data / f"{kind}_{i}.pb").write_bytes(
                numpy_helper.from_array(array, name).SerializeToString()
            )


def subject_for(
    original: Original,
    model: onnx.ModelProto,
    layout: str,
    work: Path,
    stored_outputs: dict[str, np.ndarray] | None = None,
) -> validate.Subject:
    """``model`` as a user would hold it: a test-data folder, or a bare file beside its module."""
    folder = work / original.label
    if layout == "folder":
        _write_folder(folder, model, original.inputs, stored_outputs or original.outputs)
        return validate.load_subject(str(folder))
    if layout != "module" or original.entry is None:
        raise UserInputError(f"{original.label}: layout {layout!r} needs a zoo graph's module")
    folder.mkdir(parents=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    subject = validate.load_subject(str(path))
    subject.variant, subject.config = original.entry["variant"], original.entry["config"]
    subject.entry = original.entry
    return subject


def quantized(original: Original, work: Path) -> Original:
    """``original`` deployed at int8 as validate deploys it (calibrated on the seeded
    calibration inputs of the graph as a test-data folder), with the fp32 stored data."""
    from . import precisions
    from .feeds import DEFAULT_MAX_BYTES
    from .validate.deployed import calibration_feeds

    subject = subject_for(original, original.model, "folder", work / "calibration")
    calibration = calibration_feeds(subject, DEFAULT_MAX_BYTES)
    model = precisions.deploy(original.model, "int8", calibration, label=original.label)
    return Original(original.label, model, original.inputs, original.outputs, original.entry)


def _verdict(
    subject: validate.Subject,
    ep: str,
    levels: Iterable[str],
    seeds: Iterable[int],
    tol: Tolerance | None,
    localise: bool = True,
) -> list[validate.Cell]:
    report = validate.validate(
        [subject],
        [ep],
        list(levels),
        ["fp32"],
        seeds=tuple(seeds),
        tol=tol,
        localise_failures=localise,
    )
    unavailable = [c for c in report.cells if c.status == "unavailable"]
    if unavailable:
        raise EpUnavailable(ep, unavailable[0].reason)
    return report.cells


def _first_problem(cells: list[validate.Cell]) -> validate.Cell:
    order = {"fail": 0, "warn": 1, "pass": 2}
    return min(cells, key=lambda c: order.get(c.status, 3))


def _margin(cells: list[validate.Cell]) -> float:
    """The largest worst-element ratio (error / allowed) against the deciding source."""
    ratios = [
        check.results[check.decided_by or validate.REFERENCE].worst.tol_ratio
        for cell in cells
        for case in cell.cases
        for check in case.outputs
        if check.results[check.decided_by or validate.REFERENCE].worst is not None
    ]
    return max(ratios, default=0.0)


def _planted(
    original: Original,
    mutant: mutations.Mutant,
    layout: str,
    ep: str,
    levels: Iterable[str],
    seeds: Iterable[int],
    tight_clean: Callable[[], str],
) -> Planted:
    with tempfile.TemporaryDirectory(prefix="onnxconv-mutant-") as tmp:
        subject = subject_for(original, mutant.model, layout, Path(tmp), mutant.stored_outputs)
        cells = _verdict(subject, ep, levels, seeds, None)
        cell = _first_problem(cells)
        record = Planted(
            original.label,
            mutant.name,
            layout,
            mutant.description,
            mutant.subtle,
            cell.status,
            cell.kind,
            cell.reason,
            # the int8 bounds are not an elementwise tolerance: no margin to measure against it
            margin=None if any(c.quant for c in cells) else _margin(cells),
        )
        failing = next((o for case in cell.cases for o in case.outputs if o.status == "fail"), None)
        if failing is not None:
            worst = failing.results[failing.decided_by or validate.REFERENCE].worst
            record.output = failing.output
            record.worst_index = list(worst.index) if worst else None
        elif mutant.subtle:
            record.tight_status = _first_problem(
                _verdict(subject, ep, levels, seeds, TIGHT, localise=False)
            ).status
            record.tight_clean = tight_clean()
    return record


def _clean(
    original: Original,
    layout: str,
    ep: str,
    tol: Tolerance | None,
    seeds: Iterable[int],
    levels: Iterable[str] = LEVELS,
) -> Clean:
    with tempfile.TemporaryDirectory(prefix="onnxconv-clean-") as tmp:
        subject = subject_for(original, original.model, layout, Path(tmp))
        cells = _verdict(subject, ep, levels, seeds, tol)
    statuses: dict[str, int] = {}
    for cell in cells:
        statuses[cell.status] = statuses.get(cell.status, 0) + 1
    reason = next((f"{c.target}: {c.reason}" for c in cells if c.status != "pass"), "")
    return Clean(original.label, layout, "default" if tol is None else str(tol), statuses, reason)


def run_suite(
    originals: list[Original],
    *,
    ep: str = "cpu",
    layouts: Iterable[str] = LAYOUTS,
    names: Iterable[str] | None = None,
    levels: Iterable[str] = ("all",),
    seeds: Iterable[int] = (0,),
    clean_seeds: Iterable[int] = CLEAN_SEEDS,
    precision: str = "fp32",
    progress: Callable[[str, int, int], None] | None = None,
) -> DetectionReport:
    """Plant every applicable mutant (or only the mutations ``names``) in every original,
    validate each on ``ep`` in every layout that applies, and check the originals for false
    alarms; at ``precision`` int8, in each original's int8 deployment (:func:`quantized`). An
    EP that cannot run the graphs raises :class:`EpUnavailable` (never a count)."""
    from .report import environment

    runtime_reason = ep_unavailable_reason(ep)
    if runtime_reason is not None:
        raise EpUnavailable(ep, runtime_reason)
    wanted = None if names is None else set(names)
    unknown = (wanted or set()) - set(mutations.MUTATIONS)
    if unknown:
        raise UserInputError(
            f"unknown mutation {', '.join(sorted(unknown))} (known: "
            f"{', '.join(mutations.MUTATIONS)})"
        )
    if precision not in PRECISIONS:
        raise UserInputError(
            f"detect measures precision {', '.join(PRECISIONS)}, not {precision!r}"
        )
    not_quantized: dict[str, str] = {}
    if precision == "int8":
        deployed = []
        with tempfile.TemporaryDirectory(prefix="onnxconv-int8-") as tmp:
            for i, original in enumerate(originals):
                try:
                    deployed.append(quantized(original, Path(tmp) / str(i)))
                except NoDeployment as error:  # a graph of data movement only
                    not_quantized[original.label] = str(error)
        if not deployed:
            raise UserInputError(f"nothing to plant at int8: {'; '.join(not_quantized.values())}")
        originals = deployed
    bad_layouts = set(layouts) - set(LAYOUTS)
    if bad_layouts:
        raise UserInputError(
            f"unknown layout {', '.join(sorted(bad_layouts))} (known: {', '.join(LAYOUTS)})"
        )
    jobs: list[tuple[Original, mutations.Mutant, str]] = []
    for original in originals:
        for mutant in mutations.mutants(original.model, original.outputs):
            if wanted is not None and mutant.name not in wanted:
                continue
            if mutant.subtle and precision != "fp32":
                continue  # sized against the fp32 tolerance: far inside int8's noise
            for layout in _layouts(original, layouts):
                if layout == "module" and mutant.stored_outputs is not None:
                    continue  # a bare graph has no stored outputs to go stale
                jobs.append((original, mutant, layout))
    report = DetectionReport(
        environment(),
        {
            "ep": ep,
            "precision": precision,
            "levels": list(levels),
            "seeds": list(seeds),
            "distributions": ["normal", "wide"],
            "clean_seeds": list(clean_seeds),
            "clean_levels": list(LEVELS),
            "tight_tolerance": TIGHT.to_dict(),
            "not_quantized": not_quantized,
        },
    )
    tight: dict[tuple[str, str], str] = {}

    def tight_clean(original: Original, layout: str) -> Callable[[], str]:
        def status() -> str:  # once per graph and layout, and only where a subtle mutant needs it
            key = (original.label, layout)
            if key not in tight:
                tight[key] = _clean(original, layout, ep, TIGHT, seeds, levels).verdict
            return tight[key]

        return status

    for index, (original, mutant, layout) in enumerate(jobs):
        if progress:
            progress(f"{original.label} {mutant.name} ({layout})", index, len(jobs))
        report.planted.append(
            _planted(original, mutant, layout, ep, levels, seeds, tight_clean(original, layout))
        )
    tested = {o.label for o, _, _ in jobs}
    for original in (o for o in originals if o.label in tested):
        for layout in _layouts(original, layouts):
            report.clean.append(_clean(original, layout, ep, None, clean_seeds))
    if progress:
        progress("", len(jobs), len(jobs))
    return report


def _layouts(original: Original, layouts: Iterable[str]) -> list[str]:
    return [layout for layout in layouts if layout != "module" or original.entry is not None]


def _precision_text(settings: dict[str, Any]) -> str:
    if settings.get("precision", "fp32") == "fp32":
        return (
            f"fp32, normal and wide inputs; tight tolerance atol {TIGHT.atol:g}, "
            f"rtol {TIGHT.rtol:g}"
        )
    return (
        "int8 (each graph's QDQ deployment, per-channel weights, MinMax calibration, judged by "
        "the int8 bounds; the subtle mutations, sized against the fp32 tolerance, are not "
        "planted)"
    )


def to_markdown(report: DetectionReport) -> str:
    env, s = report.environment, report.summary()
    int8 = report.settings.get("precision", "fp32") == "int8"
    lines = [
        "# onnxconv detection: the mutation suite",
        "",
        f"- machine: {env['machine']['cpu_model']}; created {env['created']}",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if isinstance(v, str)),
        f"- GPU: {describe_gpus(env['machine']) or 'none seen by nvidia-smi'}",
        f"- validated: {report.settings['ep']}, {_precision_text(report.settings)}, levels "
        f"{', '.join(report.settings['levels'])}, seeds {report.settings['seeds']}",
        f"- **caught {s['caught']} of {s['planted']}**"
        + (
            f" ({s['caught_at_default_tolerance']} at the default tolerance, "
            f"{s['subtle_caught_only_at_tight']} subtle ones only at the tight tolerance)"
            if not int8
            else ""
        )
        + f"; **false alarms {s['false_alarms']} of {s['clean_checks']}** clean checks "
        f"(unmutated graphs, seeds {report.settings['clean_seeds']}, every level, default "
        f"{'bounds' if int8 else 'tolerance'})",
        *(
            f"- not planted: {label} has no int8 deployment ({why})"
            for label, why in report.settings.get("not_quantized", {}).items()
        ),
        "",
        "## Planted defects",
        "",
        "| graph | mutation | layout | verdict | kind | output, worst element | margin | "
        "at tight tolerance: mutant / unmutated | what was planted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in report.planted:
        where = f"{p.output} {tuple(p.worst_index)}" if p.output and p.worst_index else ""
        margin = f"{p.margin:.3g}×" if p.margin is not None else ""
        lines.append(
            f"| {p.graph} | {p.mutation}{' (subtle)' if p.subtle else ''} | {p.layout} "
            f"| {p.status} | {p.kind} | {where} | {margin} | "
            f"{p.tight_status + ' / ' + str(p.tight_clean) if p.tight_status else ''} | "
            f"{p.description.replace('|', '/')} |"
        )
    explained = (
        "The int8 bounds (SQNR, cosine, error over the output's range, its signed mean) judge "
        "each output as a whole: a defect they pass leaves less error at the output than int8 "
        "rounding does."
        if int8
        else "Margin: the worst element's error over what the tolerance allows, against the "
        "deciding source (above 1 fails). A subtle mutant below 1 passes at the default "
        "tolerance by design and is then validated at the tight tolerance; it counts as "
        "caught there only where the unmutated graph passes at the tight tolerance."
    )
    lines += [
        "",
        explained,
        "",
        "## Unmutated graphs (false alarms)",
        "",
        "| graph | layout | tolerance | cells | first problem |",
        "|---|---|---|---|---|",
    ]
    for c in report.clean:
        cells = ", ".join(f"{n} {status}" for status, n in sorted(c.statuses.items()))
        lines.append(
            f"| {c.graph} | {c.layout} | {c.tolerance} | {cells} | {c.reason.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"
