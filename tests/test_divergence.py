"""Intermediate tensors and the first divergent node."""

from __future__ import annotations

import pytest
from onnx_builders import sabotaged

from onnxconv.divergence import (
    first_divergence,
    run_intermediates_ort,
    run_intermediates_reference,
    with_all_outputs,
)
from onnxconv.parity import compare, default_tolerance
from onnxconv.precisions import deploy
from onnxconv.runtime import Target

FP32_CPU = default_tolerance("fp32", "cpu")


def test_with_all_outputs_exposes_every_node_output(mini_net):
    model = mini_net[0]
    exposed = with_all_outputs(model)
    names = [o.name for o in exposed.graph.output]
    assert names[:2] == ["logits", "cat"]
    assert set(names) == {o for n in model.graph.node for o in n.output}
    assert all(o.type.tensor_type.elem_type != 0 for o in exposed.graph.output)
    assert len(model.graph.output) == 2  # input untouched


@pytest.mark.parametrize("opt_level", ["disabled", "all"])
def test_intermediates_ort_agree_with_reference(mini_net, opt_level):
    model, x, _ = mini_net
    got = run_intermediates_ort(model, {"x": x}, Target("cpu", opt_level))
    ref = run_intermediates_reference(model, {"x": x})
    order = [o for n in model.graph.node for o in n.output]
    assert list(got) == order and list(ref) == order  # topological order, fused tensors included
    for name in order:
        assert compare(got[name], ref[name], FP32_CPU, name=name).passed


def test_first_divergence_none_on_clean_graph(mini_net):
    model, x, _ = mini_net
    assert first_divergence(model, {"x": x}, Target("cpu", "all"), FP32_CPU) is None
    assert (
        first_divergence(
            deploy(model, "fp16-onnxconv"),
            {"x": x},
            Target("cpu", "all", "fp16-onnxconv"),
            default_tolerance("fp16", "cpu"),
        )
        is None
    )


@pytest.mark.parametrize(
    "init_name, node_name, output_name",
    [("W1", "conv1", "c1"), ("bn_scale", "bn1", "b1"), ("Wg", "fc", "logits")],
)
def test_first_divergence_names_the_sabotaged_node(mini_net, init_name, node_name, output_name):
    model, x, _ = mini_net
    bad = sabotaged(model, init_name)
    div = first_divergence(bad, {"x": x}, Target("cpu", "all"), FP32_CPU, reference_model=model)
    assert div is not None
    assert (div.node_name, div.output_name) == (node_name, output_name)
    assert div.op_type == next(n.op_type for n in model.graph.node if n.name == node_name)
    assert not div.result.passed and div.result.n_bad > 0
    assert div.checked == sum(len(n.output) for n in model.graph.node[: div.node_index + 1])
    assert div.to_dict()["result"]["passed"] is False
