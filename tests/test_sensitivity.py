"""A pass that a wrong graph would have earned too (onnxconv/sensitivity.py): the two wrong graphs
written down (zeros, an output that ignores its input) against the cell's own comparison, a
validate cell on a real graph whose outputs are tiny, and the zoo's whole networks."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from onnxconv import variants
from onnxconv.cli import main
from onnxconv.parity import Tolerance
from onnxconv.sensitivity import blind_spot

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
FP32 = Tolerance(1e-4, 1e-3)


def _outputs(*arrays: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{"y": a.astype(np.float32)} for a in arrays]


def test_outputs_within_tolerance_of_zero_would_pass_an_all_zero_graph():
    rng = np.random.default_rng(0)
    tiny = [1e-9 * rng.standard_normal((1, 10)) for _ in range(3)]
    why = blind_spot(_outputs(*tiny), FP32)
    assert why is not None and "output 'y'" in why and "outputs zeros would pass" in why


def test_two_inputs_with_outputs_within_tolerance_would_pass_a_graph_ignoring_its_input():
    rng = np.random.default_rng(0)
    bias = rng.standard_normal((1, 10))
    first, near = bias + 1e-6, bias + 1e-6 * rng.standard_normal((1, 10))
    far = bias + rng.standard_normal((1, 10))
    why = blind_spot(_outputs(first, far, near), FP32, ["stored", "normal/seed0", "wide/seed0"])
    assert why is not None and "hardly depends on the input" in why and "--inputs" in why
    assert "for stored and wide/seed0 it differs by at most" in why  # which two: named
    # Each input moving the output beyond the tolerance: the comparison can see.
    assert blind_spot(_outputs(first, far), FP32) is None


def test_outputs_of_other_shapes_and_integer_outputs_are_not_compared_with_each_other():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 4)), rng.standard_normal((2, 4))
    assert blind_spot(_outputs(a, b), FP32) is None  # one input per shape: nothing to pair
    ids = [{"y": a.astype(np.float32), "argmax": np.zeros((1,), np.int64)} for a in (a, 2 * a)]
    assert blind_spot(ids, FP32) is None


def test_an_output_with_the_same_bits_for_every_input_is_constant_by_design():
    """Anchors beside the logits: the constant output cannot be moved by a wrong input path,
    and the logits still see one; an all-zero mask too."""
    rng = np.random.default_rng(0)
    anchors = np.linspace(0, 1, 16, dtype=np.float32)
    cases = [
        {
            "logits": rng.standard_normal((1, 10)).astype(np.float32),
            "anchors": anchors,
            "mask": np.zeros((1, 4), np.float32),
        }
        for _ in range(3)
    ]
    assert blind_spot(cases, FP32) is None
    cases[1]["logits"] = cases[0]["logits"] + 1e-7  # now two inputs give the same logits
    assert "output 'logits' hardly depends on the input" in blind_spot(cases, FP32)


def test_a_constant_output_of_several_shapes_is_still_constant_but_not_if_all_are():
    """Anchors repeated along a dynamic batch: equal within each batch size, so left out; a
    graph all of whose outputs are like that does not depend on its input at all."""
    rng = np.random.default_rng(0)
    anchors = np.linspace(0, 1, 8, dtype=np.float32)
    cases = [
        {
            "logits": rng.standard_normal((b, 10)).astype(np.float32),
            "anchors": np.tile(anchors, (b, 1)),
        }
        for b in (1, 1, 2, 2)
    ]
    assert blind_spot(cases, FP32) is None
    dead = [{"y": np.full((b, 10), 0.5, np.float32)} for b in (1, 1, 2)]
    assert "no output moves with the input ('y'" in blind_spot(dead, FP32)


def test_validate_warns_instead_of_passing_a_graph_whose_outputs_are_tiny(tmp_path, capsys):
    """The committed grouped conv with its weights and bias scaled by 1e-6, as a bare graph: the
    reference evaluator decides, ORT agrees, and a graph of zeros would have agreed too."""
    model = onnx.load(GRAPHS / "grouped" / "model.onnx")
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(1e-6 * numpy_helper.to_array(init), init.name))
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    report = tmp_path / "v.json"
    argv = ["validate", str(path), "--opt-level", "all", "--precision", "fp32", "--quiet"]
    assert main([*argv, "--json", str(report)]) == 0  # a warning, printed, is not a failure
    (cell,) = json.loads(report.read_text())["cells"]
    assert (cell["status"], cell["kind"]) == ("warn", "insensitive")
    assert "outputs zeros would pass" in cell["reason"]
    # The same graph at its own scale passes.
    shutil.copy(GRAPHS / "grouped" / "model.onnx", path)
    assert main([*argv, "--json", str(report)]) == 0
    assert json.loads(report.read_text())["cells"][0]["status"] == "pass"


def test_the_zoo_networks_depend_on_their_input_as_drawn_batchnorm_statistics_would_not():
    """Random weights and drawn BatchNorm statistics let MobileNet v1's signal die within a few
    layers (two inputs gave logits 1e-7 apart) and validate could only warn. Statistics measured
    on a generated batch, as training leaves them, keep both whole networks' outputs moving with
    the input, so their parity checks can fail."""

    def outputs(spec, config, measured):
        module = dataclasses.replace(spec, batchnorm_from_data=measured).build(config)
        with torch.no_grad():
            return [module(spec.example_input(config, s)).numpy() for s in (0, 1, 2)]

    for name in ("shufflenet", "mobilenet_v1"):
        spec = variants.get(name)
        config = spec.config({"height": 96, "width": 96})
        assert spec.batchnorm_from_data
        ys = outputs(spec, config, measured=True)
        assert blind_spot([{"y": y} for y in ys], FP32) is None, name
        assert np.std(ys[0] - ys[1]) > 0.1 * np.std(ys[0]), name
    spec = variants.get("mobilenet_v1")
    drawn = outputs(spec, spec.config({"height": 96, "width": 96}), measured=False)
    assert "hardly depends on the input" in blind_spot([{"y": y} for y in drawn], FP32)


def test_the_same_input_given_twice_is_one_input_not_a_blind_spot(tmp_path):
    """--inputs holding the folder's own stored input: two cases, one input, the same outputs;
    that says nothing about whether the output moves with the input."""
    stored = onnx.load_tensor(str(GRAPHS / "grouped" / "test_data_set_0" / "input_0.pb"))
    np.savez(tmp_path / "same.npz", **{stored.name: numpy_helper.to_array(stored)})
    report = tmp_path / "v.json"
    argv = ["validate", str(GRAPHS / "grouped"), "--opt-level", "all", "--precision", "fp32"]
    argv += ["--inputs", str(tmp_path / "same.npz"), "--seeds", "0", "--quiet"]
    assert main([*argv, "--json", str(report)]) == 0
    (cell,) = json.loads(report.read_text())["cells"]
    assert cell["status"] == "pass", cell["reason"]


def test_the_console_prints_the_first_problem_whole(tmp_path, capsys):
    model = onnx.load(GRAPHS / "grouped" / "model.onnx")
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(1e-6 * numpy_helper.to_array(init), init.name))
    onnx.save(model, tmp_path / "tiny.onnx")
    argv = ["validate", str(tmp_path / "tiny.onnx"), "--opt-level", "all", "--precision", "fp32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "check with trained weights, or real inputs (validate --inputs)" in out  # not cut
    assert "--json or --markdown keeps every one whole" in out
