"""A graph brought already quantized (QDQ, made by onnxconv or elsewhere) whose sources are float:
stored outputs of the fp32 graph, or PyTorch. validate holds onnxruntime to the reference
evaluator element by element (what the graph does) and the graph to its sources by the int8
metrics (what it should do); tune proves a quantized graph's candidates against the graph's own
outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_int8 import plant as plant_qdq

from onnxconv import precisions, quant_check, runtime, validate
from onnxconv.cli import main
from onnxconv.errors import NoDeployment
from onnxconv.verdict import REFERENCE

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"


def quantized(variant: str, calibration_scale: float = 1.0) -> onnx.ModelProto:
    """The committed block quantized by onnxconv's static int8 (per-channel), calibrated on 8
    seeded normal inputs times ``calibration_scale`` (below 1: a range too narrow, which clips
    fresh inputs), with the metadata stripped as if made elsewhere."""
    subject = validate.load_subject(variant)
    feeds = validate.seeded_feeds(subject, 100, 8, 1 << 30)
    feeds = [{k: v * np.float32(calibration_scale) for k, v in f.items()} for f in feeds]
    model = precisions.deploy(subject.model, "int8", feeds)
    del model.metadata_props[:]
    return model


def folder_with(tmp_path: Path, variant: str, model: onnx.ModelProto) -> Path:
    """The committed test-data folder of ``variant`` (its stored outputs are the fp32 graph's),
    without the manifest (no PyTorch), holding ``model`` instead of its graph."""
    folder = tmp_path / variant
    shutil.copytree(GRAPHS / variant, folder)
    onnx.save(model, folder / "model.onnx")
    return folder


def validate_json(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    argv = ["validate", *args, "--opt-level", "all", "--quiet", "--json", str(out)]
    code = main([*argv, "--markdown", str(out.with_suffix(".md"))])
    return code, json.loads(out.read_text())


def test_a_correct_quantized_graph_passes_against_the_fp32_stored_outputs(tmp_path):
    """Element by element, 415 of its 50176 outputs were outside fp32's tolerance plus one step
    and the cell failed as an export defect; by the int8 metrics it is 36 dB from the stored
    outputs, as correct int8 is. onnxruntime is held to the reference evaluator alone."""
    folder = folder_with(tmp_path, "grouped", quantized("grouped"))
    code, report = validate_json(tmp_path, str(folder), "--precision", "fp32,fp16,int8")
    assert code == 0
    cells = {c["target"]: c for c in report["cells"]}
    assert cells["cpu/all/fp16"]["status"] == "unavailable"
    assert cells["cpu/all/int8"]["status"] == "unavailable"
    cell = cells["cpu/all/fp32"]
    assert cell["status"] == "pass" and cell["deciders"] == ["stored", REFERENCE]
    quant = cell["quant"]
    assert quant["against"] == "stored" and quant["samples"] == 1
    assert 30 < quant["metrics"]["output"]["sqnr_db"] < 45
    assert set(cell["worst"]) == {REFERENCE}
    assert all(
        set(check["results"]) == {REFERENCE} for case in cell["cases"] for check in case["outputs"]
    )
    # element by element the stored outputs are far outside any float tolerance
    stored = validate.load_subject(str(folder)).test_sets[0].outputs["output"]
    got = runtime.run(
        runtime.make_session(onnx.load(folder / "model.onnx"), runtime.Target("cpu", "all")),
        validate.load_subject(str(folder)).test_sets[0].inputs,
    )["output"]
    assert np.max(np.abs(got - stored)) > 1e-2
    text = (tmp_path / "report.md").read_text()
    assert "| grouped | cpu/all/fp32 | pass | output | stored | 1 | 3" in text
    assert "- a graph that came quantized (its fp32 cells): judged against its source" in text


@pytest.mark.parametrize(
    "defect", ["narrow calibration", "weight scale x2"], ids=["clipping", "planted"]
)
def test_a_quantized_graph_that_departs_from_its_sources_fails_as_quantization(tmp_path, defect):
    """A range calibrated on inputs a third of the stored one's clips; a weight pair whose
    DequantizeLinear reads twice its scale computes another function: both fail, kind
    quantization, naming the metrics outside their bounds, never a pass or a warn."""
    if defect == "narrow calibration":
        model = quantized("grouped", calibration_scale=0.3)
    else:
        model = quantized("grouped")
        weight_dq = next(
            n
            for n in model.graph.node
            if n.op_type == "DequantizeLinear" and "weight" in n.input[0].lower()
        )
        model = plant_qdq(model, weight_dq.name, "scale")
    folder = folder_with(tmp_path, "grouped", model)
    code, report = validate_json(tmp_path, str(folder), "--precision", "fp32")
    assert code == 1
    (cell,) = report["cells"]
    assert cell["status"] == "fail" and cell["kind"] == "quantization"
    assert cell["reason"].startswith("the int8 graph departs from stored beyond int8 rounding")
    assert "sqnr_db" in cell["reason"]
    assert cell["quant"]["metrics"]["output"]["sqnr_db"] < quant_check.TOLERANCES["sqnr_db"].value


def test_pytorch_judges_a_quantized_graph_on_the_stored_inputs(tmp_path):
    """With a module, PyTorch decides, on the user's data (the stored test set), not on the
    generated inputs (the wide ones clip by design); without stored data, on the generated
    normal ones, and a note says so."""
    subject = validate.load_subject("grouped")
    subject.model = quantized("grouped")
    report = validate.validate([subject], ["cpu"], ["all"], ["fp32"], seeds=(0,))
    (cell,) = report.cells
    assert cell.status == "pass", cell.reason
    assert cell.quant["against"] == "torch" and cell.quant["samples"] == 1
    assert not any("generated normal" in n for n in report.subjects[0]["notes"])

    bare = validate.load_subject("grouped")
    bare.model, bare.test_sets = quantized("grouped"), []
    report = validate.validate([bare], ["cpu"], ["all"], ["fp32"], seeds=(0, 1))
    (cell,) = report.cells
    assert cell.status == "pass", cell.reason
    assert cell.quant["samples"] == 2  # normal/seed0, normal/seed1; never the wide inputs
    assert any("generated normal" in n for n in report.subjects[0]["notes"])


def test_a_quantized_graph_without_a_source_is_held_to_the_reference_evaluator(tmp_path):
    path = tmp_path / "q.onnx"
    onnx.save(quantized("grouped"), path)
    code, report = validate_json(tmp_path, str(path), "--precision", "fp32")
    assert code == 0
    (cell,) = report["cells"]
    assert cell["status"] == "pass" and cell["quant"] is None
    assert cell["deciders"] == [REFERENCE]


def test_an_onnxconv_deployment_has_no_other_deployment():
    """A graph onnxconv deployed at int8 (its metadata says so) has no fp16 deployment: there is
    no such graph to make (unavailable), as for one made elsewhere; not a failed conversion."""
    subject = validate.load_subject("grouped")
    int8 = precisions.deploy(subject.model, "int8", validate.calibration_feeds(subject, 1 << 24))
    with pytest.raises(NoDeployment, match="already deployed at int8"):
        precisions.deploy(int8, "fp16")


def test_stack_flattens_outputs_of_several_spatial_sizes():
    a, b = np.ones((1, 2, 4, 4)), np.zeros((1, 2, 3, 3))
    assert quant_check.stack([a, b]).shape == (32 + 18,)
    assert quant_check.stack([a, a]).shape == (2, 2, 4, 4)


def test_tune_proves_a_quantized_graphs_candidates_against_its_own_outputs(tmp_path, capsys):
    """tune of a quantized graph whose stored outputs are fp32 ones: the original is held to them
    by the int8 metrics, every candidate to the original's outputs by the same rule; a graph
    that fails the metrics is refused in one line."""
    folder = folder_with(tmp_path, "grouped", quantized("grouped"))
    out = tmp_path / "tuned"
    argv = ["tune", str(folder), "--out", str(out), "--rounds", "1", "--threads", "1"]
    assert main([*argv, "--json", str(tmp_path / "tune.json"), "--quiet"]) == 0
    report = json.loads((tmp_path / "tune.json").read_text())
    assert any(
        n.startswith("the graph came quantized: validate holds it to its float source")
        for n in report["notes"]
    )
    assert report["subject"]["sources"] == [
        "stored: the original (quantized) graph's outputs on the reference evaluator, seeds "
        "[0, 1, 2] x ['normal', 'wide'] at batch(es) [1], and on the inputs of its 1 stored "
        "test set(s)"
    ]
    assert all(c["proof"]["status"] == "pass" for c in report["candidates"])

    clipping = folder_with(tmp_path / "c", "grouped", quantized("grouped", 0.3))
    capsys.readouterr()
    argv = ["tune", str(clipping), "--out", str(tmp_path / "t2"), "--rounds", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "the original graph itself fails validate on cpu: fail quantization" in err[0]
    )
    assert not (tmp_path / "t2").exists()


def test_the_users_accuracy_budget_judges_int8_cells_and_quantized_graphs(tmp_path):
    """A whole quantized network legitimately ends below a block's 25 dB: validate takes the
    user's bounds (tune's --accuracy-budget syntax) for a graph that came quantized and for int8
    cells, and the report says which bounds judged."""
    folder = folder_with(tmp_path, "grouped", quantized("grouped", calibration_scale=0.3))
    loose = "sqnr_db=8,cosine=0.95,max_abs_over_range=0.5,mean_abs_over_range=0.05"
    code, report = validate_json(tmp_path, str(folder), "--precision", "fp32")
    assert code == 1
    code, report = validate_json(
        tmp_path, str(folder), "--precision", "fp32", "--accuracy-budget", loose
    )
    assert code == 0 and report["cells"][0]["status"] == "pass"
    assert report["settings"]["quant_bounds"]["sqnr_db"] == ">= 8"
    assert "- tolerances: sqnr_db >= 8, cosine >= 0.95" in (tmp_path / "report.md").read_text()
    # and a budget stricter than correct int8 reaches fails a correct deployment of a zoo block
    code, report = validate_json(
        tmp_path, "grouped", "--precision", "int8", "--int8-samples", "4",
        "--accuracy-budget", "sqnr_db=60",
    )  # fmt: skip
    assert code == 1
    (cell,) = report["cells"]
    assert cell["kind"] == "quantization" and "sqnr_db" in cell["reason"]
    assert report["settings"]["int8"]["tolerances"]["sqnr_db"] == ">= 60"


def write_folder(folder: Path, model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> Path:
    """A test-data folder: ``model`` with one stored input ``x`` and output ``y``."""
    (folder / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    names = (model.graph.input[0].name, model.graph.output[0].name)
    for kind, name, value in (("input", names[0], x), ("output", names[1], y)):
        tensor = numpy_helper.from_array(np.asarray(value, np.float32), name)
        (folder / "test_data_set_0" / f"{kind}_0.pb").write_bytes(tensor.SerializeToString())
    return folder


def test_nothing_to_judge_onnxruntime_by_is_one_line_naming_the_file(tmp_path, capsys):
    """The reference evaluator cannot run a com.microsoft op and the stored outputs are declared
    untrusted: a quantized graph passed with no check at all, a float one crashed with a
    traceback. Both now stop with one line naming the file."""
    from test_int8 import expand_dims_model

    model = expand_dims_model()
    x = np.random.default_rng(3).standard_normal((1, 4, 8, 8)).astype(np.float32)
    y = runtime.run(runtime.make_session(model, runtime.Target("cpu", "disabled")), {"input": x})
    folder = write_folder(tmp_path / "expand", model, x, y["output"])
    feeds = [{"input": np.random.default_rng(i).standard_normal(x.shape).astype(np.float32)}
             for i in range(4)]  # fmt: skip
    q = precisions.deploy(model, "int8", feeds)
    qfolder = write_folder(tmp_path / "qexpand", q, x, y["output"])
    for path in (folder, qfolder):
        argv = ["validate", str(path), "--precision", "fp32", "--opt-level", "all", "--quiet"]
        assert main([*argv, "--stored", "untrusted"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path / "model.onnx") in err[0], err
        assert "nothing else judges onnxruntime on test_data_set_0" in err[0]


def _quantized_cell(tmp_path, variant: str, seeds=(0, 1)) -> validate.Cell:
    folder = folder_with(tmp_path, variant, quantized(variant))
    report = validate.validate(
        [validate.load_subject(str(folder))], ["cpu"], ["all"], ["fp32"], seeds=seeds
    )
    return report.cells[0]


def test_onnxruntimes_fused_integer_kernels_round_within_int8_rounding(tmp_path, monkeypatch):
    """At level all ONNX Runtime fuses QDQ pairs into integer kernels that round intermediate
    tensors; one element of shuffle_unit_s2 then moves two output steps from the reference
    evaluator, and a correct graph failed as executors. Within the int8 bounds it passes, and
    says so; an executor that departs beyond them still fails."""
    cell = _quantized_cell(tmp_path, "shuffle_unit_s2")
    assert cell.status == "pass", cell.reason
    if cell.reason:  # here normal/seed1: one element two steps off (ORT 1.32, AVX-512 VNNI)
        assert "onnxruntime rounds differently from the reference evaluator" in cell.reason

    real_run = runtime.run

    def off_by_far(info, feeds):  # every output of the session shifted by a tenth of its range
        out = real_run(info, feeds)
        return {k: v + np.float32(0.1) * np.float32(np.ptp(v)) for k, v in out.items()}

    monkeypatch.setattr(runtime, "run", off_by_far)
    cell = _quantized_cell(tmp_path / "far", "shuffle_unit_s2", seeds=(0,))
    assert cell.status == "fail" and cell.kind == "executors"
    assert "onnxruntime departs from the reference evaluator on this int8 graph beyond" in (
        cell.reason
    )


@pytest.mark.parametrize("batch", [1, "N"], ids=["fixed", "dynamic"])
def test_an_insensitive_quantized_graph_on_one_stored_input_warns(tmp_path, batch):
    """One stored input has no spread to measure: the reference evaluator's outputs on every
    case measure it (those of one shape: a dynamic batch gives cases at 1 and 2), and an output
    that hardly moves with its input is WARN insensitive, as the int8 cell of the same fp32
    graph is."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((8, 8, 1, 1)) * 1e-3).astype("f4"), "W")
    bias = numpy_helper.from_array(np.linspace(2, 4, 8).astype(np.float32), "B")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["input", "W", "B"], ["output"])],
        "flat",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [batch, 8, 8, 8])],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [batch, 8, 8, 8])],
        [weight, bias],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    x = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    y = runtime.run(runtime.make_session(model, runtime.Target("cpu", "disabled")), {"input": x})
    feeds = [{"input": rng.standard_normal(x.shape).astype(np.float32)} for _ in range(8)]
    folder = write_folder(
        tmp_path / "flat", precisions.deploy(model, "int8", feeds), x, y["output"]
    )
    code, report = validate_json(tmp_path, str(folder), "--precision", "fp32")
    (cell,) = report["cells"]
    assert code == 0 and (cell["status"], cell["kind"]) == ("warn", "insensitive")
    assert "on the reference evaluator): agreeing with it proves little" in cell["reason"]


def test_stale_stored_outputs_beside_a_quantized_graph_are_a_warning(tmp_path):
    """PyTorch decides; stored outputs it outvotes (here 1.5x) are stale_stored, as beside an
    fp32 graph, not ignored."""
    subject = validate.load_subject("separable")
    subject.model = quantized("separable")
    stored = subject.test_sets[0]
    subject.test_sets = [
        validate.TestSet(stored.inputs, {k: v * 1.5 for k, v in stored.outputs.items()}, "stale")
    ]
    report = validate.validate([subject], ["cpu"], ["all"], ["fp32"], seeds=(0,))
    (cell,) = report.cells
    assert (cell.status, cell.kind) == ("warn", "stale_stored"), cell.reason
    assert cell.reason.startswith("stale stored outputs: the int8 graph is within int8 rounding")


def test_a_float16_graph_keeping_the_float32_tensors_the_spec_requires_computes_in_fp16():
    """onnxconverter-common keeps Resize's scales float32: the graph still computes in fp16
    (it was judged at fp32's tolerance, and its fp16 cell failed as a conversion); one stray
    float16 constant does not make a float32 graph fp16."""
    from onnx import TensorProto

    half = precisions.deploy(onnx.load(GRAPHS / "grouped" / "model.onnx"), "fp16")
    del half.metadata_props[:]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    half.graph.initializer.append(scales)
    assert precisions.computes_in(half) == "fp16"
    plain = onnx.load(GRAPHS / "grouped" / "model.onnx")
    plain.graph.initializer.append(numpy_helper.from_array(np.array([1.0], np.float16), "stray"))
    assert precisions.computes_in(plain) == "fp32"
    assert any(t.data_type == TensorProto.FLOAT16 for t in plain.graph.initializer)


def test_a_graph_onnxruntime_cannot_load_is_one_line_naming_its_file(tmp_path, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "d"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.ones((1, 4), np.float64), "d")],
    )
    path = tmp_path / "mixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    assert main(["validate", str(path), "--opt-level", "all", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"onnxconv validate: error: {path}: "), err


def test_a_budget_that_judges_nothing_says_so(capsys):
    argv = ["validate", "grouped", "--precision", "fp32", "--opt-level", "all", "--quiet"]
    assert main([*argv, "--accuracy-budget", "sqnr_db=20"]) == 0
    assert "note: --accuracy-budget judged nothing" in capsys.readouterr().out
