"""Any ONNX graph, read: loading and the index (producers, consumers, folded constants, shapes),
inspection (convolution kinds, flattened pairs, channel shuffles, op counts), cost from the graph
alone (parameters, multiply-adds per node), and the checks that judge a graph (lint, the
structure a family promises).

    index.py       load_model, GraphIndex
    inspection.py  find_convs, find_channel_shuffles, inspect_model, structure_summary
    cost.py        graph_cost, node_macs, cost_breakdown
    checks.py      lint_model, check_structure, assert_structure
"""

from .cost import GraphCost, cost_breakdown, graph_cost, node_macs, with_input_shapes
from .index import GraphIndex, load_model
from .inspection import (
    SHUFFLE_PERM,
    ConvInfo,
    FlattenedPair,
    GraphReport,
    ShuffleInfo,
    conv_info,
    find_channel_shuffles,
    find_convs,
    find_flattened_pairs,
    inspect_model,
    structure_summary,
)

__all__ = [
    "SHUFFLE_PERM",
    "ConvInfo",
    "FlattenedPair",
    "GraphCost",
    "GraphIndex",
    "GraphReport",
    "ShuffleInfo",
    "conv_info",
    "cost_breakdown",
    "find_channel_shuffles",
    "find_convs",
    "find_flattened_pairs",
    "graph_cost",
    "inspect_model",
    "load_model",
    "node_macs",
    "structure_summary",
    "with_input_shapes",
]
