"""Verdicts on graphs nobody here wrote: public architectures (tests/networks.py), exported by
both exporters and as an old opset-9 graph; correct ones pass every CPU cell, planted defects
fail (the mutation suite, run on them)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from networks import example_input, export_network, export_opset9, export_opset9_shufflenet

from onnxconv import detection, graph, validate, variants
from onnxconv.cli import main
from onnxconv.parity import Tolerance

SIZE = 64
LEVELS = ["disabled", "basic", "extended", "all"]
DEEP_FP16 = Tolerance(atol=5e-2, rtol=5e-2)


@pytest.fixture(scope="module")
def opset9(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("opset9") / "shufflenet_v2_opset9"
    return export_opset9_shufflenet(folder, size=SIZE).parent


def test_correct_opset9_shufflenet_passes_as_a_folder_and_as_a_bare_graph(opset9, capsys):
    common = ["--ep", "cpu", "--precision", "fp32", "--seeds", "0", "--quiet"]
    assert main(["validate", str(opset9), *common]) == 0
    assert (
        main(["validate", str(opset9 / "model.onnx"), "--opt-level", "disabled,all", *common]) == 0
    )
    out = capsys.readouterr().out
    assert "WARN" not in out and "FAIL" not in out


def test_correct_opset9_shufflenet_v1_g4_passes_on_every_cpu_level(tmp_path, capsys):
    # The shape of the model-zoo graph the reference evaluator used to reject: ShuffleNet v1,
    # g=4, 16 channel shuffles, unfolded BatchNormalization at opset 9 (random weights).
    spec = variants.get("shufflenet")
    config = spec.config({"groups": 4, "height": SIZE, "width": SIZE})
    path = export_opset9(spec.build(config), tmp_path / "shufflenet_v1_g4", example_input(SIZE, 0))
    model = onnx.load(path)
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) > 40
    assert len(graph.find_channel_shuffles(model)) == 16
    assert {s.groups for s in graph.find_channel_shuffles(model)} == {4}
    assert (
        main(
            [
                "validate",
                str(path.parent),
                "--ep",
                "cpu",
                "--precision",
                "fp32",
                "--seeds",
                "0",
                "--quiet",
            ]
        )
        == 0
    )
    assert "pass" in capsys.readouterr().out


def test_mutants_of_the_opset9_shufflenet_fail(opset9):
    original = detection.load_original(opset9)
    report = detection.run_suite(
        [original],
        layouts=["folder"],
        clean_seeds=(0,),
        names=[
            "shuffle_perm_identity",
            "weight_sign_flip",
            "bn_epsilon",
            "bn_scale",
            "stale_output",
        ],
    )
    assert [p.mutation for p in report.planted] == [
        "shuffle_perm_identity",
        "weight_sign_flip",
        "bn_epsilon",
        "bn_scale",
        "stale_output",
    ]
    assert [(p.status, p.kind) for p in report.planted] == [("fail", "export")] * 5, [
        p.reason for p in report.planted
    ]
    assert report.summary()["false_alarms"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v2"])
@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_outside_networks_pass_every_cpu_cell_and_their_mutants_fail(
    name, exporter, opset, tmp_path
):
    folder = export_network(
        name, tmp_path / name, exporter=exporter, opset=opset, size=SIZE, dynamic_batch=True
    ).parent
    subject = validate.load_subject(str(folder))
    cells = validate.validate([subject], ["cpu"], LEVELS, ["fp32"], seeds=(0,)).cells
    # fp16 compounds its rounding over 50+ layers: the default fp16 tolerance (1e-2) is a floor
    # for a few layers, so a deep network is judged at a stated, looser one.
    cells += validate.validate(
        [subject], ["cpu"], LEVELS, ["fp16"], seeds=(0,), tol=DEEP_FP16
    ).cells
    assert {c.status for c in cells} == {"pass"}, [
        (c.target, c.reason) for c in cells if c.status != "pass"
    ]
    suite = detection.run_suite(
        [detection.load_original(folder)], layouts=["folder"], clean_seeds=(0, 1)
    )
    planted = {p.mutation for p in suite.planted}
    assert {
        "weight_sign_flip",
        "weight_nudge",
        "conv_dilation",
        "conv_pads",
        "output_scaled",
        "fp16_overflow",
        "stale_output",
    } <= planted, planted
    if name == "shufflenet_v2_x0_5":
        assert {"shuffle_perm_identity", "shuffle_groups_swapped"} <= planted
    missed = [(p.mutation, p.status, p.reason) for p in suite.planted if not p.caught]
    assert not missed and suite.summary()["false_alarms"] == 0
