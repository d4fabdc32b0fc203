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
    by the int8 metrics, every candidate to the original's outputs element by element; a graph
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
        "[0, 1, 2] x ['normal', 'wide'], and on the inputs of its 1 stored test set(s)"
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
