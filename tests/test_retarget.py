"""validate --target-opset: converted by onnx's converter, else exported again, else named."""

from __future__ import annotations

import shutil
from pathlib import Path

from onnxconv import validate
from onnxconv.cli import main
from onnxconv.opset import model_opset
from onnxconv.retarget import retarget

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


def run(subjects, opset):
    return validate.validate(subjects, ["cpu"], ["all"], ["fp32"], seeds=(0,), target_opset=opset)


def test_a_conv_graph_is_converted_with_its_tensor_names():
    subject = validate.load_subject("standard", GRAPHS)
    moved = retarget(subject, 9)
    assert model_opset(moved.model) == 9 and model_opset(subject.model) == 18
    assert moved.label == "standard@opset9"
    assert moved.notes[-1] == "converted from opset 18 to 9 by onnx.version_converter"
    names = lambda m: {o for n in m.graph.node for o in n.output}  # noqa: E731
    assert names(moved.model) == names(subject.model)
    assert retarget(subject, 18) is subject


def test_where_the_converter_stops_the_module_is_exported_again_and_passes():
    """onnx 1.23 has no Relu/Reshape/Add 14 -> 13 adapter: the shuffle unit goes through the
    TorchScript exporter, and PyTorch still decides the verdict."""
    report = run([validate.load_subject("shuffle_unit", GRAPHS)], 11)
    (cell,) = report.cells
    assert (cell.subject, cell.status, cell.deciders[0]) == (
        "shuffle_unit@opset11",
        "pass",
        "torch",
    )
    (note,) = report.subjects[0]["notes"]
    assert note.startswith("exported again by the TorchScript exporter at opset 11")
    assert "Relu (opset 14 -> 13)" in note and "Transpose (opset 13 -> 12)" in note


def test_a_graph_with_a_defect_is_not_replaced_by_a_fresh_export_of_its_module(tmp_path):
    """The route through a fresh export validated that export, not the user's file: a shuffle
    unit with one filter negated passed at opset 11 while it fails at its own opset."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(GRAPHS, tmp_path / "g")
    path = tmp_path / "g" / "shuffle_unit" / "model.onnx"
    model = onnx.load(path)
    weight = next(t for t in model.graph.initializer if t.dims and len(t.dims) == 4)
    w = numpy_helper.to_array(weight).copy()
    w[0] *= -1
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    onnx.save(model, path)
    (cell,) = run([validate.load_subject("shuffle_unit", tmp_path / "g")], 11).cells
    assert (cell.subject, cell.status, cell.kind) == ("shuffle_unit@opset11", "fail", "export")
    assert cell.reason.startswith(f"{path}: at its own opset 18, the fp32 graph departs from torch")
    assert cell.reason.endswith(
        "a fresh export at opset 11 would not be this graph, so it is not validated in its place"
    )


def test_a_bare_graph_the_converter_cannot_take_fails_naming_each_operator(tmp_path, capsys):
    bare = tmp_path / "shuffle.onnx"
    shutil.copy(GRAPHS / "shuffle_unit" / "model.onnx", bare)
    report = run([validate.load_subject(str(bare))], 11)
    (cell,) = report.cells
    assert (cell.status, cell.kind) == ("fail", "conversion")
    assert "Reshape (opset 14 -> 13)" in cell.reason
    assert "no PyTorch module to export again" in cell.reason
    code = main(["validate", str(bare), "--target-opset", "11", "--precision", "fp32",
                 "--opt-level", "all", "--seeds", "0", "--quiet"])  # fmt: skip
    assert code == 1
    assert "FAIL conversion" in capsys.readouterr().out


def _renamed_unit(tmp_path, negate_filter: bool = False) -> Path:
    """The shuffle unit as a graph exported elsewhere, with its stored test set: input
    ``image``, output ``features``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(GRAPHS / "shuffle_unit" / "model.onnx")
    renames = {"input": "image", "output": "features"}
    for node in model.graph.node:
        node.input[:] = [renames.get(t, t) for t in node.input]
        node.output[:] = [renames.get(t, t) for t in node.output]
    for info in [*model.graph.input, *model.graph.output]:
        info.name = renames[info.name]
    if negate_filter:
        weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
        w = numpy_helper.to_array(weight).copy()
        w[0] *= -1
        weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    folder = tmp_path / ("broken" if negate_filter else "correct") / "unit"
    shutil.copytree(GRAPHS / "shuffle_unit" / "test_data_set_0", folder / "test_data_set_0")
    onnx.save(model, folder / "model.onnx")
    return folder


def _with_its_module(folder: Path):
    subject = validate.load_subject(str(folder))
    module = validate.torch_module(validate.load_subject("shuffle_unit", GRAPHS))
    validate.attach_module(subject, module, "the shuffle unit")
    return subject


def test_a_graph_with_a_module_is_exported_again_from_its_own_inputs(tmp_path):
    """validate model.onnx --module --target-opset 11 once failed: no manifest recorded the
    inputs to export the module again from. The graph's own inputs say them, and the fresh
    export takes the graph's names, by which its stored outputs are compared."""
    (cell,) = run([_with_its_module(_renamed_unit(tmp_path))], 11).cells
    assert (cell.subject, cell.status, cell.deciders[0]) == ("unit@opset11", "pass", "torch")
    assert "stored" in cell.worst  # the stored output, by its name, was compared too
    broken = _with_its_module(_renamed_unit(tmp_path, negate_filter=True))
    (cell,) = run([broken], 11).cells
    assert (cell.status, cell.kind) == ("fail", "export")
    assert "would not be this graph, so it is not validated in its place" in cell.reason


def test_an_opset_out_of_range_is_a_usage_error(capsys):
    assert main(["validate", "standard", "--graphs", str(GRAPHS), "--target-opset", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target opset 3 out of range" in err[0]
