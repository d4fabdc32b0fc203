"""The float64 result of a case, which tells fp32 rounding from a departure in the verdict."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxconv.cli import main
from onnxconv.float64 import FROM_GRAPH, FROM_TORCH, float64_outputs, graph_in_float64
from onnxconv.reference import run_reference
from onnxconv.verdict import REFERENCE, TORCH

K, C = 2048, 16


def cancelling(path, planted: bool = False) -> None:
    """Two 1x1 Convs of 2048 channels with weights of 1e3 that differ by about 1e-3, subtracted:
    the output is 1e6 times smaller than what each Conv sums, so fp32 rounding (a different
    summation order in ONNX Runtime and numpy) moves it past any fixed tolerance."""
    rng = np.random.default_rng(0)
    w = (1e3 * rng.choice([-1.0, 1.0], size=(C, K, 1, 1))).astype(np.float32)
    w2 = (w + rng.standard_normal(w.shape) * 1e-3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"]),
        helper.make_node("Conv", ["x", "w2"], ["b"]),
        helper.make_node("Add" if planted else "Sub", ["a", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cancelling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, 4, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_cancelling_graph_passes_as_fp32_rounding_and_a_defect_in_it_still_fails(tmp_path):
    import json

    cancelling(tmp_path / "ok.onnx")
    quick = ["--precision", "fp32", "--opt-level", "all", "--seeds", "0", "--quiet"]
    report = tmp_path / "r.json"
    assert main(["validate", str(tmp_path / "ok.onnx"), *quick, "--json", str(report)]) == 0
    (cell,) = json.loads(report.read_text())["cells"]
    assert cell["status"] == "pass" and "within fp32 rounding" in cell["reason"]
    assert "from the graph in float64 on the reference evaluator" in cell["reason"]
    # the planted graph beside the correct graph's output: far past its own rounding
    folder = tmp_path / "planted"
    (folder / "test_data_set_0").mkdir(parents=True)
    cancelling(folder / "model.onnx", planted=True)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, K, 4, 4)).astype(np.float32)}
    right = run_reference(onnx.load(tmp_path / "ok.onnx"), feeds)["y"]
    for name, array in (("input_0.pb", feeds["x"]), ("output_0.pb", right)):
        tensor = numpy_helper.from_array(array, "x" if name.startswith("input") else "y")
        onnx.save_tensor(tensor, str(folder / "test_data_set_0" / name))
    assert main(["validate", str(folder), *quick, "--json", str(report)]) == 1
    (cell,) = json.loads(report.read_text())["cells"]
    assert (cell["status"], cell["kind"]) == ("fail", "export")


def test_the_graph_in_float64_computes_what_the_graph_does_without_fp32_rounding():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    third = numpy_helper.from_array(np.full((1, 3), 1 / 3, np.float32), "third")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=third),
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Cast", ["m"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["f"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    double = graph_in_float64(model)
    assert double.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # untouched
    feeds = {"x": np.array([[1, -2, 3], [4, 5, -6]], np.float32)}
    opinions = {REFERENCE: run_reference(model, feeds)}
    outputs, twin, what = float64_outputs(model, feeds, opinions)
    assert (twin, what, outputs["y"].dtype) == (REFERENCE, FROM_GRAPH, np.float64)
    third64 = np.float64(np.float32(1 / 3))  # the graph's constant, widened, not 1/3
    np.testing.assert_array_equal(outputs["y"], np.maximum(feeds["x"] * third64, 0))


def test_a_module_gives_its_own_float64_result_and_is_left_in_float32():
    module = torch.nn.Conv2d(3, 4, 3).eval()
    feeds = {"x": np.ones((1, 3, 5, 5), np.float32)}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])
    model = helper.make_model(helper.make_graph([], "g", [x], [y]))
    outputs, twin, what = float64_outputs(model, feeds, {TORCH: {}}, module, ["x"])
    assert (twin, what, outputs["y"].dtype) == (TORCH, FROM_TORCH, np.float64)
    assert module.weight.dtype == torch.float32
    with torch.no_grad():
        expected = module.double()(torch.ones(1, 3, 5, 5, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(outputs["y"], expected)


def test_a_constant_given_as_value_float_is_widened_too():
    """It was left float32, and the float64 graph did not run ("float64 != float32")."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    nodes = [
        helper.make_node("Constant", [], ["c"], value_float=0.1),
        helper.make_node("Constant", [], ["d"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Add", ["m", "d"], ["y"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    feeds = {"x": np.array([1, 2, 3], np.float32)}
    outputs, _, _ = float64_outputs(model, feeds, {REFERENCE: run_reference(model, feeds)})
    np.testing.assert_array_equal(outputs["y"], np.array([1, 2, 3]) * np.float64(np.float32(0.1))
                                  + [1, 2, 3])  # fmt: skip


def test_the_float64_copy_of_a_module_is_made_once_per_module():
    module = torch.nn.Conv2d(3, 4, 3).eval()
    other = torch.nn.Conv2d(3, 4, 3).eval()
    copies: dict = {}
    x = [np.ones((1, 3, 5, 5))]
    from onnxconv.float64 import torch_in

    first = torch_in(module, torch.float64, x, ["y"], copies)
    assert torch_in(module, torch.float64, x, ["y"], copies)["y"].tobytes() == first["y"].tobytes()
    (kept,) = copies.values()
    assert kept[0] is module and kept[1].weight.dtype == torch.float64
    torch_in(other, torch.float64, x, ["y"], copies)
    assert len(copies) == 2
    assert module.weight.dtype == torch.float32  # the module itself is left as it was


class Cancelling(torch.nn.Module):
    """:func:`cancelling` as a PyTorch module: PyTorch decides, and fp32 cannot compute it."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        w = (1e3 * rng.choice([-1.0, 1.0], size=(C, K, 1, 1))).astype(np.float32)
        w2 = (w + rng.standard_normal(w.shape) * 1e-3).astype(np.float32)
        self.register_buffer("w", torch.from_numpy(w))
        self.register_buffer("w2", torch.from_numpy(w2))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.w) - torch.nn.functional.conv2d(x, self.w2)


def test_the_fp16_cells_judge_the_graph_as_its_fp32_cells_do(tmp_path):
    """A correct EfficientNet-B0 passed its fp32 cells as fp32 rounding, and its fp16 cell
    failed as `export` ("the fp32 graph departs from torch"): the check before the fp16 cells
    held the fp32 graph to the plain tolerance. Now it is judged as the fp32 cells are."""
    from onnxconv import validate

    cancelling(tmp_path / "c.onnx")
    subject = validate.load_subject(str(tmp_path / "c.onnx"))
    validate.attach_module(subject, Cancelling(), "Cancelling")
    report = validate.validate([subject], ["cpu"], ["disabled"], ["fp32", "fp16"], seeds=(0,))
    by_target = {c.target: c for c in report.cells}
    fp32 = by_target["cpu/disabled/fp32"]
    assert fp32.status == "pass" and "within fp32 rounding" in fp32.reason, fp32.reason
    assert by_target["cpu/disabled/fp16"].kind != "export", by_target["cpu/disabled/fp16"].reason


def test_the_export_check_tells_fp32_rounding_from_a_departure_as_validate_does(tmp_path):
    """Export refused a graph whose ONNX Runtime output missed PyTorch's by more than the fixed
    tolerance, even where PyTorch's own fp32 result was that far from the exact one. Given the
    module, it judges as validate judges a stored test set: PyTorch 1.5x the tolerance off the
    float64 result is rounding (kept); 3x is a case fp32 cannot compute, which on stored data
    is excused nothing (refused), as is any difference without the module."""
    import pytest

    from onnxconv.errors import CheckFailed
    from onnxconv.export_checks import REPRODUCE_ATOL, check_reproduces
    from onnxconv.export_onnx import ExportOptions, to_onnx

    module = torch.nn.Conv2d(3, 4, 3).eval()
    x = torch.randn(1, 3, 8, 8)
    model = to_onnx(module, x, {}, ExportOptions())
    with torch.no_grad():
        exact = module.double()(x.double()).numpy()
    module.float()
    feeds = {model.graph.input[0].name: x.numpy()}
    for off, kept in ((1.5, True), (3.0, False)):
        expected = (exact + off * REPRODUCE_ATOL).astype(np.float32)  # PyTorch's fp32, as if
        if kept:
            check_reproduces(model, "conv", feeds, [expected], module)
        else:
            with pytest.raises(CheckFailed, match="does not reproduce"):
                check_reproduces(model, "conv", feeds, [expected], module)
        with pytest.raises(CheckFailed, match="does not reproduce"):
            check_reproduces(model, "conv", feeds, [expected])
