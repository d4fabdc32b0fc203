"""validate --precision: fp16 by either converter, fp16 I/O, int8 static/per-tensor/dynamic.

int8 cells are judged by quantization metrics against the fp32 source on inputs the
calibration never saw; these tests plant quantization defects through the same path and check
the verdict, the named layer, and the report in JSON and Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from test_int8 import pair_for
from test_int8 import plant as plant_qdq

from onnxconv import precisions, quant_check, runtime, validate
from onnxconv.cli import main
from onnxconv.errors import UserInputError
from onnxconv.parity import Tolerance

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
CPU_ALL = lambda precision: runtime.Target("cpu", "all", precision)  # noqa: E731


def run(subjects, precisions_, **kw):
    kw.setdefault("seeds", (0,))
    kw.setdefault("int8_samples", 12)
    return validate.validate(subjects, ["cpu"], ["all"], precisions_, **kw)


def cells_by_target(report) -> dict[str, validate.Cell]:
    return {cell.target: cell for cell in report.cells}


def test_every_precision_of_a_zoo_block_passes_with_its_metrics():
    subject = validate.load_subject("shuffle_unit", GRAPHS)
    names = ["fp32", "fp16", "fp16-io", "fp16-onnxconv", "int8", "int8-tensor", "int8-dynamic"]
    cells = cells_by_target(run([subject], names))
    assert {c.status for c in cells.values()} == {"pass"}, {
        t: c.reason for t, c in cells.items() if c.status != "pass"
    }
    for name in ("int8", "int8-tensor", "int8-dynamic"):
        quant = cells[f"cpu/all/{name}"].quant
        assert quant["against"] == "torch" and quant["samples"] == 13  # 1 stored + 12 generated
        metrics = quant["metrics"]["output"]
        assert metrics["sqnr_db"] > 30 and metrics["cosine"] > 0.999
        assert quant["sensitivity"]["output"] > 0.5  # a block's output follows its input
    static = cells["cpu/all/int8"].quant["layers"]
    assert static and all(float(e["local_sqnr_db"]) > 30 for e in static)
    assert cells["cpu/all/int8-dynamic"].quant["layers_note"].startswith("no QDQ pairs")
    # float cells keep the element-wise verdict: fp16 I/O rounds the inputs too, so it is the
    # least accurate of the fp16 deployments
    worst = {n: cells[f"cpu/all/{n}"].worst["torch"]["max_abs"] for n in ("fp16", "fp16-io")}
    assert 0 < worst["fp16"] <= worst["fp16-io"]


def test_fp16_io_runs_float16_inputs_and_outputs():
    model = onnx.load(GRAPHS / "grouped" / "model.onnx")
    deployed = precisions.deploy(model, "fp16-io")
    info = runtime.make_session(deployed, CPU_ALL("fp16-io"))
    assert {s.dtype for s in info.inputs + info.outputs} == {np.dtype(np.float16)}
    x = {"input": np.ones((1, 64, 56, 56), np.float32)}
    assert precisions.feeds_for(deployed, x)["input"].dtype == np.float16
    assert precisions.feeds_for(model, x)["input"].dtype == np.float32


def test_no_deployment_of_pure_data_movement_is_unavailable_not_passed():
    subject = validate.load_subject("channel_shuffle", GRAPHS)
    cells = cells_by_target(run([subject], ["int8", "int8-dynamic"]))
    for cell in cells.values():
        assert cell.status == "unavailable" and cell.kind == "conversion"
        assert "nothing to quantize" in cell.reason and "Reshape, Transpose" in cell.reason
    # no deployment is not an EP that is missing: naming the EP does not turn it into exit 1
    args = ["validate", "channel_shuffle", "--graphs", str(GRAPHS), "--ep", "cpu", "--quiet",
            "--precision", "fp32,int8-dynamic", "--opt-level", "all", "--seeds", "0"]  # fmt: skip
    assert main(args) == 0
    # but a run in which no cell could be validated is no pass for a CI gate
    assert main([*args[:-5], "int8-dynamic", "--opt-level", "all", "--seeds", "0"]) == 1


def test_a_planted_zero_point_defect_fails_and_names_its_pair():
    """One DequantizeLinear reads a zero point off by one: every output element is one step
    off the same way, which the mean (signed) error over the output range catches, and the
    per-layer comparison names the pair."""
    subject = validate.load_subject("standard", GRAPHS)
    calibration = validate.calibration_feeds(subject, 2**30)
    good = precisions.deploy(subject.model, "int8", calibration)
    bad = plant_qdq(good, pair_for(good, subject.model, "output").dequantize_node, "zero_point")
    judged_on = validate.evaluation(subject, None, 12, 2**30)

    clean = validate.run_judged_cell(subject, CPU_ALL("int8"), good, judged_on, None)
    assert clean.status == "pass", clean.reason
    cell = validate.run_judged_cell(subject, CPU_ALL("int8"), bad, judged_on, None)
    assert (cell.status, cell.kind) == ("fail", "quantization")
    assert "mean_error_over_range" in cell.reason
    assert "largest own error at output (Conv)" in cell.reason
    assert cell.quant["layers"][0]["tensor"] == "output"


def depthwise_with_a_weak_channel(factor: float) -> onnx.ModelProto:
    """The zoo's depthwise block behind a per-channel Mul that makes channel 0 `factor` times
    weaker, with channel 0's filter `factor` times wider: the output is unchanged in magnitude
    but the filters' ranges differ by `factor`, as BatchNorm folding leaves trained filters."""
    model = onnx.load(GRAPHS / "depthwise" / "model.onnx")
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(weight).copy()
    w[0] *= factor
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    scale = np.ones((1, w.shape[0], 1, 1), np.float32)
    scale[0, 0] = 1 / factor
    model.graph.initializer.append(numpy_helper.from_array(scale, "channel_scale"))
    conv.input[0] = "weakened"
    model.graph.node.insert(0, helper.make_node("Mul", ["input", "channel_scale"], ["weakened"]))
    return model


def test_per_tensor_weights_fail_a_depthwise_conv_that_per_channel_passes(tmp_path):
    folder = tmp_path / "depthwise_folded"
    folder.mkdir()
    onnx.save(depthwise_with_a_weak_channel(30.0), folder / "model.onnx")
    subject = validate.load_subject(str(folder / "model.onnx"))
    cells = cells_by_target(run([subject], ["int8", "int8-tensor"], int8_samples=16))
    per_channel, per_tensor = cells["cpu/all/int8"], cells["cpu/all/int8-tensor"]
    assert per_channel.quant["against"] == validate.FP32_GRAPH  # no PyTorch module here
    assert per_channel.status == "pass", per_channel.reason
    assert (per_tensor.status, per_tensor.kind) == ("fail", "quantization")
    assert "sqnr_db" in per_tensor.reason
    gap = (
        per_channel.quant["metrics"]["output"]["sqnr_db"]
        - per_tensor.quant["metrics"]["output"]["sqnr_db"]
    )
    assert gap > 6


def test_an_input_insensitive_output_warns_instead_of_passing():
    """An output that ignores its input agrees with any int8 version of itself: that proves
    nothing (random networks with drawn BatchNorm statistics are like this)."""
    model = onnx.load(GRAPHS / "standard" / "model.onnx")
    pattern = np.linspace(-1.0, 1.0, 20)[None]  # the same logits whatever the input
    flat = [{"output": pattern + 1e-7 * i} for i in range(5)]
    noisy = [{"output": f["output"] + 1e-4 * (-1) ** i} for i, f in enumerate(flat)]
    verdict = quant_check.judge_deployment(
        model, model, [{}] * 5, flat, noisy, against="torch", static=False
    )
    assert (verdict.status, verdict.kind) == ("warn", "insensitive")
    assert quant_check.sensitivity([np.zeros(3), np.zeros(3)]) == 0.0
    assert quant_check.sensitivity([np.arange(3.0)]) == float("inf")
    moving = [np.full(3, float(i)) for i in range(4)]
    assert quant_check.sensitivity(moving) == pytest.approx(np.std([0, 1, 2, 3]) / np.sqrt(3.5))


def test_calibration_is_reproducible_and_reported(tmp_path):
    subject = validate.load_subject("separable", GRAPHS)
    first = validate.deployments(subject, ["int8"], None, "minmax", 2**30)["int8"]
    again = validate.deployments(subject, ["int8"], None, "minmax", 2**30)["int8"]
    assert first.SerializeToString() == again.SerializeToString()
    out = tmp_path / "v.json"
    code = main(
        ["validate", "separable", "--graphs", str(GRAPHS), "--precision", "int8", "--opt-level",
         "all", "--seeds", "0", "--int8-samples", "8", "--quiet", "--json", str(out),
         "--markdown", str(tmp_path / "v.md")]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["settings"]["int8"]["calibration_seed"] == precisions.CALIBRATION_SEED
    assert report["settings"]["int8"]["tolerances"]["sqnr_db"] == ">= 25"
    cell = report["cells"][0]
    assert cell["target"] == "cpu/all/int8" and cell["quant"]["samples"] == 9
    text = (tmp_path / "v.md").read_text()
    assert "## int8 deployments" in text and "| separable | cpu/all/int8 | pass | output |" in text


def test_given_calibration_data_is_used_and_checked(tmp_path, capsys):
    model = onnx.load(GRAPHS / "pointwise" / "model.onnx")
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    data = tmp_path / "calib.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal([6, *shape[1:]], np.float32))
    out = tmp_path / "v.json"
    args = ["validate", "pointwise", "--graphs", str(GRAPHS), "--precision", "int8",
            "--opt-level", "all", "--seeds", "0", "--int8-samples", "8", "--quiet"]  # fmt: skip
    assert main([*args, "--calibration-data", str(data), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["int8"]["calibration"] == "given"
    assert json.loads(out.read_text())["settings"]["int8"]["calibration_samples"] == 6

    np.savez(data, x=np.zeros([2, *shape[1:]], np.float32))
    capsys.readouterr()
    assert main([*args, "--calibration-data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "calib.npz" in err[0] and "missing input" in err[0]


def test_unknown_precision_is_a_usage_error(capsys):
    assert main(["validate", "standard", "--graphs", str(GRAPHS), "--precision", "int4"]) == 2
    assert "unknown precision 'int4'" in capsys.readouterr().err
    with pytest.raises(UserInputError, match="needs calibration"):
        precisions.deploy(onnx.load(GRAPHS / "standard" / "model.onnx"), "int8")


def test_per_channel_int8_of_an_opset_11_graph_is_deployed_at_opset_13(tmp_path, capsys):
    """ORT's quantizer wrote per-axis DequantizeLinear into the opset-11 graph, which ONNX
    Runtime refused to load; the graph now goes to opset 13 first."""
    argv = ["export", "--variant", "grouped", "--opset", "11", "--exporter", "torchscript"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    report = tmp_path / "v.json"
    argv = ["validate", str(tmp_path / "grouped"), "--precision", "int8", "--opt-level", "all"]
    assert main([*argv, "--quiet", "--json", str(report)]) == 0
    (cell,) = json.loads(report.read_text())["cells"]
    assert cell["status"] == "pass" and cell["target"] == "cpu/all/int8"


def test_a_deployment_that_does_not_load_is_a_conversion_failure(monkeypatch, capsys):
    real = precisions.deploy

    def broken(model, name, *args, **kwargs):
        deployed = real(model, name, *args, **kwargs)
        if name != "fp32":  # the fp32 "deployment" is the user's graph itself
            deployed.graph.node.append(helper.make_node("NoSuchOp", ["input"], ["stray"]))
        return deployed

    monkeypatch.setattr(precisions, "deploy", broken)
    argv = ["validate", "grouped", "--precision", "fp32,fp16-io", "--opt-level", "all", "--quiet"]
    assert main(argv) == 1
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    status = {row[1]: row[2:4] for row in rows if row[:1] == ["grouped"]}
    assert status["cpu/all/fp32"][0] == "pass"
    assert status["cpu/all/fp16-io"] == ["FAIL", "conversion"]


def _fp16_converter_breaks(monkeypatch) -> None:
    """onnxconverter-common fails on every graph, as it does on some."""
    from onnxconv.errors import CheckFailed

    real = precisions.deploy

    def converter_breaks(model, name, *args, **kwargs):
        if name == "fp16":
            raise CheckFailed("onnxconverter-common produced an invalid fp16 graph")
        return real(model, name, *args, **kwargs)

    monkeypatch.setattr(precisions, "deploy", converter_breaks)


def test_the_default_fp16_that_a_converter_cannot_make_is_unavailable_not_a_failure(
    monkeypatch, capsys
):
    """validate without --precision runs fp32 and fp16: where onnxconverter-common breaks on a
    correct graph, its fp16 cells are unavailable with the reason (exit 0 on the fp32 passes);
    named with --precision fp16, the same cells FAIL conversion (exit 1)."""
    _fp16_converter_breaks(monkeypatch)
    argv = ["validate", "grouped", "--opt-level", "all", "--quiet"]
    assert main(argv) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    status = {row[1]: row[2] for row in rows if row[:1] == ["grouped"] and row[1][-1] != ":"}
    assert status == {"cpu/all/fp32": "pass", "cpu/all/fp16": "UNAVAILABLE"}
    assert main([*argv, "--precision", "fp32,fp16"]) == 1
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert {row[1]: row[2:4] for row in rows if row[:1] == ["grouped"]}["cpu/all/fp16"] == [
        "FAIL",
        "conversion",
    ]


def test_a_graph_that_already_computes_in_fp16_or_int8_has_no_deployment_made_from_it(tmp_path):
    """A float16 graph, or ONNX Runtime's own QDQ int8 one, brought as it is: the fp32 cells run
    it, its fp16/int8 cells are unavailable (nothing to make), and a note says so."""
    fp32 = onnx.load("graphs/grouped/model.onnx")
    feeds = [validate.seeded_feeds(validate.load_subject("grouped"), 100, 1, 1 << 30)[0]]
    for native, model in (
        ("fp16", precisions.deploy(fp32, "fp16-io")),
        ("fp16", precisions.deploy(fp32, "fp16")),  # float32 inputs and outputs through Casts
        ("int8", precisions.deploy(fp32, "int8", feeds)),
    ):
        del model.metadata_props[:]  # as if made elsewhere
        assert precisions.computes_in(model) == native
        path = tmp_path / f"{native}-{len(model.graph.node)}.onnx"
        onnx.save(model, path)
        report = path.with_suffix(".json")
        argv = ["validate", str(path), "--precision", "fp32,fp16,int8", "--opt-level", "all"]
        assert main([*argv, "--quiet", "--json", str(report)]) == 0
        data = json.loads(report.read_text())
        status = {c["target"]: c["status"] for c in data["cells"]}
        assert status == {
            "cpu/all/fp32": "pass",
            "cpu/all/fp16": "unavailable",
            "cpu/all/int8": "unavailable",
        }
        assert (
            f"the graph already computes in {native}: its fp32 cells run it as it is"
            in (data["subjects"][0]["notes"])
        )
    assert precisions.computes_in(fp32) == "fp32"


def _grouped_folder_with_a_flipped_channel(folder: Path, stored_from_flipped: bool) -> Path:
    """The committed grouped block as a bare test-data folder (no manifest: no PyTorch), with
    output channel 0's filter negated either in the graph (its stored output the right one: a
    broken export) or in the graph that made the stored output (a stale one)."""
    import shutil

    shutil.copytree(GRAPHS / "grouped", folder)
    model = onnx.load(folder / "model.onnx")
    stored = onnx.load(folder / "model.onnx")
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    flipped = stored if stored_from_flipped else model
    weight = next(i for i in flipped.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(weight).copy()
    w[0] *= -1
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    onnx.save(model, folder / "model.onnx")
    data = folder / "test_data_set_0"
    feed = {"input": numpy_helper.to_array(onnx.load_tensor(data / "input_0.pb"))}
    out = runtime.run(runtime.make_session(stored, runtime.Target("cpu", "disabled")), feed)
    name = model.graph.output[0].name
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(out[name], name).SerializeToString())
    return folder


@pytest.mark.parametrize("stored_from_flipped", [False, True], ids=["broken", "stale"])
def test_an_int8_deployment_of_a_graph_its_stored_outputs_disown_fails(
    tmp_path, stored_from_flipped
):
    """Without PyTorch the fp32 graph judges its int8 deployment; where that graph departs from
    its stored outputs (a broken export, or stale outputs), the deployment followed the wrong
    function faithfully and passed at 31.6 dB. Now the cell fails, kind export, naming where the
    fp32 graph departs; --stored untrusted leaves the judging to the fp32 graph again."""
    folder = _grouped_folder_with_a_flipped_channel(tmp_path / "g", stored_from_flipped)
    subject = validate.load_subject(str(folder))
    cell = cells_by_target(run([subject], ["int8"]))["cpu/all/int8"]
    assert (cell.status, cell.kind) == ("fail", "export")
    assert cell.reason.startswith(
        "the fp32 graph departs from stored on test_data_set_0: output 'output': "
    )
    assert cell.reason.endswith(
        "; its int8 deployment has nothing true to approach (its fp32 "
        "cells show where the graph departs)"
    )
    untrusted = run([validate.load_subject(str(folder))], ["int8"], trust_stored=False)
    assert cells_by_target(untrusted)["cpu/all/int8"].status == "pass"


def test_the_users_tolerance_holds_the_fp32_graph_in_int8_cells_as_in_fp32_ones(tmp_path):
    """The departure check took validate's default fp32 tolerance whatever --atol/--rtol said:
    a graph the user's tolerance accepts passed its fp32 cells and failed its int8 cell as an
    export defect "that the fp32 cells show"."""
    folder = _grouped_folder_with_a_flipped_channel(tmp_path / "g", stored_from_flipped=False)
    loose = Tolerance(atol=10.0, rtol=1.0)
    cells = cells_by_target(run([validate.load_subject(str(folder))], ["fp32", "int8"], tol=loose))
    assert cells["cpu/all/fp32"].status != "fail", cells["cpu/all/fp32"].reason
    assert cells["cpu/all/int8"].kind != "export", cells["cpu/all/int8"].reason
    # and under the default tolerance both fail
    default = cells_by_target(run([validate.load_subject(str(folder))], ["fp32", "int8"]))
    assert [default[f"cpu/all/{p}"].kind for p in ("fp32", "int8")] == ["export", "export"]


def test_an_int8_deployment_of_a_graph_pytorch_disowns_fails_as_an_export_defect(tmp_path):
    """With PyTorch judging, the same broken graph used to fail as `quantization`, blaming the
    QDQ pairs; the defect is the export's."""
    folder = _grouped_folder_with_a_flipped_channel(tmp_path / "g", stored_from_flipped=False)
    subject = validate.load_subject(str(folder / "model.onnx"))
    good = validate.load_subject("grouped", GRAPHS)
    subject.module, subject.module_source = validate.torch_module(good), "the grouped variant"
    subject.test_sets = []
    cell = cells_by_target(run([subject], ["int8"]))["cpu/all/int8"]
    assert (cell.status, cell.kind) == ("fail", "export")
    assert cell.reason.startswith("the fp32 graph departs from torch on evaluation input 0:")
    good_cell = cells_by_target(run([good], ["int8"]))["cpu/all/int8"]
    assert good_cell.status == "pass", good_cell.reason


def _overflowing_in_float16(folder: Path) -> Path:
    """A 3x3 Conv whose activations reach 2e5 (weights of +-3000, inside the fp16 converter's
    clamp), scaled back by 1e-3: fine in float32, beyond float16's 65504 as written. Its stored
    input and output are the float32 graph's."""
    rng = np.random.default_rng(5)
    w = np.sign(rng.standard_normal((8, 8, 3, 3))).astype(np.float32) * 3000
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "k"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "overflow",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(1e-3), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = (np.abs(rng.standard_normal((1, 8, 8, 8))) * 2).astype(np.float32)
    y = runtime.run(runtime.make_session(model, runtime.Target("cpu", "disabled")), {"x": x})["y"]
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(y, "y").SerializeToString())
    return folder


def test_a_float16_deployment_that_overflows_as_written_fails_where_the_cpu_hides_it(tmp_path):
    """ONNX Runtime's CPU computes float16 in float32, so its outputs were fine and every fp16
    cell passed (and tune shipped the fp16 graph); the Conv's output, 1.86e5 in float32, cannot
    be held in the float16 tensor the deployment stores it in."""
    folder = _overflowing_in_float16(tmp_path / "overflow")
    names = ["fp32", "fp16", "fp16-io", "fp16-onnxconv"]
    cells = cells_by_target(run([validate.load_subject(str(folder))], names))
    assert cells["cpu/all/fp32"].status == "pass"
    for name in names[1:]:
        cell = cells[f"cpu/all/{name}"]
        assert (cell.status, cell.kind) == ("fail", "overflow"), (name, cell.reason)
        assert cell.reason.startswith(
            "the graph as written overflows float16: tensor 'c' reaches 1.86e+05 in float32 on "
            "test_data_set_0 (110 of 512 elements beyond 65504)"
        )
    # tune's fp16 candidate is judged by run_judged_cell: the same overflow disqualifies it
    subject = validate.load_subject(str(folder))
    fp16 = precisions.deploy(subject.model, "fp16", None)
    judged = validate.run_judged_cell(
        subject,
        CPU_ALL("fp16"),
        fp16,
        validate.evaluation(subject, None, 4, 1 << 30),
        threads=1,
    )
    assert (judged.status, judged.kind) == ("fail", "overflow")
    assert "tensor 'c' reaches 1.86e+05 in float32 on evaluation input 0" in judged.reason


def test_an_op_that_sums_past_float16_inside_is_not_an_overflow(tmp_path):
    """A LayerNormalization over 1024 channels of values near 80: its sum passes 65504, but the
    spec computes its statistics in float32 (stash_type) and every tensor fits float16. onnx's
    reference evaluator sums in float16 and gave NaN: the range check asks tensors, not it."""
    channels = 1024
    nodes = [  # values 80 +- 10, as ConvNeXt's channels-last LayerNorm meets them
        helper.make_node("Mul", ["x", "spread"], ["spread_x"]),
        helper.make_node("Add", ["spread_x", "offset"], ["shifted"]),
        helper.make_node("LayerNormalization", ["shifted", "scale", "bias"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "layernorm",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, channels])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, channels])],
        [
            numpy_helper.from_array(np.float32(10.0), "spread"),
            numpy_helper.from_array(np.float32(80.0), "offset"),
            numpy_helper.from_array(np.ones(channels, np.float32), "scale"),
            numpy_helper.from_array(np.zeros(channels, np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "layernorm.onnx")
    subject = validate.load_subject(str(tmp_path / "layernorm.onnx"))
    cell = cells_by_target(run([subject], ["fp16"]))["cpu/all/fp16"]
    # a LayerNorm's output does not move with the input's scale: normal and wide inputs agree
    assert (cell.status, cell.kind) == ("warn", "insensitive"), cell.reason


def test_a_graph_whose_tensors_cannot_be_typed_keeps_its_own_fp16_verdict(tmp_path, monkeypatch):
    """The range check reads every tensor through shape inference; where that fails, the cell
    keeps the verdict its comparison gave instead of ending the run."""
    from onnxconv import divergence, fp16_range
    from onnxconv.errors import UserInputError

    folder = _overflowing_in_float16(tmp_path / "overflow")
    subject = validate.load_subject(str(folder))

    def untyped(*args, **kwargs):
        raise UserInputError("shape inference failed: (planted)")

    monkeypatch.setattr(divergence, "run_intermediates_ort", untyped)
    fp16 = precisions.deploy(subject.model, "fp16", None)
    assert fp16_range.overflow(subject.model, fp16, [subject.test_sets[0].inputs], ["t"]) is None
    cell = cells_by_target(run([subject], ["fp16"]))["cpu/all/fp16"]
    assert cell.status == "pass", cell.reason  # what ORT's CPU shows without the range check


def _grouped_with_a_small_defect() -> validate.Subject:
    """The committed grouped block with output channel 0's filter scaled by 1.003: outside fp32's
    tolerance of its stored outputs, well inside float16's."""
    subject = validate.load_subject("grouped")
    conv = next(n for n in subject.model.graph.node if n.op_type == "Conv")
    weight = next(i for i in subject.model.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(weight).copy()
    w[0] *= 1.003
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    return subject


def test_a_float16_deployment_of_a_graph_that_departs_from_its_source_fails_as_export():
    """fp16 cells passed a defect that fp32 cells fail (float16's tolerance is 100x wider): a
    CI gate on --precision fp16 alone let a broken graph through. The fp32 graph is now held to
    its source under fp32's tolerance first, as for int8 cells."""
    cells = cells_by_target(run([_grouped_with_a_small_defect()], ["fp32", "fp16", "fp16-io"]))
    assert (cells["cpu/all/fp32"].status, cells["cpu/all/fp32"].kind) == ("fail", "export")
    for name in ("fp16", "fp16-io"):
        cell = cells[f"cpu/all/{name}"]
        assert (cell.status, cell.kind, cell.deciders) == ("fail", "export", ["torch"])
        assert cell.reason.startswith("the fp32 graph departs from torch on ")
        assert f"its {name} deployment has nothing true to approach" in cell.reason
    # the same graph's fp16 deployment alone stays within float16's tolerance of PyTorch
    subject = _grouped_with_a_small_defect()
    cases = validate.make_cases(subject, (0,), ("normal",))
    fp16 = precisions.deploy(subject.model, "fp16")
    alone = validate.run_cell(subject, CPU_ALL("fp16"), cases, None, None, False, model=fp16)
    assert alone.status == "pass"


def test_without_a_trusted_source_a_float16_cell_is_judged_as_before(tmp_path):
    """No PyTorch and stored outputs declared untrusted: nothing says what the graph should
    compute, so its fp16 cells are judged against the reference evaluator alone."""
    subject = _grouped_with_a_small_defect()
    subject.variant, subject.entry = None, None
    report = run([subject], ["fp16"], trust_stored=False)
    (cell,) = report.cells
    assert cell.status == "pass" and cell.deciders == ["reference_evaluator"]


def test_a_float16_deployment_that_departs_is_its_own_failure_not_onnxruntimes(monkeypatch):
    """The cases hold the reference evaluator's run of the fp32 graph, not of the deployment:
    an fp16 cell beyond fp16's tolerance was FAIL runtime, "onnxruntime departs from stored,
    which the reference evaluator matches", although nothing had run the fp16 graph but ORT
    (a trained-scale MobileNetV2). It is FAIL float16, naming what is left once the fp32 graph
    matches its source."""
    real_run = runtime.run

    def drifting(info, feeds):  # the fp16 deployment alone drifts by a tenth of the range
        out = real_run(info, feeds)
        if info.target.precision != "fp16":
            return out
        return {k: v + np.float16(0.1) * np.ptp(v).astype(v.dtype) for k, v in out.items()}

    monkeypatch.setattr(runtime, "run", drifting)
    cells = cells_by_target(run([validate.load_subject("grouped")], ["fp32", "fp16"]))
    assert cells["cpu/all/fp32"].status == "pass"
    cell = cells["cpu/all/fp16"]
    assert (cell.status, cell.kind) == ("fail", "float16"), cell.reason
    assert "the fp16 deployment departs from torch beyond fp16's tolerance" in cell.reason
    assert "runtime defect" not in cell.reason


def test_a_converter_failure_on_a_graph_that_departs_is_the_graphs_defect(monkeypatch):
    """A graph whose fp32 cells fail as export, and whose fp16 conversion fails too: the fp16
    cell said FAIL conversion while every other cell said export (the converter had broken on
    a two-output graph). The graph's own departure comes first."""
    _fp16_converter_breaks(monkeypatch)
    defect = _grouped_with_a_small_defect()
    cells = cells_by_target(run([defect], ["fp32", "fp16"]))
    assert cells["cpu/all/fp16"].kind == "export"
    assert cells["cpu/all/fp16"].reason.startswith("the fp32 graph departs from torch")
    clean = cells_by_target(run([validate.load_subject("grouped")], ["fp32", "fp16"]))
    assert (clean["cpu/all/fp16"].status, clean["cpu/all/fp16"].kind) == ("fail", "conversion")
