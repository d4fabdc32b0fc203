"""Validation: parity on every variant and level, planted defects caught, EP truth, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from cuda_marks import cuda_only
from onnx import numpy_helper

import onnxconv
from onnxconv import runtime, validate, variants
from onnxconv.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
COMMITTED = [n for n in variants.names() if variants.get(n).commit_graph]
LEVELS = ["disabled", "basic", "extended", "all"]
ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"


def copy_graph(name: str, tmp_path: Path) -> Path:
    """A copy of graphs/<name> with its manifest, so it still counts as the zoo variant."""
    shutil.copytree(GRAPHS / name, tmp_path / name)
    manifest = json.loads((GRAPHS / "manifest.json").read_text())
    manifest["graphs"] = {name: manifest["graphs"][name]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / name


def plant(folder: Path, edit) -> None:
    """Edit model.onnx in place, keeping the manifest's hash so the variant link survives."""
    model = onnx.load(folder / "model.onnx")
    edit(model)
    data = model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    manifest_path = folder.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib
    manifest["graphs"][folder.name]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def run(subjects, **kw):
    kw.setdefault("seeds", (0,))
    return validate.validate(subjects, kw.pop("eps", ["cpu"]), kw.pop("levels", ["all"]),
                             kw.pop("precisions", ["fp32"]), **kw)


@pytest.mark.parametrize("name", COMMITTED)
def test_every_variant_passes_on_cpu_at_every_level(name):
    subject = validate.load_subject(name, GRAPHS)
    assert subject.variant == name  # PyTorch is one of the opinions
    report = run([subject], levels=LEVELS, precisions=["fp32", "fp16"])
    assert [c.status for c in report.cells] == ["pass"] * 8, [c.reason for c in report.cells]
    cell = report.cells[0]
    assert cell.placement and set(cell.placement) == {"cpu"}
    refs = {r for case in cell.cases for out in case.outputs for r in out.results}
    assert refs == {"torch", "stored", "reference_evaluator"}
    assert [c.case for c in cell.cases] == ["test_data_set_0", "normal/seed0/batch1",
                                            "wide/seed0/batch1"]


def test_planted_wrong_shuffle_perm_fails_and_is_localised(tmp_path):
    folder = copy_graph("shuffle_unit", tmp_path)

    def wrong_perm(model):
        node = next(n for n in model.graph.node if n.op_type == "Transpose")
        node.attribute[0].ints[:] = [0, 1, 2, 3, 4]  # the shuffle becomes a no-op
    plant(folder, wrong_perm)
    report = run([validate.load_subject(str(folder))], distributions=("normal",))
    (cell,) = report.cells
    assert cell.status == "fail"
    failing = cell.cases[0].outputs[0]
    # ORT and the reference evaluator agree on the wrong graph; PyTorch and the stored data don't
    assert failing.results["reference_evaluator"].passed
    assert not failing.results["torch"].passed and not failing.results["stored"].passed
    assert "output 'output'" in cell.reason and "worst at" in cell.reason
    divergence = cell.cases[0].divergence
    assert divergence["op_type"] == "Transpose", divergence
    assert "first departs at node node_transpose (Transpose)" in cell.reason


def test_planted_weight_sign_flip_names_the_conv_and_the_element(tmp_path):
    folder = copy_graph("grouped", tmp_path)

    def flip(model):
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
        w = numpy_helper.to_array(weight).copy()
        w[5] *= -1  # output channel 5 only
        weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    plant(folder, flip)
    report = run([validate.load_subject(str(folder))], distributions=("normal",))
    (cell,) = report.cells
    assert cell.status == "fail"
    worst = cell.cases[0].outputs[0].results["torch"].worst
    assert worst.index[1] == 5  # the worst element sits in the sabotaged channel
    assert cell.cases[0].divergence["op_type"] == "Conv"


def test_dissenting_stored_output_is_a_visible_warning_not_a_failure(tmp_path):
    folder = copy_graph("depthwise", tmp_path)
    out = folder / "test_data_set_0" / "output_0.pb"
    tensor = onnx.TensorProto()
    tensor.ParseFromString(out.read_bytes())
    y = numpy_helper.to_array(tensor).copy()
    y[0, 3, 4, 4] += 1.0
    out.write_bytes(numpy_helper.from_array(y, "output").SerializeToString())
    report = run([validate.load_subject(str(folder))], distributions=("normal",))
    (cell,) = report.cells
    assert cell.status == "warn"
    check = cell.cases[0].outputs[0]
    assert check.dissenter == "stored"
    assert "reference 'stored' disagrees" in cell.reason
    assert check.results["stored"].worst.index == (0, 3, 4, 4)
    assert [c.status for c in cell.cases[1:]] == ["pass"]


def test_cuda_is_unavailable_never_passed_and_exit_1_when_asked(capsys):
    if runtime.ep_unavailable_reason("cuda") is None:
        pytest.skip("CUDA EP is active here; the unavailable path cannot be shown")
    report = run([validate.load_subject("grouped", GRAPHS)], eps=["cpu", "cuda"])
    statuses = {c.target: c.status for c in report.cells}
    assert statuses == {"cpu/all/fp32": "pass", "cuda/all/fp32": "unavailable"}
    assert "onnxruntime-gpu" in report.cells[1].reason
    argv = ["validate", "grouped", "--graphs", str(GRAPHS), "--opt-level", "all",
            "--precision", "fp32", "--seeds", "0", "--quiet"]
    assert main(argv + ["--ep", "cpu", "--ep", "cuda"]) == 1
    captured = capsys.readouterr()
    assert "UNAVAILABLE" in captured.out
    assert "required EP cuda is not active" in captured.err
    assert main(argv) == 0  # cuda in the default matrix: shown unavailable, not required
    assert main(argv + ["--require-ep"]) == 1


@cuda_only
@pytest.mark.parametrize("name", ["grouped", "depthwise", "shuffle_unit", "inception"])
def test_cuda_parity_every_level_and_precision_with_all_nodes_on_cuda(name):
    report = run([validate.load_subject(name, GRAPHS)], eps=["cuda"], levels=LEVELS,
                 precisions=["fp32", "fp16"])
    for cell in report.cells:
        assert cell.status == "pass", (cell.target, cell.reason)
        assert set(cell.placement) == {"cuda"}, cell.placement
        assert cell.providers[0] == "CUDAExecutionProvider"


@pytest.mark.parametrize("folder", ["test_Conv2d", "test_Conv2d_groups", "test_Conv2d_depthwise",
                                    "test_Conv2d_depthwise_with_multiplier",
                                    "test_Conv2d_depthwise_strided"])
def test_onnx_shipped_conv_test_data_validates_on_cpu(folder):
    subject = validate.load_subject(str(ONNX_DATA / folder))
    assert subject.variant is None and subject.test_sets
    report = run([subject], levels=LEVELS)
    assert all(c.status in ("pass", "warn") for c in report.cells), \
        [(c.target, c.reason) for c in report.cells]
    refs = {r for c in report.cells[0].cases for o in c.outputs for r in o.results}
    assert refs == {"stored", "reference_evaluator"} or refs == {"reference_evaluator"}


def test_bare_onnx_file_with_dynamic_batch_gets_two_batch_sizes(tmp_path):
    from onnxconv.export import ExportOptions, export_variants
    (result,) = export_variants(["separable"], tmp_path, ExportOptions(dynamic_batch=True))
    subject = validate.load_subject(str(result.model_path))
    cases = validate.make_cases(subject, seeds=(0,), distributions=("normal",))
    assert [c.label for c in cases] == ["normal/seed0/batch1", "normal/seed0/batch2"]
    assert cases[1].feeds["input"].shape[0] == 2
    assert run([subject]).cells[0].status == "pass"


def test_json_and_markdown_reports(tmp_path, capsys):
    out_json, out_md = tmp_path / "v.json", tmp_path / "v.md"
    assert main(["validate", "channel_shuffle", "--graphs", str(GRAPHS), "--ep", "cpu",
                 "--opt-level", "disabled,all", "--seeds", "0", "--quiet", "--json",
                 str(out_json), "--markdown", str(out_md)]) == 0
    report = json.loads(out_json.read_text())
    assert report["kind"] == "validate" and report["schema"] == 1
    assert report["environment"]["versions"]["onnxruntime"]
    assert report["summary"] == {"pass": 4}
    assert report["settings"]["cuda_options"]["use_tf32"] == "0"
    cell = report["cells"][0]
    assert cell["target"] == "cpu/disabled/fp32" and cell["placement"] == {"cpu": 3}
    result = cell["cases"][0]["outputs"][0]["results"]["torch"]
    for key in ("max_abs", "max_rel", "mean_abs", "rms", "cosine", "n_bad", "frac_bad", "worst",
                "histogram", "nan_actual"):
        assert key in result
    text = out_md.read_text()
    assert "| channel_shuffle | cpu/all/fp16 | pass |" in text
    assert "## Per graph and EP" in text and "| channel_shuffle | cpu | 4 pass | " in text


# --- bad input ------------------------------------------------------------------------------------

def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((GRAPHS / "standard" / "model.onnx").read_bytes()[:3000])
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    missing_pb = tmp_path / "missing_pb"
    shutil.copytree(GRAPHS / "grouped", missing_pb)
    (missing_pb / "test_data_set_0" / "output_0.pb").unlink()
    bad_pb = tmp_path / "bad_pb"
    shutil.copytree(GRAPHS / "grouped", bad_pb)
    (bad_pb / "test_data_set_0" / "input_0.pb").write_bytes(b"\xff\xfe not a tensor")
    wrong_shape = tmp_path / "wrong_shape"
    shutil.copytree(GRAPHS / "grouped", wrong_shape)
    x = np.zeros((1, 3, 28, 28), np.float32)
    (wrong_shape / "test_data_set_0" / "input_0.pb").write_bytes(
        numpy_helper.from_array(x, "input").SerializeToString())
    npz = tmp_path / "inputs.npz"
    np.savez(npz, input=np.zeros((1, 64, 28, 28), np.float64))
    return [
        ([str(tmp_path / "nope.onnx")], "no such file"),
        ([str(truncated)], str(truncated)),
        ([str(text)], str(text)),
        ([str(missing_pb)], "0 output_*.pb files"),
        ([str(bad_pb)], "input_0.pb"),
        ([str(wrong_shape)], "input"),
        ([str(GRAPHS / "grouped" / "model.onnx"), "--inputs", str(npz)], "dtype"),
        (["grouped", "--ep", "warp_drive"], "warp_drive"),
        (["grouped", "--opt-level", "ludicrous"], "ludicrous"),
    ]


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    for argv, word in bad_inputs(tmp_path):
        code = main(["validate", "--graphs", str(GRAPHS), "--quiet", "--seeds", "0",
                     "--opt-level", "all", "--precision", "fp32", "--ep", "cpu"] + argv)
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert word in err, (word, err)


def test_version_is_exposed():
    assert onnxconv.__version__


@pytest.mark.slow
@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_whole_networks_export_and_validate_at_every_level_and_precision(exporter, opset,
                                                                        tmp_path):
    from onnxconv.export import ExportOptions, export_variants
    export_variants(["shufflenet", "mobilenet_v1"], tmp_path,
                    ExportOptions(exporter=exporter, opset=opset, dynamic_batch=True))
    subjects = [validate.load_subject(n, tmp_path) for n in ("shufflenet", "mobilenet_v1")]
    assert [s.variant for s in subjects] == ["shufflenet", "mobilenet_v1"]
    report = run(subjects, levels=LEVELS, precisions=["fp32", "fp16"])
    assert {c.status for c in report.cells} == {"pass"}, \
        [(c.subject, c.target, c.reason) for c in report.cells if c.status != "pass"]
    assert [c.case for c in report.cells[0].cases][-1] == "wide/seed0/batch2"


def test_variant_without_a_graph_is_exported_now_and_validated(tmp_path):
    subject = validate.load_subject("shufflenet_v2_unit", tmp_path)  # empty graphs folder
    assert subject.variant == "shufflenet_v2_unit" and subject.test_sets
    assert "exported now" in str(subject.model_path)
    assert list(tmp_path.iterdir()) == []  # nothing written where the user keeps graphs
    assert run([subject], distributions=("normal",)).cells[0].status == "pass"


def test_dynamic_height_and_width_get_a_second_spatial_size(tmp_path):
    from onnxconv.export import ExportOptions, export_variants
    export_variants(["shuffle_unit_s2"], tmp_path, ExportOptions(dynamic_batch=True,
                                                                  dynamic_hw=True))
    subject = validate.load_subject("shuffle_unit_s2", tmp_path)
    cases = validate.make_cases(subject, seeds=(0,), distributions=("normal",))
    shapes = {c.label: c.feeds["input"].shape for c in cases}
    assert shapes["normal/seed0/batch2/17x19"] == (2, 480, 17, 19)
    assert shapes["normal/seed0/batch1"] == (1, 480, 14, 14)
    report = run([subject], distributions=("normal",))
    assert report.cells[0].status == "pass", report.cells[0].reason
    assert len(report.cells[0].cases) == 1 + 4  # stored + 2 batches × 2 sizes


@pytest.mark.slow
@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_every_variant_with_dynamic_batch_height_width_validates(exporter, opset, tmp_path):
    from onnxconv.export import ExportOptions, export_variants
    export_variants(variants.names(), tmp_path, ExportOptions(exporter=exporter, opset=opset,
                                                              dynamic_batch=True,
                                                              dynamic_hw=True))
    subjects = [validate.load_subject(n, tmp_path) for n in variants.names()]
    report = run(subjects, levels=["disabled", "all"], distributions=("normal",))
    assert {c.status for c in report.cells} == {"pass"}, \
        [(c.subject, c.target, c.reason) for c in report.cells if c.status != "pass"]
    sizes = {c.feeds["input"].shape[2:] for c in validate.make_cases(subjects[0], seeds=(0,))}
    assert len(sizes) == 2  # the export's size and another


def test_dissenting_reference_evaluator_is_named_and_the_cell_passes(monkeypatch):
    real = validate.reference_outputs

    def buggy_reference(model, feeds):  # a reference implementation with a bug, planted
        outputs = real(model, feeds)
        return {name: value + 0.5 for name, value in outputs.items()}

    monkeypatch.setattr(validate, "reference_outputs", buggy_reference)
    report = run([validate.load_subject("grouped", GRAPHS)], distributions=("normal",))
    (cell,) = report.cells
    assert cell.status == "warn"
    assert {o.dissenter for c in cell.cases for o in c.outputs} == {"reference_evaluator"}
    assert "reference 'reference_evaluator' disagrees with onnxruntime and torch" in cell.reason
    check = cell.cases[0].outputs[0]
    assert check.results["torch"].passed and check.results["stored"].passed
    assert check.results["reference_evaluator"].max_abs == pytest.approx(0.5, abs=1e-4)


def test_pytorch_opinion_uses_the_weights_the_graph_was_exported_with(tmp_path):
    from onnxconv.export import ExportOptions, export_variants
    export_variants(["grouped"], tmp_path, ExportOptions(seed=3))
    report = run([validate.load_subject("grouped", tmp_path)], distributions=("normal",))
    assert report.cells[0].status == "pass", report.cells[0].reason
