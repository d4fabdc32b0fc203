"""A tuned deployment validated again: ``onnxconv validate DIR/tuned.json``.

``tuned.json`` says what tune chose (:mod:`.report`): the graph (``model.tuned.onnx``, by its
sha256), the original it was proven against (path and sha256), the EP, threads, session
settings and precision, and for a lower precision the user's accuracy budget. A CI gate wants
that claim checked on the machine that ships it, with the settings it ships with: this module
loads the record, refuses a graph or an original that changed since (tune again), and runs the
same check tune ran before the candidate could win (:class:`.proof.Prover`): validate's cell
against the original's sources for fp32, validate's judgement within the budget on the
evaluation inputs for a lower precision. The result is an ordinary
:class:`onnxconv.validate.ValidationReport` with one cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from onnxconv import validate
from onnxconv.errors import UserInputError, one_line
from onnxconv.export_layout import file_sha256, graph_sha256
from onnxconv.machine import check_threads
from onnxconv.quant_metrics import Bound, describe_budget, parse_budget
from onnxconv.user_model import ModuleRecipe

from .proof import Prover, proof_batches
from .report import TUNED_SCHEMA
from .settings import SessionSettings


@dataclass(frozen=True)
class TunedRecord:
    """A ``tuned.json`` read and checked: its graph and original are the ones tune wrote and
    proved against, and how the graph is deployed."""

    path: Path
    model_path: Path
    original_path: Path
    ep: str
    threads: int
    batch: int
    precision: str
    settings: SessionSettings
    budget: dict[str, Bound] | None
    #: A pure permutation, which tune required to equal the original bit for bit.
    bit_identical_required: bool = False
    #: Who decided tune's proof (``torch``, ``stored``, ...): the check again needs them too.
    proven_by: tuple[str, ...] = ()
    #: The ``--module`` that spoke for the original in tune (``ModuleRecipe.to_dict()``).
    module: dict[str, Any] | None = None


@dataclass
class TunedDeployment:
    """A record with its graph and the original's subject (its sources) loaded."""

    record: TunedRecord
    original: validate.Subject
    model: onnx.ModelProto

    @property
    def label(self) -> str:
        return f"{self.original.label} (tuned)"


def tuned_record_path(target: str | Path) -> Path | None:
    """The ``tuned.json`` a TARGET names (validate and bench take one): the file itself, or the
    one in a folder tune wrote with ``--out`` (``tuned.json`` and no ``model.onnx``: a folder
    with both is the original's test-data folder, tuned in place, and names the original);
    None when it names none."""
    path = Path(target)
    if path.suffix == ".json":
        return path
    if path.is_dir() and (path / "tuned.json").is_file() and not (path / "model.onnx").exists():
        return path / "tuned.json"
    return None


def is_tuned_record(target: str | Path) -> bool:
    """Whether a TARGET names a ``tuned.json`` (:func:`tuned_record_path`)."""
    return tuned_record_path(target) is not None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: not a tuned.json ({one_line(error)})") from None
    if not isinstance(data, dict) or data.get("schema") != TUNED_SCHEMA:
        raise UserInputError(f"{path}: not a tuned.json (schema is not {TUNED_SCHEMA!r})")
    return data


def _original_path(path: Path, data: dict[str, Any]) -> Path:
    """The original graph tune proved against, as it was then (same sha256): its path relative
    to the record's folder, else where it was (records before that held the path as given to
    tune, relative to its working directory, which is tried last). The first place that holds
    the same bytes wins; a file found only with other bytes is refused."""
    recorded = Path(data["original"]["path"])
    places = [path.parent / recorded, Path(data["original"].get("absolute") or recorded), recorded]
    found = [p for p in dict.fromkeys(places) if p.is_file()]
    if not found:
        raise UserInputError(f"{path}: the original graph {recorded} is gone")
    sha = data["original"].get("sha256")
    same = next((p for p in found if sha in (None, graph_sha256(p))), None)
    if same is None:
        raise UserInputError(
            f"{path}: the original graph {found[0]} changed since tune proved against it "
            "(the sha256 of its file and external data differs): tune again"
        )
    return same


def _count(path: Path, key: str, value: Any) -> int:
    """A positive integer of the record (threads: no more than this machine runs), else one line
    naming the record and the key."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{path}: {key} must be a positive integer, not {value!r}")
    try:
        return check_threads(value) if key == "threads" else value
    except UserInputError as error:
        raise UserInputError(f"{path}: {key}: {error}") from None


def _settings(path: Path, ep: Any, session: dict[str, Any]) -> SessionSettings:
    """The record's session settings, with its EP and level, as ONNX Runtime takes them; else
    one line naming the record (a hand edit is found here, not as a session error without a
    file). A missing key is the caller's KeyError."""
    import onnxruntime as ort

    from onnxconv import runtime

    try:
        settings = SessionSettings(
            opt_level=session["opt_level"],
            config=tuple(session["session_config"].items()),
            options=tuple(session["session_options"].items()),
            cuda=tuple(session["cuda_options"].items()),
        )
        runtime.Target(str(ep), settings.opt_level)
        runtime.apply_session_settings(
            ort.SessionOptions(), dict(settings.config), dict(settings.options)
        )
    except AttributeError:  # a session_config or the like that is not an object
        raise UserInputError(f"{path}: session: {session!r} is not a tuned session") from None
    except (UserInputError, TypeError, ValueError) as error:
        raise UserInputError(f"{path}: {one_line(error)}") from None
    return settings


def read_record(record: str | Path) -> TunedRecord:
    """Read ``record`` (a ``tuned.json``) and check that its graph and original are still the
    ones tune wrote and proved against (``record`` may be a folder: :func:`tuned_record_path`)."""
    path = tuned_record_path(record) or Path(record)
    data = _read(path)
    try:
        model_path = path.parent / data["model"]
        if not model_path.is_file():
            raise UserInputError(f"{path}: its graph {model_path} is gone")
        if file_sha256(model_path) != data["sha256"]:
            raise UserInputError(
                f"{path}: {model_path} changed since tune wrote it (sha256 differs)"
            )
        settings = _settings(path, data["ep"], data["session"])
        precision = data.get("precision", "fp32")
        budget = None
        if precision != "fp32":
            if not data.get("accuracy_budget"):
                raise UserInputError(f"{path}: a {precision} deployment without its budget")
            budget = parse_budget(data["accuracy_budget"])
        return TunedRecord(
            path=path,
            model_path=model_path,
            original_path=_original_path(path, data),
            ep=data["ep"],
            threads=_count(path, "threads", data["threads"]),
            batch=_count(path, "batch", data["batch"]),
            precision=precision,
            settings=settings,
            budget=budget,
            bit_identical_required=bool((data.get("proof") or {}).get("bit_identical_required")),
            proven_by=tuple((data.get("proof") or {}).get("deciders") or ()),
            module=data["original"].get("module"),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise UserInputError(f"{path}: not a complete tuned.json (missing {error})") from None


def load_tuned(
    record: str | Path, rebuild_modules: bool = True, recorded_module: bool = True
) -> TunedDeployment:
    """:func:`read_record`, then the tuned graph and the original's subject: a test-data folder
    brings its stored outputs and manifest (PyTorch) as sources, and the ``--module`` tune was
    given (recorded in ``tuned.json``) is built again where ``recorded_module`` (the caller
    names another)."""
    checked = read_record(record)
    original = checked.original_path
    folder = original.parent if original.name == "model.onnx" else None
    subject = validate.load_subject(str(folder or original), rebuild_modules=rebuild_modules)
    if checked.module and rebuild_modules and recorded_module:
        recipe = ModuleRecipe.from_dict(checked.module)
        module, notes = recipe.build(named_by=f"{checked.path}: the module tune proved with")
        validate.attach_module(subject, module, recipe.path, recipe.to_dict())
        subject.notes += notes
    return TunedDeployment(checked, subject, onnx.load(checked.model_path))


def recheck(tuned: TunedDeployment, threads: int | None = None) -> validate.ValidationReport:
    """The check tune ran before ``tuned`` could win, run again here (``threads``: default the
    record's)."""
    from onnxconv.report import environment

    threads = tuned.record.threads if threads is None else threads
    prover = Prover(
        tuned.original,
        tuned.record.ep,
        threads=threads,
        batches=proof_batches(tuned.original.model, tuned.record.batch),
    )
    label = tuned.label
    settings: dict[str, Any] = {
        "tuned": str(tuned.record.path),
        "model": str(tuned.record.model_path),
        "ep": tuned.record.ep,
        "precision": tuned.record.precision,
        "session": tuned.record.settings.to_dict(),
        "threads": threads,
        "sources": prover.sources(),
        "stored_outputs": "trusted",
    }
    if tuned.record.budget is None:
        cell, notes = prover.cell(label, tuned.model, tuned.record.settings)
        cases = [c.label for c in prover.cases(label, tuned.model)]
        if tuned.record.bit_identical_required and cell.status != "unavailable":
            # As tune proved it: a permutation gives the original's outputs bit for bit, and
            # where no tolerance can judge the sources (insensitive) only that proves it.
            same, worst = prover.bit_identity(label, tuned.model, tuned.record.settings)
            if not same:
                cell.status, cell.kind = "fail", "export"
                cell.reason = (
                    "not bit for bit the original's outputs on CPU (largest difference "
                    f"{worst:.3g}), which tune proved and the record requires"
                    + (f"; {cell.reason}" if cell.reason else "")
                )
            elif cell.kind == "insensitive":
                cell.status, cell.kind = "pass", ""
                cell.reason = (
                    "bit for bit the original's outputs on CPU, as tune proved it (the sources "
                    f"cannot judge: {cell.reason})"
                )
    else:
        cell = prover.precision_cell(
            label,
            tuned.original.model,
            tuned.model,
            tuned.record.precision,
            tuned.record.settings,
            tuned.record.budget,
        )
        notes = []
        cases = [f"{len(prover.evaluation().feeds)} evaluation inputs"]
        settings["accuracy_budget"] = describe_budget(tuned.record.budget)
    cell.target = f"{cell.target} {tuned.record.settings.name}"
    if "torch" in tuned.record.proven_by and not tuned.original.has_torch:
        notes.append(
            "tune proved this deployment against a PyTorch module, which nothing names here "
            f"(--module names it): {', '.join(prover.sources())} judged this check instead"
        )
    subject = {
        "label": label,
        "model": str(tuned.record.model_path),
        "variant": tuned.original.variant,
        "module": tuned.original.module_source or None,
        "config": tuned.original.config,
        "cases": cases,
        "notes": [*tuned.original.notes, *notes],
        "opinions": sorted(set(cell.deciders) | set(cell.agreed)),
    }
    return validate.ValidationReport(environment(), settings, [subject], [cell])
