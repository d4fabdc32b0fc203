"""Judge an ONNX graph: lint findings and structure checks (a channel shuffle, a depthwise Conv...).

Reading the graph (Conv kinds, channel shuffles, shapes) is :mod:`onnxconv.graph.inspection`;
this module
turns what it reads into findings (advice) and structure problems (a variant's graph is not the
shape its family promises). Only :func:`assert_structure` raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import onnx

from onnxconv.errors import CheckFailed, UserInputError

from .index import GraphIndex, attr, is_default_domain
from .inspection import SHUFFLE_PERM, ConvInfo, find_channel_shuffles, find_convs

GRAPH = "<graph>"
"""Node name used for findings / problems about the graph as a whole."""

# --------------------------------------------------------------------------------------------
# lint


@dataclass
class LintFinding:
    """One piece of advice. ``severity``: info | warning | error."""

    code: str
    severity: str
    node: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity} {self.code} at {self.node}: {self.message}"


def lint_model(model: onnx.ModelProto, target_opset: int | None = None) -> list[LintFinding]:
    """Findings, in this order and with these codes:

    - ``conv-no-kernel-shape`` (info): Conv without a ``kernel_shape`` attribute;
    - ``unfolded-bn`` (warning): BatchNormalization reading a Conv output directly;
    - ``rank5-tensor`` (info): a rank-5 tensor (some EPs handle rank <= 4 only);
    - ``op-above-target-opset``: a default-domain op whose version in the model's opset is newer
      than ``target_opset`` (warning; error when the op does not exist at the target at all);
    - ``shuffle-fixed-batch`` (warning): a channel-shuffle Reshape whose shape fixes the batch
      size while a graph input's batch dim is dynamic.
    """
    ix = GraphIndex(model)
    findings = [*_lint_convs(ix), *_lint_rank5(ix)]
    if target_opset is not None:
        findings += _lint_opset(ix, target_opset)
    findings += _lint_shuffle_batch(ix)
    return findings


def _lint_convs(ix: GraphIndex) -> list[LintFinding]:
    found = []
    for node in ix.nodes:
        if node.op_type == "Conv" and attr(node, "kernel_shape") is None:
            found.append(
                LintFinding(
                    "conv-no-kernel-shape",
                    "info",
                    ix.label(node),
                    "Conv has no kernel_shape attribute; kernel read from the weight shape",
                )
            )
        if node.op_type == "BatchNormalization":
            src = ix.producer.get(node.input[0])
            if src is not None and src.op_type == "Conv":
                found.append(
                    LintFinding(
                        "unfolded-bn",
                        "warning",
                        ix.label(node),
                        f"BatchNormalization directly after Conv {ix.label(src)} is not folded "
                        "into the Conv weights",
                    )
                )
    return found


def _lint_rank5(ix: GraphIndex) -> list[LintFinding]:
    found = []
    for name, dims in ix.tensor_shapes().items():
        if dims is None or len(dims) != 5:
            continue
        producer = ix.producer.get(name)
        node = ix.label(producer) if producer is not None else GRAPH
        found.append(
            LintFinding(
                "rank5-tensor",
                "info",
                node,
                f"tensor {name!r} has rank 5 {list(dims)}; some execution providers "
                "support rank <= 4 only",
            )
        )
    return found


def _lint_opset(ix: GraphIndex, target: int) -> list[LintFinding]:
    found, seen = [], set()
    for node in ix.nodes:
        if not is_default_domain(node) or node.op_type in seen:
            continue
        seen.add(node.op_type)
        try:
            since = onnx.defs.get_schema(node.op_type, ix.opset, "").since_version
        except onnx.defs.SchemaError:
            continue  # unknown op: onnx.checker's business
        if since <= target:
            continue
        try:
            older = onnx.defs.get_schema(node.op_type, target, "").since_version
            found.append(
                LintFinding(
                    "op-above-target-opset",
                    "warning",
                    ix.label(node),
                    f"{node.op_type} is version {since} (model opset {ix.opset}); target "
                    f"opset {target} has version {older}, conversion needed",
                )
            )
        except onnx.defs.SchemaError:
            found.append(
                LintFinding(
                    "op-above-target-opset",
                    "error",
                    ix.label(node),
                    f"{node.op_type} exists from opset {since}; not available at target "
                    f"opset {target}",
                )
            )
    return found


def _lint_shuffle_batch(ix: GraphIndex) -> list[LintFinding]:
    dynamic = [
        (vi.name, d[0])
        for vi in ix.graph_inputs()
        if (d := ix.shape(vi.name)) and not isinstance(d[0], int)
    ]
    if not dynamic:
        return []
    name, dim = dynamic[0]
    found = []
    for s in find_channel_shuffles(ix):
        for node, batch in ((s.reshape_in, s.batch[0]), (s.reshape_out, s.batch[1])):
            if batch is not None and batch > 0:
                found.append(
                    LintFinding(
                        "shuffle-fixed-batch",
                        "warning",
                        node,
                        f"shuffle reshape fixes batch to {batch} but input batch is dynamic "
                        f"({name!r} dim 0 = {dim or '?'}); use 0 or -1",
                    )
                )
    return found


# --------------------------------------------------------------------------------------------
# structure


@dataclass
class StructureProblem:
    """The graph breaks an expectation of its family at ``node``."""

    node: str
    expected: str
    found: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.node}: expected {self.expected}, found {self.found}"


def check_structure(
    model: onnx.ModelProto, kind: str, expect: dict | None = None
) -> list[StructureProblem]:
    """Problems with the graph's structure of ``kind`` (a key of :data:`STRUCTURE_CHECKS`; a
    variant names its own in ``VariantSpec.structure_kind``); empty when it is as expected.

    ``expect`` keys by kind (all optional unless said):
    ``channel_shuffle``: ``groups``, ``shuffles`` (count), ``shuffle_rank`` (5 or 4; default 5);
    ``depthwise``: ``depth_multiplier``, ``kernel``; ``separable``: ``between`` (op types allowed
    between the depthwise and the 1x1 Conv, default none); ``grouped``: ``groups``;
    ``flattened``: ``kernel``; ``standard`` / ``pointwise``: ``kernel``, ``convs`` (default 1);
    ``inception``: ``convs``, ``branches`` (min inputs of the Concat).
    """
    if kind not in STRUCTURE_CHECKS:
        raise UserInputError(
            f"unknown structure check {kind!r} (known: {', '.join(STRUCTURE_CHECKS)})"
        )
    ix = GraphIndex(model)
    return STRUCTURE_CHECKS[kind](ix, find_convs(ix), dict(expect or {}))


def assert_structure(
    model: onnx.ModelProto, kind: str, expect: dict | None = None, source: str | None = None
) -> None:
    """Raise ``CheckFailed`` naming ``source`` (default: the graph name) and the first problems."""
    problems = check_structure(model, kind, expect)
    if problems:
        shown = "; ".join(str(p) for p in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        where = source or model.graph.name or "model"
        raise CheckFailed(f"{where}: {kind} structure check failed: {shown}{more}")


def _check_shuffles(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
    rank = expect.get("shuffle_rank", 5)
    if rank not in SHUFFLE_PERM:
        raise UserInputError(f"expect['shuffle_rank'] must be 4 or 5, got {rank!r}")
    groups = expect.get("groups")
    shuffles = find_channel_shuffles(ix)
    problems = []
    shape = f"Reshape->Transpose(perm {SHUFFLE_PERM[rank]})->Reshape with nothing in between"
    for s in shuffles:
        if not s.exact:
            problems.append(StructureProblem(s.transpose, shape, "; ".join(s.problems)))
        elif s.rank != rank:
            problems.append(
                StructureProblem(s.transpose, f"a rank-{rank} shuffle", f"rank {s.rank}")
            )
        if groups is not None and s.groups != groups:
            problems.append(
                StructureProblem(s.reshape_in, f"groups == {groups}", f"groups {s.groups}")
            )
    in_shuffle = {s.transpose for s in shuffles}
    for node in ix.nodes:
        if node.op_type == "Transpose" and ix.label(node) not in in_shuffle:
            problems.append(
                StructureProblem(
                    ix.label(node),
                    "every Transpose inside a channel shuffle",
                    "a Transpose outside any Reshape->Transpose->Reshape chain",
                )
            )
    exact = sum(1 for s in shuffles if s.exact and s.rank == rank)
    if "shuffles" in expect and exact != expect["shuffles"]:
        problems.append(
            StructureProblem(GRAPH, f"{expect['shuffles']} exact channel shuffle(s)", str(exact))
        )
    elif "shuffles" not in expect and not shuffles:
        problems.append(StructureProblem(GRAPH, "at least one channel shuffle", "none"))
    return problems


def _no_convs(convs: list[ConvInfo]) -> list[StructureProblem]:
    return [StructureProblem(GRAPH, "at least one Conv", "no Conv")] if not convs else []


def _check_depthwise(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
    dw = [c for c in convs if c.kind == "depthwise"]
    if not dw:
        found = (
            ", ".join(f"{c.name} group {c.group} C_in {c.in_channels}" for c in convs) or "no Conv"
        )
        return [StructureProblem(GRAPH, "a depthwise Conv (group == C_in)", found)]
    problems = []
    for c in dw:
        if "depth_multiplier" in expect and c.depth_multiplier != expect["depth_multiplier"]:
            problems.append(
                StructureProblem(
                    c.name,
                    f"depth multiplier {expect['depth_multiplier']}",
                    str(c.depth_multiplier),
                )
            )
        if "kernel" in expect and c.kernel != (expect["kernel"],) * 2:
            problems.append(
                StructureProblem(c.name, f"kernel {expect['kernel']}x{expect['kernel']}", _k(c))
            )
    return problems


def _check_separable(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
    problems = _check_depthwise(ix, convs, {})
    if problems:
        return problems
    allowed = set(expect.get("between", ()))
    by_name = {c.name: c for c in convs}
    for dw in (c for c in convs if c.kind == "depthwise"):
        name, node = dw.output, ix.only_consumer(dw.output)
        while node is not None and node.op_type in allowed:
            name, node = node.output[0], ix.only_consumer(node.output[0])
        nxt = by_name.get(ix.label(node)) if node is not None and node.op_type == "Conv" else None
        if nxt is None or nxt.kind != "pointwise" or nxt.input != name:
            found = "nothing" if node is None else f"{node.op_type} {ix.label(node)}"
            via = f" (through {sorted(allowed)})" if allowed else " directly"
            problems.append(
                StructureProblem(dw.name, f"a 1x1 Conv reading the depthwise output{via}", found)
            )
    return problems


def _check_grouped(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
    want = expect.get("groups")
    problems = _no_convs(convs)
    for c in convs:
        if (want is not None and c.group != want) or (want is None and c.group < 2):
            problems.append(
                StructureProblem(
                    c.name, f"group == {want if want is not None else '> 1'}", f"group {c.group}"
                )
            )
    return problems


def _check_flattened(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
    if not convs or len(convs) % 3:
        return [
            StructureProblem(
                GRAPH,
                "Convs in triples 1x1 -> kx1 -> 1xk",
                f"{len(convs)} Conv(s): {', '.join(_k(c) for c in convs)}",
            )
        ]
    problems = []
    for lateral, vertical, horizontal in zip(convs[0::3], convs[1::3], convs[2::3], strict=True):
        k = expect.get("kernel", vertical.kernel[0] if vertical.kernel else None)
        for conv, kernel, dw in (
            (lateral, (1, 1), False),
            (vertical, (k, 1), True),
            (horizontal, (1, k), True),
        ):
            if conv.kernel != kernel:
                problems.append(
                    StructureProblem(conv.name, f"kernel {kernel[0]}x{kernel[1]}", _k(conv))
                )
            if dw and conv.group != conv.in_channels:
                problems.append(
                    StructureProblem(
                        conv.name, f"group == channels ({conv.in_channels})", f"group {conv.group}"
                    )
                )
    return problems


def _single_conv(kind: str) -> Callable[[GraphIndex, list[ConvInfo], dict], list[StructureProblem]]:
    def check(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
        want = expect.get("convs", 1)
        problems = (
            []
            if len(convs) == want
            else [StructureProblem(GRAPH, f"{want} Conv(s)", str(len(convs)))]
        )
        for c in convs:
            k = expect.get("kernel", 1 if kind == "pointwise" else None)
            ok_kernel = c.kind == kind if k is None else c.kernel == (k,) * len(c.kernel)
            if c.group != 1 or not ok_kernel:
                wanted = f"{k}x{k}" if k is not None else "k x k (k > 1)"
                problems.append(
                    StructureProblem(
                        c.name, f"{kind} Conv {wanted} group 1", f"{_k(c)} group {c.group}"
                    )
                )
        return problems

    return check


def _check_inception(ix: GraphIndex, convs: list[ConvInfo], expect: dict) -> list[StructureProblem]:
    problems = []
    if "convs" in expect and len(convs) != expect["convs"]:
        problems.append(StructureProblem(GRAPH, f"{expect['convs']} Convs", str(len(convs))))
    concats = [n for n in ix.nodes if n.op_type == "Concat" and _channel_axis(ix, n)]
    if len(concats) != 1:
        problems.append(StructureProblem(GRAPH, "exactly one Concat on axis 1", str(len(concats))))
    elif "branches" in expect and len(concats[0].input) < expect["branches"]:
        problems.append(
            StructureProblem(
                ix.label(concats[0]),
                f">= {expect['branches']} branches",
                str(len(concats[0].input)),
            )
        )
    return problems


def _channel_axis(ix: GraphIndex, node: onnx.NodeProto) -> bool:
    axis = attr(node, "axis", 0)
    if axis < 0:
        dims = ix.shape(node.output[0])
        axis = axis + len(dims) if dims is not None else axis
    return axis == 1


def _k(c: ConvInfo) -> str:
    return "x".join(str(k) for k in c.kernel) or "unknown kernel"


STRUCTURE_CHECKS: dict[
    str, Callable[[GraphIndex, list[ConvInfo], dict], list[StructureProblem]]
] = {
    "channel_shuffle": _check_shuffles,
    "depthwise": _check_depthwise,
    "separable": _check_separable,
    "grouped": _check_grouped,
    "flattened": _check_flattened,
    "standard": _single_conv("standard"),
    "pointwise": _single_conv("pointwise"),
    "inception": _check_inception,
}
