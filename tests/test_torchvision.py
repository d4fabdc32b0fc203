"""Real networks that nobody here wrote: torchvision's, with random weights (nothing is
downloaded), through ``--module``: export with both exporters, static and dynamic batch; the
structure ``inspect`` finds; validate on every CPU cell (insensitive where the default init
makes the output hardly depend on the input); a planted defect caught in each.

The default suite runs ShuffleNet V2 x0.5 end to end; the seven networks are marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from onnxconv import graph, mutations
from onnxconv.cli import main

#: What inspect must find in each network, and its multiply-adds at 224x224 as torchvision's
#: model documentation gives them (GFLOPS column, rounded there to two decimals).
NETWORKS = {
    "shufflenet_v2_x0_5": ({"depthwise": 19, "shuffles": 16, "shuffle_groups": [2]}, 0.04e9),
    "shufflenet_v2_x1_0": ({"depthwise": 19, "shuffles": 16, "shuffle_groups": [2]}, 0.14e9),
    "mobilenet_v2": ({"depthwise": 17}, 0.30e9),
    "mobilenet_v3_small": ({"depthwise": 11}, 0.06e9),
    "resnext50_32x4d": ({"grouped": 16, "grouped_groups": [32]}, 4.23e9),
    "regnet_y_400mf": ({"grouped": 16, "grouped_groups": [6, 13, 26, 55]}, 0.40e9),
    "googlenet": ({"concat": 9}, 1.50e9),  # nine Inception modules, each a four-branch Concat
}
MODULE_ARGS = {"googlenet": "aux_logits=False,init_weights=True"}


def export(name: str, out: Path, *extra: str, size: int = 224) -> Path:
    argv = ["export", "--module", f"torchvision.models:{name}", "--input", f"1,3,{size},{size}"]
    if name in MODULE_ARGS:
        argv += ["--module-args", MODULE_ARGS[name]]
    assert main([*argv, "--out", str(out), "--quiet", *extra]) == 0
    return out / name


def found(model: onnx.ModelProto) -> dict:
    summary = graph.structure_summary(model)
    return {
        **summary["convs"],
        "shuffles": summary["shuffles"],
        "shuffle_groups": summary["shuffle_groups"],
        "grouped_groups": summary["grouped_groups"],
        "concat": graph.inspect_model(model).op_counts.get("Concat", 0),
    }


def assert_structure(name: str, folder: Path, size: int = 224) -> None:
    expected, published_macs = NETWORKS[name]
    model = onnx.load(folder / "model.onnx")
    have = found(model)
    assert {k: have[k] for k in expected} == expected
    if size == 224:  # the published figures are for 224x224
        entry = json.loads((folder.parent / "manifest.json").read_text())["graphs"][name]
        assert entry["macs"] == pytest.approx(published_macs, rel=0.13, abs=0.006e9)


def assert_defect_caught(name: str, tmp_path: Path, size: int = 224) -> None:
    """A planted defect (a swapped channel shuffle where there is one, else a sign-flipped
    weight) fails validate as an export defect. The network is drawn at a trained network's
    scale (``user_modules.torchvision_scaled``): with torchvision's default init the output
    barely depends on any one layer, and no tolerance could tell a defect from rounding."""
    args = f"name={name}" + (f",{MODULE_ARGS[name]}" if name in MODULE_ARGS else "")
    out = tmp_path / "scaled"
    argv = ["export", "--module", "user_modules:torchvision_scaled", "--module-args", args]
    assert main([*argv, "--input", f"1,3,{size},{size}", "--out", str(out), "--quiet"]) == 0
    folder = out / "torchvision_scaled"
    model = onnx.load(folder / "model.onnx")
    for planted in ("shuffle_groups_swapped", "weight_sign_flip"):
        mutant = mutations.MUTATIONS[planted](model)
        if mutant is not None:
            break
    onnx.save(mutant.model, folder / "model.onnx")
    report = tmp_path / f"{name}-defect.json"
    argv = ["validate", str(folder), "--quiet", "--opt-level", "all", "--precision", "fp32"]
    assert main([*argv, "--seeds", "0", "--json", str(report)]) == 1
    (cell,) = json.loads(report.read_text())["cells"]
    assert cell["kind"] == "export", cell["reason"]


def test_shufflenet_v2_end_to_end(tmp_path, capsys):
    folder = export("shufflenet_v2_x0_5", tmp_path, "--dynamic-batch", size=64)
    assert "16 channel shuffles (g=2)" in capsys.readouterr().out
    assert_structure("shufflenet_v2_x0_5", folder, size=64)
    report = tmp_path / "v.json"
    argv = ["validate", str(folder), "--quiet", "--opt-level", "disabled,all", "--seeds", "0"]
    assert main([*argv, "--json", str(report)]) == 0  # a warning is not a failure
    data = json.loads(report.read_text())
    # torchvision's default init: the logits are almost all the last bias, so two inputs give
    # outputs within tolerance of each other, and the pass would prove nothing: it says so.
    assert {(c["status"], c["kind"]) for c in data["cells"]} == {("warn", "insensitive")}
    assert len(data["cells"]) == 4
    assert "hardly depends on the input" in data["cells"][0]["reason"]
    assert "torch" in data["subjects"][0]["opinions"]
    assert_defect_caught("shufflenet_v2_x0_5", tmp_path, size=64)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_exports_validates_and_catches_a_defect(tmp_path, name, exporter):
    static = export(name, tmp_path / "static", "--exporter", exporter, "--opset", "18")
    dynamic = export(name, tmp_path / "dynamic", "--exporter", exporter, "--dynamic-batch")
    for folder in (static, dynamic):
        assert_structure(name, folder)
    report = tmp_path / "v.json"
    argv = ["validate", str(static), str(dynamic), "--quiet", "--seeds", "0"]
    assert main([*argv, "--json", str(report)]) == 0
    cells = json.loads(report.read_text())["cells"]
    assert len(cells) == 2 * 4 * 2  # two graphs x four levels x fp32, fp16: every CPU cell
    # A pass, or a warning that torchvision's default init makes the output insensitive.
    assert {(c["status"], c["kind"]) for c in cells} <= {("pass", ""), ("warn", "insensitive")}
    assert_defect_caught(name, tmp_path)
