"""``validate --target-opset N``: the graph a runtime pinned at opset N would load, then validated.

Two routes, in this order:

1. ``onnx.version_converter`` (:func:`onnxconv.opset.convert_opset`), checked by the full
   checker and by running both graphs on ONNX Runtime; it keeps the graph's tensor names.
2. Where the converter fails (onnx 1.23 has no down-adapters for Relu, Reshape or Add 14 -> 13,
   nor Transpose or Concat 13 -> 12) and a PyTorch module speaks for the graph (a zoo variant,
   a ``--module`` export, ``--module``), the module is exported again by the TorchScript
   exporter, which writes opsets 9-20 itself; only where the graph itself computes what that
   module does (at its own opset, on one seeded input): else a fresh export would stand in for
   a graph with a defect, and the cells fail as ``export`` (:class:`GraphDeparts`).

The retargeted subject keeps every opinion (PyTorch, the stored outputs: the function is the
same), its label gains ``@opsetN`` and a note says which route made it and what the converter
reported per operator. When neither route works, :class:`CheckFailed` names each operator
that does not convert.
"""

from __future__ import annotations

import dataclasses

from . import feeds as feeds_module
from . import runtime
from .errors import CheckFailed, OnnxconvError, one_line
from .export import OPSET_RANGE
from .export_layout import symbolic_dims
from .opset import check_target, convert_opset, model_opset


class GraphDeparts(CheckFailed):
    """The graph itself departs from the PyTorch module that would export it again: validating
    a fresh export instead would pass a defect the user's file carries (an ``export`` failure)."""

    kind = "export"


def retarget(subject, opset: int, max_input_bytes: int = feeds_module.DEFAULT_MAX_BYTES, tol=None):
    """``subject`` (a :class:`onnxconv.validate.Subject`) with its graph at default-domain
    ``opset``; the same subject when it already is there. ``tol``: the user's tolerance, which
    the graph is held to before a fresh export stands in for it."""
    from .validate import departure, fresh_export, seeded_feeds, torch_module, torch_outputs

    check_target(opset)
    source = model_opset(subject.model)
    if source == opset:
        return subject
    (feeds,) = seeded_feeds(subject, 0, 1, max_input_bytes)
    result = convert_opset(subject.model, opset, feeds=feeds)
    label = f"{subject.label}@opset{opset}"
    if result.ok:
        note = f"converted from opset {source} to {opset} by onnx.version_converter"
        return _with(subject, result.model, label, note, opset, None)
    low, high = OPSET_RANGE["torchscript"]
    has_module = torch_module(subject) is not None
    if not has_module or not low <= opset <= high:
        why = (
            f"the TorchScript exporter writes opsets {low}-{high}"
            if has_module
            else "no PyTorch module to export again"
        )
        raise CheckFailed(f"{subject.model_path}: {result.summary()}; {why}")
    session = runtime.make_session(subject.model, runtime.Target("cpu", "disabled"))
    departs = departure(
        subject.model,
        [runtime.run(session, feeds)],
        [torch_outputs(subject, torch_module(subject), feeds)],
        ["seed 0"],
        "torch",
        tol,
    )
    if departs:
        raise GraphDeparts(
            f"{subject.model_path}: at its own opset {source}, {departs}; a fresh export at "
            f"opset {opset} would not be this graph, so it is not validated in its place"
        )
    entry = {**(subject.entry or _export_record(subject, feeds)), "opset": opset}
    again = dataclasses.replace(subject, entry={**entry, "exporter": "torchscript"})
    try:
        model = _named_as(fresh_export(again), subject.model)
    except OnnxconvError as error:
        raise CheckFailed(
            f"{subject.model_path}: {result.summary()}; the TorchScript exporter failed too: "
            f"{one_line(error)}"
        ) from None
    note = (
        f"exported again by the TorchScript exporter at opset {opset} "
        f"(onnx.version_converter: {result.summary()})"
    )
    return _with(subject, model, label, note, opset, "torchscript")


def _export_record(subject, feeds) -> dict:
    """What exporting the module again needs, where no manifest records it (``validate
    model.onnx --module``): the graph's inputs at the seeded input's shapes, with their symbolic
    axes kept dynamic, and its outputs."""
    inputs = [
        {
            "name": info.name,
            "shape": list(feeds[info.name].shape),
            "dtype": str(feeds[info.name].dtype),
            "dynamic_axes": symbolic_dims(info),
        }
        for info in feeds_module.graph_inputs(subject.model)
    ]
    return {"inputs": inputs, "outputs": [{"name": o.name} for o in subject.model.graph.output]}


def _named_as(model, original):
    """``model`` (a fresh export: inputs ``input``..., outputs ``output``...) with the
    original's input and output names, which its test sets and every comparison use."""
    pairs = [
        *zip(feeds_module.graph_inputs(model), feeds_module.graph_inputs(original)),
        *zip(model.graph.output, original.graph.output),
    ]
    renames = {new.name: old.name for new, old in pairs if new.name != old.name}
    used = {t for n in model.graph.node for t in [*n.input, *n.output]} - set(renames)
    clash = sorted(set(renames.values()) & used)
    if clash:
        raise CheckFailed(f"the fresh export already has a tensor named {clash[0]!r}")
    for node in model.graph.node:
        node.input[:] = [renames.get(t, t) for t in node.input]
        node.output[:] = [renames.get(t, t) for t in node.output]
    for info in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        info.name = renames.get(info.name, info.name)
    return model


def _with(subject, model, label: str, note: str, opset: int, exporter: str | None):
    entry = subject.entry
    if entry is not None:
        entry = {**entry, "opset": opset, "exporter": exporter or entry.get("exporter")}
    return dataclasses.replace(
        subject, model=model, label=label, entry=entry, notes=[*subject.notes, note]
    )


__all__ = ["retarget"]
