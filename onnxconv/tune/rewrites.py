"""Equivalent formulations of a graph: named rewrites that work on any ONNX graph.

Each rewrite takes a model and returns a :class:`Rewritten` copy (or None where it does not
apply). Every result passes ``onnx.checker`` (full check) and strict shape inference
(:meth:`onnxconv.tune.edit.Editor.finish`), keeps the graph's input and output names and shapes,
and says whether it only *moves* data (``exact_permutation``: the same arithmetic on the same
numbers, so ONNX Runtime on CPU must give bit-identical outputs) or reorders arithmetic (equal up
to fp32 rounding). :mod:`onnxconv.tune.proof` holds every candidate to that claim.

========================  ============================================================  =====
rewrite                   what                                                          exact
========================  ============================================================  =====
``shuffle_rank4``         rank-5 R/T/R shuffle -> rank-4 (N, g, C/g, H·W) R/T/R         perm
``shuffle_gather``        shuffle -> one Gather(axis=1) with the constant permutation   perm
``shuffle_fold``          shuffle folded into a group-1 Conv's weight, through          perm*
                          per-channel ops (:mod:`.fold`)
``shuffle_fold_dense``    as ``shuffle_fold``, a grouped Conv made dense to take it     no
``grouped_split``         grouped Conv -> Split -> one Conv per group -> Concat         no
``grouped_dense``         grouped Conv -> dense Conv with a block-diagonal weight       no
``grouped_merge``         the fewest adjacent groups merged into block-diagonal groups  no
                          whose channels meet the NCHWc block (g=8 x 8 -> g=4 x 16)
``grouped_pad``           each group's input and output channels zero-padded to the     no
                          NCHWc block (Pad, Gather -> Conv -> Gather), so ORT's CPU
                          NCHWc kernel takes the Conv
========================  ============================================================  =====

(*) a fold into the producing Conv permutes its output rows (bit-identical); a fold into the
consuming Conv permutes its input columns, which reorders its sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from onnxconv.errors import unknown_name
from onnxconv.graph import GraphIndex
from onnxconv.graph.edit import set_attr
from onnxconv.graph.index import attr, default_opset

from .edit import Editor, RewriteError, drop_attr
from .fold import fold_shuffles
from .sites import (
    ConvSite,
    block_diagonal,
    grouped_conv_sites,
    merge_groups,
    shuffle_sites,
)


@dataclass
class Rewritten:
    """A rewritten copy of a model: what changed where, and whether it only moves data."""

    model: onnx.ModelProto
    changes: list[str]
    exact_permutation: bool


def _finished(
    ed: Editor, name: str, changes: list[str], exact_permutation: bool
) -> Rewritten | None:
    """The rewrite ``name`` as ``ed`` made it; None where it changed nothing (it does not
    apply)."""
    if not changes:
        return None
    return Rewritten(ed.finish(name), changes, exact_permutation)


@dataclass(frozen=True)
class Rewrite:
    name: str
    description: str
    apply: Callable[[onnx.ModelProto], Rewritten | None]


# --------------------------------------------------------------------------------------------
# channel shuffle


def _set_reshape_target(ed: Editor, index: int, target: list[int], base: str) -> None:
    """Point a Reshape at a new constant target; 0 copies the input's dim (allowzero off)."""
    node = ed.graph.node[index]
    if attr(node, "shape") is not None:  # Reshape-1: the target is an attribute
        set_attr(node, "shape", target)
    else:
        node.input[1] = ed.add_initializer(base, np.array(target, dtype=np.int64))
    drop_attr(node, "allowzero")


def shuffle_rank4(model: onnx.ModelProto) -> Rewritten | None:
    ix = GraphIndex(model)
    ed = Editor(model)
    changes = []
    for site in shuffle_sites(ix):
        dims = ix.shape(site.input)
        if site.rank != 5 or dims is None or len(dims) != 4:
            continue
        _, channels, height, width = dims
        if not all(isinstance(d, int) for d in (channels, height, width)):
            continue
        per_group = site.channels // site.groups
        first, transpose = ed.index_of(site.reshape_in), ed.index_of(site.transpose)
        last = ed.index_of(site.reshape_out)
        _set_reshape_target(ed, first, [0, site.groups, per_group, -1], "tune_shuffle_rank4_in")
        set_attr(ed.graph.node[transpose], "perm", [0, 2, 1, 3])
        _set_reshape_target(ed, last, [0, site.channels, height, width], "tune_shuffle_rank4_out")
        ed.changed_tensors.update(
            (ed.graph.node[first].output[0], ed.graph.node[transpose].output[0])
        )
        changes.append(
            f"{site.reshape_in} -> {site.transpose} -> {site.reshape_out}: rank 5 -> "
            f"(N, {site.groups}, {per_group}, {height * width})"
        )
    return _finished(ed, "shuffle_rank4", changes, exact_permutation=True)


def shuffle_gather(model: onnx.ModelProto) -> Rewritten | None:
    ix = GraphIndex(model)
    ed = Editor(model)
    changes = []
    for site in shuffle_sites(ix):
        indices = ed.add_initializer("tune_shuffle_perm", site.perm)
        gather = helper.make_node(
            "Gather",
            [site.input, indices],
            [site.output],
            name=ed.fresh(f"tune_gather_{site.transpose}"),
            axis=1,
        )
        nodes = [ed.index_of(n) for n in (site.reshape_in, site.transpose, site.reshape_out)]
        ed.replace_nodes(nodes, [gather])
        changes.append(
            f"{site.reshape_in} -> {site.transpose} -> {site.reshape_out}: "
            f"Gather(axis=1) {gather.name}, {site.channels} channels, {site.groups} groups"
        )
    return _finished(ed, "shuffle_gather", changes, exact_permutation=True)


def shuffle_fold(model: onnx.ModelProto) -> Rewritten | None:
    folded = fold_shuffles(model, densify=False)
    if folded is None:
        return None
    return Rewritten(folded.model, folded.changes, folded.exact_permutation)


def shuffle_fold_dense(model: onnx.ModelProto) -> Rewritten | None:
    folded = fold_shuffles(model, densify=True)
    if folded is None or not folded.densified:  # then the same graph as shuffle_fold
        return None
    return Rewritten(folded.model, folded.changes, folded.exact_permutation)


# --------------------------------------------------------------------------------------------
# grouped convolution


def grouped_split(model: onnx.ModelProto) -> Rewritten | None:
    ix = GraphIndex(model)
    ed = Editor(model)
    opset = default_opset(model) or 1
    changes = []
    for site in grouped_conv_sites(ix):
        node, g = site.node, site.info.group
        in_per_group = site.weight.shape[1]
        out_per_group = site.weight.shape[0] // g
        label = ix.label(node)
        parts = [ed.fresh(f"{node.input[0]}_tune_split_{j}") for j in range(g)]
        sizes = [in_per_group] * g
        if opset >= 13:
            split_input = ed.add_initializer("tune_split_sizes", np.array(sizes, np.int64))
            split = helper.make_node("Split", [node.input[0], split_input], parts, axis=1)
        else:
            split = helper.make_node("Split", [node.input[0]], parts, axis=1, split=sizes)
        split.name = ed.fresh(f"tune_split_{label}")
        kept = [a for a in node.attribute if a.name != "group"]
        convs, outs = [], []
        for j in range(g):
            rows = slice(j * out_per_group, (j + 1) * out_per_group)
            inputs = [parts[j], ed.add_initializer(f"{node.input[1]}_g{j}", site.weight[rows])]
            if site.bias is not None:
                inputs.append(ed.add_initializer(f"{node.input[2]}_g{j}", site.bias[rows]))
            out = ed.fresh(f"{node.output[0]}_tune_g{j}")
            conv = helper.make_node("Conv", inputs, [out], name=ed.fresh(f"{label}_g{j}"))
            conv.attribute.extend(kept)
            convs.append(conv)
            outs.append(out)
        concat = helper.make_node(
            "Concat", outs, [node.output[0]], name=ed.fresh(f"tune_concat_{label}"), axis=1
        )
        ed.replace_nodes([ed.index_of(label)], [split, *convs, concat])
        ed.changed_tensors.update(parts)
        changes.append(f"{label}: group {g} -> Split, {g} Convs, Concat")
    return _finished(ed, "grouped_split", changes, exact_permutation=False)


def grouped_dense(model: onnx.ModelProto) -> Rewritten | None:
    ix = GraphIndex(model)
    ed = Editor(model)
    changes = []
    for site in grouped_conv_sites(ix):
        label = ix.label(site.node)
        node = ed.graph.node[ed.index_of(label)]
        dense = block_diagonal(site.weight, site.info.group)
        node.input[1] = ed.add_initializer(f"{node.input[1]}_tune_dense", dense)
        set_attr(node, "group", 1)
        changes.append(
            f"{label}: group {site.info.group} -> dense {dense.shape[0]}x{dense.shape[1]} "
            f"block-diagonal weight ({site.info.group}x the multiply-adds)"
        )
    return _finished(ed, "grouped_dense", changes, exact_permutation=False)


def _sites_missing_the_block(ix: GraphIndex, block: int) -> list[ConvSite]:
    """The grouped 2-D Convs (NCHWc takes no other) whose input or output channels per group
    are not multiples of the NCHWc ``block``: what :func:`grouped_merge` and
    :func:`grouped_pad` reformulate."""
    found = []
    for site in grouped_conv_sites(ix):
        out_channels, in_per_group = site.weight.shape[:2]
        out_per_group = out_channels // site.info.group
        dims = ix.shape(site.node.input[0])
        missing = in_per_group % block != 0 or out_per_group % block != 0
        if dims is not None and len(dims) == 4 and missing:
            found.append(site)
    return found


def _merge_factor(in_per_group: int, out_per_group: int, groups: int, block: int) -> int | None:
    """The fewest adjacent groups that, merged, give input and output channels per group that
    are multiples of ``block``, short of merging them all (that is :func:`grouped_dense`)."""
    for merged in range(2, groups):
        aligned = (in_per_group * merged) % block == 0 and (out_per_group * merged) % block == 0
        if groups % merged == 0 and aligned:
            return merged
    return None


def grouped_merge(model: onnx.ModelProto, block: int | None = None) -> Rewritten | None:
    """Every grouped Conv whose channels per group miss the NCHWc ``block`` (default: this
    machine's, :func:`onnxconv.machine.nchwc_block`) with the fewest adjacent groups merged into
    one block-diagonal group that meets it: g=8 with 8 channels per group becomes g=4 with 16,
    twice the multiply-adds (half of them by zeros) on ORT's NCHWc kernel instead of its
    generic grouped path. Nothing moves around the Conv; the zero products change only the
    summation order."""
    from onnxconv.machine import nchwc_block

    block = block or nchwc_block()
    if block is None:
        return None
    ix = GraphIndex(model)
    ed = Editor(model)
    changes = []
    for site in _sites_missing_the_block(ix, block):
        g = site.info.group
        out_channels, in_per_group = site.weight.shape[:2]
        merged = _merge_factor(in_per_group, out_channels // g, g, block)
        if merged is None:
            continue
        label = ix.label(site.node)
        node = ed.graph.node[ed.index_of(label)]
        weight = merge_groups(site.weight, g, merged)
        node.input[1] = ed.add_initializer(f"{node.input[1]}_tune_merged", weight)
        set_attr(node, "group", g // merged)
        changes.append(
            f"{label}: group {g} -> {g // merged}, {merged} groups merged into each "
            f"({in_per_group}->{in_per_group * merged} input, {out_channels // g}->"
            f"{out_channels // g * merged} output channels per group; NCHWc block {block}; "
            f"{merged}x the multiply-adds)"
        )
    return _finished(ed, "grouped_merge", changes, exact_permutation=False)


def _pad_channels(ed: Editor, x: str, rank: int, opset: int, base: str) -> onnx.NodeProto:
    """``x`` (N, C, ...) with one zero channel appended: index C reads zeros."""
    pads = [0] * (2 * rank)
    pads[rank + 1] = 1
    out = ed.fresh(f"{x}_{base}_zero")
    if opset >= 11:
        pads_name = ed.add_initializer(f"{base}_pads", np.array(pads, np.int64))
        return helper.make_node("Pad", [x, pads_name], [out], name=ed.fresh(base), mode="constant")
    return helper.make_node("Pad", [x], [out], name=ed.fresh(base), mode="constant", pads=pads)


def grouped_pad(model: onnx.ModelProto, block: int | None = None) -> Rewritten | None:
    """Every grouped Conv whose channels per group are not a multiple of the NCHWc ``block``
    (default: this machine's, :func:`onnxconv.machine.nchwc_block`) with each group's input and
    output channels zero-padded to it: a Gather spreads the input's groups apart with zero
    channels between them (from one zero channel that Pad appends), the Conv's weight and bias
    get zero rows and columns, and a Gather picks the real output channels. The padding adds
    only zero products, but ORT's NCHWc kernel sums in another order."""
    from onnxconv.machine import nchwc_block

    block = block or nchwc_block()
    if block is None:
        return None
    ix = GraphIndex(model)
    ed = Editor(model)
    opset = default_opset(model) or 1
    changes = []
    for site in _sites_missing_the_block(ix, block):
        node, g = site.node, site.info.group
        out_channels, in_per_group = site.weight.shape[:2]
        out_per_group = out_channels // g
        in_block = -(-in_per_group // block) * block
        out_block = -(-out_per_group // block) * block
        label = ix.label(node)
        zero = in_per_group * g  # the channel Pad appends
        spread = [
            c
            for j in range(g)
            for c in [*range(j * in_per_group, (j + 1) * in_per_group)]
            + [zero] * (in_block - in_per_group)
        ]
        weight = np.zeros((g * out_block, in_block, *site.weight.shape[2:]), site.weight.dtype)
        bias = np.zeros(g * out_block, site.weight.dtype)
        for j in range(g):
            rows = slice(j * out_per_group, (j + 1) * out_per_group)
            weight[j * out_block : j * out_block + out_per_group, :in_per_group] = site.weight[rows]
            if site.bias is not None:
                bias[j * out_block : j * out_block + out_per_group] = site.bias[rows]
        picked = [j * out_block + k for j in range(g) for k in range(out_per_group)]
        pad = _pad_channels(ed, node.input[0], 4, opset, f"tune_pad_{label}")  # N, C, H, W
        spread_out = ed.fresh(f"{node.input[0]}_tune_spread")
        gather_in = helper.make_node(
            "Gather",
            [pad.output[0], ed.add_initializer("tune_pad_spread", np.array(spread, np.int64))],
            [spread_out],
            name=ed.fresh(f"tune_spread_{label}"),
            axis=1,
        )
        conv_out = ed.fresh(f"{node.output[0]}_tune_padded")
        inputs = [
            spread_out,
            ed.add_initializer(f"{node.input[1]}_tune_pad", weight),
            ed.add_initializer(f"{node.input[1]}_tune_pad_bias", bias),
        ]
        conv = helper.make_node("Conv", inputs, [conv_out], name=ed.fresh(f"{label}_padded"))
        conv.attribute.extend(node.attribute)
        gather_out = helper.make_node(
            "Gather",
            [conv_out, ed.add_initializer("tune_pad_pick", np.array(picked, np.int64))],
            [node.output[0]],
            name=ed.fresh(f"tune_pick_{label}"),
            axis=1,
        )
        ed.replace_nodes([ed.index_of(label)], [pad, gather_in, conv, gather_out])
        ed.changed_tensors.update((pad.output[0], spread_out, conv_out))
        changes.append(
            f"{label}: group {g}, {in_per_group}->{in_block} input and {out_per_group}->"
            f"{out_block} output channels per group (NCHWc block {block}; "
            f"{in_block * out_block / (in_per_group * out_per_group):.3g}x the multiply-adds)"
        )
    return _finished(ed, "grouped_pad", changes, exact_permutation=False)


# --------------------------------------------------------------------------------------------
# the registry


REWRITES: dict[str, Rewrite] = {
    r.name: r
    for r in (
        Rewrite(
            "shuffle_rank4",
            "every rank-5 channel shuffle as Reshape (N, g, C/g, H·W) -> Transpose -> Reshape",
            shuffle_rank4,
        ),
        Rewrite(
            "shuffle_gather",
            "every channel shuffle as one Gather(axis=1) with its constant int64 permutation",
            shuffle_gather,
        ),
        Rewrite(
            "shuffle_fold",
            "channel shuffles folded into a neighbouring group-1 Conv's weight (through "
            "per-channel ops): the shuffle disappears",
            shuffle_fold,
        ),
        Rewrite(
            "shuffle_fold_dense",
            "channel shuffles folded into a neighbouring grouped Conv made dense "
            "(block-diagonal weight, permuted): the shuffle disappears, that Conv's "
            "multiply-adds grow g-fold",
            shuffle_fold_dense,
        ),
        Rewrite(
            "grouped_split",
            "every grouped Conv as Split -> one Conv per group -> Concat",
            grouped_split,
        ),
        Rewrite(
            "grouped_dense",
            "every grouped Conv as a dense Conv with a block-diagonal weight (zeros off the "
            "blocks)",
            grouped_dense,
        ),
        Rewrite(
            "grouped_merge",
            "every grouped Conv whose channels per group miss the NCHWc block with the fewest "
            "adjacent groups merged into one block-diagonal group that meets it (g=8 with 8 "
            "channels per group -> g=4 with 16 on AVX-512: 2x the multiply-adds on NCHWc)",
            grouped_merge,
        ),
        Rewrite(
            "grouped_pad",
            "every grouped Conv whose channels per group miss the NCHWc block (16 with AVX-512, "
            "8 with AVX2) with each group zero-padded to it, so ORT's NCHWc kernel runs it",
            grouped_pad,
        ),
    )
}

#: Rewrites that reformulate the channel shuffle, and those that reformulate grouped Convs: a
#: formulation takes at most one of each, shuffle first.
SHUFFLE_REWRITES = ("shuffle_rank4", "shuffle_gather", "shuffle_fold", "shuffle_fold_dense")
GROUPED_REWRITES = ("grouped_split", "grouped_dense", "grouped_merge", "grouped_pad")


def check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in REWRITES]
    if unknown:
        raise unknown_name("rewrite(s)", unknown, REWRITES)


def apply_rewrites(model: onnx.ModelProto, names: Sequence[str]) -> Rewritten | None:
    """``names`` applied in order; None when any of them does not apply (the formulation would
    repeat a shorter one)."""
    check_names(names)
    result = Rewritten(model, [], exact_permutation=True)
    for name in names:
        step = REWRITES[name].apply(result.model)
        if step is None:
            return None
        result = Rewritten(
            step.model,
            result.changes + [f"{name}: {c}" for c in step.changes],
            result.exact_permutation and step.exact_permutation,
        )
    return result


def formulations(
    model: onnx.ModelProto, allowed: Sequence[str], refused: dict[str, str] | None = None
) -> dict[str, Rewritten]:
    """Every applicable formulation from ``allowed`` rewrites: at most one shuffle rewrite then
    at most one grouped rewrite, keyed ``"shuffle_gather+grouped_dense"``; the original is not
    included. Single rewrites come first (shuffle rewrites, then grouped ones, each in the
    registry's order), then the pairs, so a search that the time budget cuts short has tried
    each idea alone before any combination. ``refused``: where given, a formulation whose
    rewrite fails (:class:`RewriteError`: a graph it cannot edit soundly) is left out and its
    reason kept there by key, instead of raised."""
    check_names(allowed)
    shuffles = [n for n in SHUFFLE_REWRITES if n in allowed]
    grouped = [n for n in GROUPED_REWRITES if n in allowed]
    singles = [[n] for n in (*shuffles, *grouped)]
    found = {}
    for names in singles + [[s, g] for s in shuffles for g in grouped]:
        key = "+".join(names)
        if refused is not None and any(n in refused for n in names):
            continue  # a pair with a rewrite that already failed alone
        try:
            result = apply_rewrites(model, names)
        except RewriteError as error:
            if refused is None:
                raise
            refused[key] = str(error)
            continue
        if result is not None:
            found[key] = result
    return found
