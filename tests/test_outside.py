"""Verdicts on graphs nobody here wrote: public architectures (tests/networks.py), exported by
both exporters and as an old opset-9 graph; correct ones pass every CPU cell, planted defects
fail (the mutation suite, run on them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from networks import export_network, export_opset9_shufflenet

from onnxconv import detection, validate
from onnxconv.cli import main

SIZE = 64
LEVELS = ["disabled", "basic", "extended", "all"]


@pytest.fixture(scope="module")
def opset9(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("opset9") / "shufflenet_v2_opset9"
    return export_opset9_shufflenet(folder, size=SIZE).parent


def test_correct_opset9_shufflenet_passes_as_a_folder_and_as_a_bare_graph(opset9, capsys):
    common = ["--ep", "cpu", "--precision", "fp32", "--seeds", "0", "--quiet"]
    assert main(["validate", str(opset9), *common]) == 0
    assert main(["validate", str(opset9 / "model.onnx"), "--opt-level", "disabled,all",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "WARN" not in out and "FAIL" not in out


def test_mutants_of_the_opset9_shufflenet_fail(opset9):
    original = detection.load_original(opset9)
    report = detection.run_suite(
        [original], layouts=["folder"], clean_seeds=(0,),
        names=["shuffle_perm_identity", "weight_sign_flip", "bn_epsilon", "bn_scale",
               "stale_output"])
    assert [p.mutation for p in report.planted] == ["shuffle_perm_identity",
                                                    "weight_sign_flip", "bn_epsilon",
                                                    "bn_scale", "stale_output"]
    assert [(p.status, p.kind) for p in report.planted] == [("fail", "export")] * 5, \
        [p.reason for p in report.planted]
    assert report.summary()["false_alarms"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v2"])
@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_outside_networks_pass_every_cpu_cell_and_their_mutants_fail(name, exporter, opset,
                                                                    tmp_path):
    folder = export_network(name, tmp_path / name, exporter=exporter, opset=opset, size=SIZE,
                            dynamic_batch=True).parent
    report = validate.validate([validate.load_subject(str(folder))], ["cpu"], LEVELS,
                               ["fp32", "fp16"], seeds=(0,))
    assert {c.status for c in report.cells} == {"pass"}, \
        [(c.target, c.reason) for c in report.cells if c.status != "pass"]
    suite = detection.run_suite([detection.load_original(folder)], layouts=["folder"],
                                clean_seeds=(0, 1))
    missed = [(p.mutation, p.status, p.reason) for p in suite.planted if not p.caught]
    assert not missed and suite.summary()["false_alarms"] == 0
