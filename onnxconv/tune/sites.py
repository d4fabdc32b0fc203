"""Where a rewrite can apply: exact channel shuffles with their permutation, and grouped
convolutions with constant weights, read from any graph through :mod:`onnxconv.graph`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx

from onnxconv.graph import SHUFFLE_PERM, ConvInfo, GraphIndex, conv_info, find_channel_shuffles


@dataclass(frozen=True)
class ShuffleSite:
    """An exact channel shuffle: its three nodes (labels), tensors and channel permutation.

    ``perm[j]`` is the input channel that output channel ``j`` holds:
    ``output[:, j] == input[:, perm[j]]``.
    """

    reshape_in: str
    transpose: str
    reshape_out: str
    input: str
    output: str
    rank: int
    groups: int
    channels: int
    perm: np.ndarray

    @property
    def inverse(self) -> np.ndarray:
        return np.argsort(self.perm)


def shuffle_permutation(groups: int, per_group: int) -> np.ndarray:
    """The channel permutation of a shuffle of ``groups`` groups of ``per_group`` channels:
    channels viewed as (groups, per_group), transposed, flattened."""
    return np.arange(groups * per_group, dtype=np.int64).reshape(groups, per_group).T.reshape(-1)


def shuffle_sites(ix: GraphIndex) -> list[ShuffleSite]:
    """Every exact shuffle (direct chain, shuffle perm, known groups), in graph order."""
    labels = Counter(ix.label(n) for n in ix.nodes)
    by_label = {ix.label(n): n for n in ix.nodes}
    sites = []
    for s in find_channel_shuffles(ix):
        if not s.exact or s.perm != SHUFFLE_PERM[s.rank]:
            continue
        if s.groups is None or s.channels_per_group is None:
            continue
        if any(labels[n] > 1 for n in (s.reshape_in, s.transpose, s.reshape_out)):
            continue  # another node has its label: no edit could tell them apart
        first, last = by_label[s.reshape_in], by_label[s.reshape_out]
        sites.append(
            ShuffleSite(
                reshape_in=s.reshape_in,
                transpose=s.transpose,
                reshape_out=s.reshape_out,
                input=first.input[0],
                output=last.output[0],
                rank=s.rank,
                groups=s.groups,
                channels=s.groups * s.channels_per_group,
                perm=shuffle_permutation(s.groups, s.channels_per_group),
            )
        )
    return sites


@dataclass(frozen=True)
class ConvSite:
    """A Conv with constant float weights (and bias, when it has one)."""

    info: ConvInfo
    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None


def conv_site(ix: GraphIndex, node: onnx.NodeProto) -> ConvSite | None:
    """The Conv's constants, or None when its weight or bias is not a float constant."""
    info = conv_info(ix, node)
    weight = ix.const(node.input[1])
    if weight is None or weight.dtype.kind != "f" or weight.ndim < 3:
        return None
    bias = None
    if info.bias:
        bias = ix.const(node.input[2])
        if bias is None:
            return None
    return ConvSite(info, node, weight, bias)


def grouped_conv_sites(ix: GraphIndex) -> list[ConvSite]:
    """Every grouped (not depthwise) Conv with constant weights, in graph order."""
    sites = []
    for node in ix.nodes:
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        site = conv_site(ix, node)
        if site is not None and site.info.kind == "grouped":
            sites.append(site)
    return sites


def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped Conv's weight (O, I/g, k...) as the dense weight (O, I, k...) it stands for:
    output block ``j`` reads input block ``j``; zeros everywhere else."""
    return merge_groups(weight, groups, groups)


def merge_groups(weight: np.ndarray, groups: int, merged: int) -> np.ndarray:
    """A grouped Conv's weight (O, I/g, k...) for ``groups // merged`` groups, each of
    ``merged`` adjacent old groups as one block-diagonal group (O, merged·I/g, k...): output
    block ``j`` reads input block ``j % merged`` of its new group; zeros everywhere else."""
    out_ch, in_per_group = weight.shape[:2]
    out_per_group = out_ch // groups
    shape = (out_ch, in_per_group * merged, *weight.shape[2:])
    result = np.zeros(shape, dtype=weight.dtype)
    for j in range(groups):
        rows = slice(j * out_per_group, (j + 1) * out_per_group)
        column = j % merged
        result[rows, column * in_per_group : (column + 1) * in_per_group] = weight[rows]
    return result
