"""Export: the committed graphs/, both exporters, dynamic axes, atomic writes, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from test_robustness import snapshot

from onnxconv import export, graph, variants
from onnxconv.cli import main
from onnxconv.errors import CheckFailed
from onnxconv.export import ExportOptions, export_variants
from onnxconv.graph import checks as graph_checks

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
COMMITTED = [n for n in variants.names() if variants.get(n).commit_graph]


def run_ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def load_pb(path):
    tensor = onnx.TensorProto()
    tensor.ParseFromString(Path(path).read_bytes())
    return tensor.name, numpy_helper.to_array(tensor)


@pytest.fixture(scope="module")
def manifest():
    return json.loads((GRAPHS / "manifest.json").read_text())


# --- the committed graphs/ --------------------------------------------------------------------


def test_committed_graphs_are_the_committed_variants(manifest):
    assert list(manifest["graphs"]) == COMMITTED
    assert sorted(p.name for p in GRAPHS.iterdir() if p.is_dir()) == sorted(COMMITTED)
    total = sum(p.stat().st_size for p in GRAPHS.rglob("*") if p.is_file())
    assert total < 10 * 2**20


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_graph_is_up_to_date_with_the_code(name, manifest, tmp_path):
    """Re-export with the manifest's settings: same bytes, or run ./scripts/export_graphs."""
    entry = manifest["graphs"][name]
    committed = (GRAPHS / name / "model.onnx").read_bytes()
    assert hashlib.sha256(committed).hexdigest() == entry["sha256"], "graphs/ edited by hand?"
    exporters = {k: entry["versions"][k] for k in ("torch", "onnx", "onnxscript")}
    here = {k: export.exporter_versions()[k] for k in exporters}
    if here != exporters:
        pytest.skip(f"graphs/ was exported with {exporters}; this environment has {here}")
    options = ExportOptions(
        opset=entry["opset"],
        exporter=entry["exporter"],
        seed=entry["seed"],
        dynamic_batch="0" in entry["inputs"][0]["dynamic_axes"],
    )
    fresh = export_variants([name], tmp_path, options, overrides=entry["config"])[0].entry
    assert fresh["sha256"] == entry["sha256"], "graphs/ is stale: run ./scripts/export_graphs"
    assert fresh["config"] == entry["config"] and fresh["macs"] == entry["macs"]
    fresh_files, committed_files = snapshot(tmp_path / name), snapshot(GRAPHS / name)
    extra = sorted(set(committed_files) - set(fresh_files))
    assert not extra, f"graphs/{name} holds files an export does not write: {extra}"
    assert fresh_files == committed_files, "graphs/ is stale: run ./scripts/export_graphs"


@pytest.mark.parametrize("name", COMMITTED)
def test_test_data_layout_reproduces_with_onnx_runtime(name, manifest):
    folder = GRAPHS / name
    in_name, x = load_pb(folder / "test_data_set_0" / "input_0.pb")
    out_name, y = load_pb(folder / "test_data_set_0" / "output_0.pb")
    assert (in_name, out_name) == ("input", "output")
    entry = manifest["graphs"][name]
    assert list(x.shape) == entry["inputs"][0]["shape"]
    assert list(y.shape) == entry["outputs"][0]["shape"]
    np.testing.assert_allclose(run_ort(folder / "model.onnx", x), y, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", COMMITTED)
def test_graph_cost_agrees_with_analytic_cost(name, manifest):
    entry = manifest["graphs"][name]
    spec = variants.get(name)
    model = onnx.load(GRAPHS / name / "model.onnx")
    cost = graph.cost_breakdown(model)
    assert cost.macs == entry["macs"] == spec.cost(entry["config"]).macs
    # The dynamo exporter folds each BatchNorm (2 affine params per channel) into the bias-free
    # conv before it (1 bias per channel): the graph holds one parameter per BN channel fewer.
    bn_channels = sum(
        m.num_features
        for m in spec.build(entry["config"]).modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert cost.params + cost.bn_affine_params == entry["params"] - bn_channels


def test_manifest_records_versions_shapes_and_hash(manifest):
    entry = manifest["graphs"]["shuffle_unit"]
    for key in ("torch", "onnx", "onnxscript", "onnxruntime", "onnxconv"):
        assert entry["versions"][key]
    assert entry["exporter"] == "dynamo" and entry["opset"] == export.DEFAULT_OPSET
    assert entry["ir_version"] == onnx.load(GRAPHS / "shuffle_unit" / "model.onnx").ir_version
    assert entry["inputs"][0]["name"] == "input" and entry["outputs"][0]["name"] == "output"


# --- exporters and options ---------------------------------------------------------------------


@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
@pytest.mark.parametrize("name", ["shuffle_unit", "flattened", "separable"])
def test_both_exporters_with_dynamic_batch(exporter, opset, name, tmp_path):
    spec = variants.get(name)
    config = spec.config()
    options = ExportOptions(opset=opset, exporter=exporter, dynamic_batch=True)
    (result,) = export_variants([name], tmp_path, options)
    model = onnx.load(result.model_path)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert result.entry["inputs"][0]["dynamic_axes"] == {"0": "batch"}
    assert set(result.entry["outputs"][0]["dynamic_axes"]) == {"0"}  # outputs say so too
    graph_checks.assert_structure(model, spec.structure_kind, spec.structure(config))
    x = spec.example_input({**config, "batch": 3}, seed=7)
    with torch.no_grad():
        expected = spec.build(config)(x).numpy()
    np.testing.assert_allclose(
        run_ort(result.model_path, x.numpy()), expected, rtol=1e-3, atol=1e-4
    )
    assert result.entry["inputs"][0]["dynamic_axes"] == {"0": "batch"}


def test_dynamic_height_and_width(tmp_path):
    spec = variants.get("channel_shuffle")
    options = ExportOptions(dynamic_batch=True, dynamic_hw=True)
    (result,) = export_variants(["channel_shuffle"], tmp_path, options)
    x = spec.example_input(spec.config({"batch": 2, "height": 5, "width": 9}))
    expected = variants.channel_shuffle(x, 8).numpy()
    np.testing.assert_array_equal(run_ort(result.model_path, x.numpy()), expected)


def test_rank4_shuffle_export_equals_rank5(tmp_path):
    r5 = export_variants(["shuffle_unit"], tmp_path / "r5")[0]
    r4 = export_variants(["shuffle_unit"], tmp_path / "r4", overrides={"shuffle_rank": 4})[0]
    m4 = onnx.load(r4.model_path)
    (shuffle,) = graph.find_channel_shuffles(m4)
    assert shuffle.exact and shuffle.rank == 4 and shuffle.perm == [0, 2, 1, 3]
    assert not any(f.code == "rank5-tensor" for f in graph_checks.lint_model(m4))
    _, x = load_pb(r5.folder / "test_data_set_0" / "input_0.pb")
    np.testing.assert_array_equal(run_ort(r4.model_path, x), run_ort(r5.model_path, x))


def test_export_is_byte_reproducible_and_independent_of_the_checkout_path(tmp_path):
    a = export_variants(["shuffle_unit_s2"], tmp_path / "a")[0]
    b = export_variants(["shuffle_unit_s2"], tmp_path / "b")[0]
    assert snapshot(a.folder) == snapshot(b.folder)
    model_bytes = a.model_path.read_bytes()
    assert str(ROOT).encode() not in model_bytes and b"stack_trace" not in model_bytes


# --- checks and atomic writes -------------------------------------------------------------------


def test_structure_failure_fails_the_export_naming_the_node(tmp_path, monkeypatch):
    wrong = dataclasses.replace(variants.get("grouped"), structure=lambda config: {"groups": 4})
    monkeypatch.setitem(variants.REGISTRY, "grouped", wrong)
    with pytest.raises(
        CheckFailed, match=r"grouped.*node_conv2d: expected group == 4, found group 8"
    ):
        export_variants(["grouped"], tmp_path)
    assert not (tmp_path / "grouped").exists()


def test_failed_export_leaves_previous_graphs_untouched(tmp_path, monkeypatch):
    export_variants(["standard", "grouped"], tmp_path)
    before = snapshot(tmp_path)
    calls = []

    def failing_check(model, spec, *args):
        calls.append(spec.name)
        if spec.name == "grouped":
            raise CheckFailed("planted failure")

    monkeypatch.setattr(export, "check_export", failing_check)
    with pytest.raises(CheckFailed, match="planted"):
        export_variants(["standard", "grouped"], tmp_path, overrides={"height": 12})
    assert calls == ["standard", "grouped"]
    assert snapshot(tmp_path) == before
    shown = sorted(p.name for p in tmp_path.iterdir() if p.name != ".onnxconv.lock")
    assert shown == ["grouped", "manifest.json", "standard"]


def test_check_export_refuses_a_graph_that_onnx_runtime_runs_differently_from_pytorch():
    spec = variants.get("grouped")
    config = spec.config({"height": 8, "width": 8})
    module = spec.build(config)
    example = spec.example_input(config)
    with torch.no_grad():
        expected = module(example).numpy()
    model = export.to_onnx(module, example, {}, ExportOptions())
    export.check_export(model, spec, config, example.numpy(), expected)  # the real export passes
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(weight).copy()
    w[5] *= -1
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    with pytest.raises(CheckFailed, match="grouped: ONNX Runtime does not reproduce PyTorch"):
        export.check_export(model, spec, config, example.numpy(), expected)


def test_export_updates_only_its_own_manifest_entries(tmp_path):
    export_variants(["standard"], tmp_path)
    export_variants(["depthwise"], tmp_path, overrides={"height": 10})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert list(manifest["graphs"]) == ["standard", "depthwise"]
    assert manifest["graphs"]["depthwise"]["config"]["height"] == 10


# --- bad input through the CLI --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,words",
    [
        (["export", "--variant", "nope"], ["unknown variant 'nope'"]),
        (
            ["export", "--variant", "grouped", "--config", "groups=5"],
            ["in_channels=64", "groups=5"],
        ),
        (["export", "--variant", "grouped", "--config", "colour=red"], ["colour"]),
        (["export", "--variant", "grouped", "--opset", "12"], ["opset 12", "dynamo", "18..23"]),
        (
            ["export", "--variant", "grouped", "--exporter", "torchscript", "--opset", "21"],
            ["opset 21", "torchscript"],
        ),
        (["export"], ["no variant"]),
    ],
)
def test_export_bad_input_is_one_line_exit_2_nothing_written(argv, words, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    assert not out.exists()


def test_export_to_unwritable_place_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["export", "--variant", "grouped", "--out", str(blocker / "graphs")]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content", [None, b"", b"hello, I am text\n", b"\x08\x07\x12\x00garbage", "truncated"]
)
def test_inspect_bad_file_is_one_line_naming_it(content, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    if content == "truncated":
        path.write_bytes((GRAPHS / "standard" / "model.onnx").read_bytes()[:5000])
    elif content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and len(err.splitlines()) == 1


def test_inspect_reports_shuffle_and_convs(capsys):
    assert main(["inspect", str(GRAPHS / "shuffle_unit"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["kind"] for c in report["convs"]] == ["grouped", "depthwise", "grouped"]
    (shuffle,) = report["shuffles"]
    assert shuffle["exact"] and shuffle["groups"] == 3 and shuffle["perm"] == [0, 2, 1, 3, 4]
    assert (
        report["cost"]["macs"]
        == variants.get("shuffle_unit").cost(variants.get("shuffle_unit").config()).macs
    )
    per_conv = [report["node_macs"][c["name"]] for c in report["convs"]]
    assert sum(per_conv) == report["cost"]["macs"] and per_conv[0] == per_conv[2] > per_conv[1]
    assert main(["inspect", str(GRAPHS / "flattened" / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "flattened pair" in out
    header = next(line for line in out.splitlines() if line.startswith("conv "))
    assert header.rstrip().endswith("MACs")


def test_export_cli_writes_the_layout(tmp_path, capsys):
    assert (
        main(
            [
                "export",
                "--variant",
                "channel_shuffle",
                "--shuffle-rank",
                "4",
                "--quiet",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "channel_shuffle" / "test_data_set_0" / "output_0.pb").exists()
    entry = json.loads((tmp_path / "manifest.json").read_text())["graphs"]["channel_shuffle"]
    assert entry["config"]["shuffle_rank"] == 4
