"""`onnxconv inspect` on graphs nobody here made: the Conv tests that the onnx package ships
(opset 6, exported by an old PyTorch), checked against their own stored outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxconv.cli import main

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"


@pytest.mark.parametrize(
    "folder,kind,group,multiplier",
    [
        ("test_Conv2d", "standard", 1, None),
        ("test_Conv2d_groups", "grouped", 2, None),
        ("test_Conv2d_depthwise", "depthwise", 4, 1),
        ("test_Conv2d_depthwise_with_multiplier", "depthwise", 4, 2),
        ("test_Conv2d_depthwise_strided", "depthwise", 4, 1),
        ("test_Conv2d_dilated", "standard", 1, None),
    ],
)
def test_inspect_classifies_and_counts_third_party_convs(folder, kind, group, multiplier, capsys):
    assert main(["inspect", str(DATA / folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (conv,) = report["convs"]
    assert (conv["kind"], conv["group"], conv["depth_multiplier"]) == (kind, group, multiplier)
    # MACs from the stored output's shape: every output element sums (C_in/g)·kh·kw products
    tensor = onnx.TensorProto()
    tensor.ParseFromString((DATA / folder / "test_data_set_0" / "output_0.pb").read_bytes())
    output = numpy_helper.to_array(tensor)
    per_element = conv["in_channels"] // conv["group"] * int(np.prod(conv["kernel"]))
    assert report["cost"]["macs"] == output.size * per_element
    assert conv["out_channels"] == output.shape[1]
    # the Conv is unnamed: its MACs under the name inspect gives it (they showed as "—")
    assert conv["name"].startswith("Conv(") and report["node_macs"] == {
        conv["name"]: report["cost"]["macs"]
    }
    # the graph's batch is fixed at the stored output's: the cost says so (it said batch 1)
    assert report["cost"]["batch_size"] == output.shape[0] == 2
    assert main(["inspect", str(DATA / folder)]) == 0
    text = capsys.readouterr().out
    assert f"at batch {output.shape[0]}" in text and "—" not in text.split("MACs")[-1]


def test_a_quantized_graph_counts_the_weights_behind_its_dequantize_nodes():
    from onnxconv import precisions, validate
    from onnxconv.graph import graph_cost

    fp32 = onnx.load("graphs/grouped/model.onnx")
    feeds = validate.seeded_feeds(validate.load_subject("grouped"), 100, 2, 1 << 30)
    int8 = precisions.deploy(fp32, "int8", feeds)
    assert any(n.op_type == "DequantizeLinear" for n in int8.graph.node)
    assert graph_cost(int8) == graph_cost(fp32)  # params and MACs, as the float graph's


def test_inspect_names_the_element_type_of_every_input_and_output(tmp_path, capsys):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1])
    graph = helper.make_graph([helper.make_node("ArgMax", ["x"], ["ids"], axis=1)], "g", [x], [ids])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["inspect", str(path)]) == 0
    assert "dtypes  x float16, ids int64" in capsys.readouterr().out.splitlines()
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtypes"] == {"x": "float16", "ids": "int64"}


def test_inspect_names_the_weighted_ops_its_cost_leaves_out(tmp_path, capsys):
    """An embedding's table (a Gather of a constant) and quantized ops (QLinearConv, QGemm)
    hold weights the cost does not count: a QOperator ShuffleNet read "params 0, MACs 0"."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((50, 8), np.float32), "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["out"])],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8])],
        [table],
    )
    path = tmp_path / "emb.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    assert main(["inspect", str(path)]) == 0
    assert "(not counted: the weights and MACs of 1 Gather)" in capsys.readouterr().out


def test_inputs_of_different_fixed_leading_sizes_are_not_called_a_batch(tmp_path, capsys):
    """An image 1x3x8x8 beside ids 5x2: "at batch 1" read the first input's leading size as
    the whole graph's batch."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    ids = helper.make_tensor_value_info("ids", TensorProto.FLOAT, [5, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "ids"], ["y"])], "g", [x, ids], [y])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["inspect", str(path)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("cost")]
    assert "at the inputs' fixed sizes" in line and "at batch" not in line, line
