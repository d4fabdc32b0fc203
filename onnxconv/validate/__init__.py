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

Where each part lives: :mod:`.subjects` (loading what is validated), :mod:`.cases` (inputs and
the opinions on them), :mod:`.cells` (a float target: run, judge, localise), :mod:`.deployed`
(the graph at each precision, int8 cells), :mod:`.run` (:func:`validate` and its report) and
:mod:`.text` (the report in words: headlines, rows, Markdown).
"""

from ..verdict import REFERENCE, SOURCES, STORED, TORCH
from .cases import (
    DEFAULT_SPATIAL,
    Case,
    check_feeds,
    departure,
    dynamic_batch,
    fixed_batch,
    make_case,
    make_cases,
    reference_outputs,
    spatial_sizes,
    symbolic_axes,
    torch_module,
    torch_outputs,
    with_reference,
)
from .cells import CaseResult, Cell, fresh_export, judge_case, localise, run_cell, run_on_target
from .deployed import (
    FP32_GRAPH,
    Evaluation,
    calibration_feeds,
    deployments,
    evaluation,
    run_judged_cell,
    seeded_feeds,
    undeployable_cell,
)
from .run import ValidationReport, validate
from .subjects import (
    Subject,
    TestSet,
    attach_module,
    attach_recipe,
    attach_variant,
    check_finite_input,
    check_graphs_dir,
    check_stored_output,
    export_subject,
    load_folder,
    load_subject,
    load_test_sets,
    read_pb,
)
from .text import brief_rows, headline_text, to_markdown

__all__ = [
    "REFERENCE",
    "SOURCES",
    "STORED",
    "TORCH",
    "DEFAULT_SPATIAL",
    "Case",
    "check_feeds",
    "departure",
    "dynamic_batch",
    "fixed_batch",
    "make_case",
    "make_cases",
    "reference_outputs",
    "spatial_sizes",
    "symbolic_axes",
    "torch_module",
    "torch_outputs",
    "with_reference",
    "CaseResult",
    "Cell",
    "fresh_export",
    "judge_case",
    "localise",
    "run_cell",
    "run_on_target",
    "FP32_GRAPH",
    "Evaluation",
    "calibration_feeds",
    "deployments",
    "evaluation",
    "run_judged_cell",
    "seeded_feeds",
    "undeployable_cell",
    "ValidationReport",
    "validate",
    "Subject",
    "TestSet",
    "attach_module",
    "attach_recipe",
    "attach_variant",
    "check_graphs_dir",
    "check_finite_input",
    "check_stored_output",
    "export_subject",
    "load_folder",
    "load_subject",
    "load_test_sets",
    "read_pb",
    "brief_rows",
    "headline_text",
    "to_markdown",
]
