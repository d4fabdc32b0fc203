"""Validation: parity on every variant and level, planted defects caught, EP truth, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from cuda_marks import CUDA_REASON, absent_ep, cuda_only
from onnx import numpy_helper
from onnx_builders import make_model

import onnxconv
from onnxconv import validate, variants
from onnxconv.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
COMMITTED = [n for n in variants.names() if variants.get(n).commit_graph]
LEVELS = ["disabled", "basic", "extended", "all"]
ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"


def copy_graph(name: str, tmp_path: Path, manifest: bool = True) -> Path:
    """A copy of graphs/<name>; with its manifest entry it still names the zoo variant, without
    it is a test-data folder like anyone's."""
    shutil.copytree(GRAPHS / name, tmp_path / name)
    if manifest:
        entries = json.loads((GRAPHS / "manifest.json").read_text())
        entries["graphs"] = {name: entries["graphs"][name]}
        (tmp_path / "manifest.json").write_text(json.dumps(entries))
    return tmp_path / name


def plant(folder: Path, edit) -> None:
    """Edit model.onnx in place, as a hand edit would: the manifest's sha256 is left stale."""
    model = onnx.load(folder / "model.onnx")
    edit(model)
    (folder / "model.onnx").write_bytes(model.SerializeToString())


def first_conv_weight(model: onnx.ModelProto) -> onnx.TensorProto:
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    return next(i for i in model.graph.initializer if i.name == conv.input[1])


def edit_weight(model: onnx.ModelProto, change) -> None:
    weight = first_conv_weight(model)
    w = numpy_helper.to_array(weight).copy()
    change(w)
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))


def assert_every_case(cell, status: str, kind: str) -> None:
    """Not only the stored case: every case, every output."""
    for case in cell.cases:
        for check in case.outputs:
            assert (check.status, check.kind) == (status, kind), (case.case, check.note)


def run(subjects, **kw):
    kw.setdefault("seeds", (0,))
    return validate.validate(
        subjects,
        kw.pop("eps", ["cpu"]),
        kw.pop("levels", ["all"]),
        kw.pop("precisions", ["fp32"]),
        **kw,
    )


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
    assert [c.case for c in cell.cases] == [
        "test_data_set_0",
        "normal/seed0/batch1",
        "wide/seed0/batch1",
    ]
    assert set(cell.worst) == refs and cell.deciders == ["torch"]


def test_hand_edited_zoo_graph_is_judged_by_pytorch_and_localised(tmp_path):
    folder = copy_graph("shuffle_unit", tmp_path)

    def wrong_perm(model):
        node = next(n for n in model.graph.node if n.op_type == "Transpose")
        node.attribute[0].ints[:] = [0, 1, 2, 3, 4]  # the shuffle becomes a no-op

    plant(folder, wrong_perm)
    subject = validate.load_subject(str(folder))
    assert subject.variant == "shuffle_unit"  # a stale hash never drops PyTorch
    assert "differs from the sha256" in subject.notes[0]
    report = run([subject], distributions=("normal", "wide"))
    (cell,) = report.cells
    assert (cell.status, cell.kind) == ("fail", "export")
    assert_every_case(cell, "fail", "export")
    assert cell.agreed == ["reference_evaluator"]  # the executors agree on the wrong graph
    assert "output 'output'" in cell.reason and "worst at" in cell.reason
    for case in cell.cases:
        assert case.divergence["op_type"] == "Transpose", case.divergence
        assert case.divergence["against"] == "fresh export of shuffle_unit"
    assert "first departs at node node_transpose (Transpose)" in cell.reason


def test_planted_weight_sign_flip_fails_every_case_in_the_sabotaged_channel(tmp_path):
    folder = copy_graph("grouped", tmp_path)
    plant(folder, lambda model: edit_weight(model, lambda w: w.__setitem__(5, -w[5])))
    report = run([validate.load_subject(str(folder))], seeds=(0, 1))
    (cell,) = report.cells
    assert_every_case(cell, "fail", "export")
    for case in cell.cases:  # PyTorch is the source that caught it, never a dissenter
        check = case.outputs[0]
        assert check.decided_by == "torch" and check.results["torch"].worst.index[1] == 5
        assert case.divergence["op_type"] == "Conv"


def test_relu_made_clip_fails_where_activations_exceed_six(tmp_path):
    folder = copy_graph("shuffle_unit", tmp_path)

    def clip(model):
        node = next(n for n in model.graph.node if n.op_type == "Relu")
        six = numpy_helper.from_array(np.array(6.0, np.float32), "planted_six")
        zero = numpy_helper.from_array(np.array(0.0, np.float32), "planted_zero")
        model.graph.initializer.extend([zero, six])
        node.op_type = "Clip"
        node.input.extend(["planted_zero", "planted_six"])

    plant(folder, clip)
    (cell,) = run([validate.load_subject(str(folder))]).cells
    statuses = {case.case: (case.status, case.outputs[0].kind) for case in cell.cases}
    assert statuses["wide/seed0/batch1"] == ("fail", "export"), statuses
    assert cell.status == "fail" and cell.worst["torch"]["case"] == "wide/seed0/batch1"


def test_stale_stored_output_under_a_manifest_is_a_warning_pytorch_decides(tmp_path):
    folder = copy_graph("depthwise", tmp_path)
    stale_output(folder)
    (cell,) = run([validate.load_subject(str(folder))], distributions=("normal",)).cells
    assert (cell.status, cell.kind) == ("warn", "stale_stored")
    check = cell.cases[0].outputs[0]
    assert check.decided_by == "torch" and check.results["stored"].worst.index == (0, 3, 4, 4)
    assert "stale stored outputs" in cell.reason
    assert [c.status for c in cell.cases[1:]] == ["pass"]


def test_strict_turns_a_warning_into_exit_1_for_a_ci_gate(tmp_path, capsys):
    """Every cell warning exits 0 (nothing failed), which a gate reads as proven; --strict
    exits 1 with one line naming the first warning."""
    folder = copy_graph("depthwise", tmp_path)
    stale_output(folder)
    argv = ["validate", str(folder), "--opt-level", "all", "--precision", "fp32", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--strict"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "onnxconv validate: --strict: 1 cell(s) warn, e.g. depthwise cpu/all/fp32: stale_stored"
    ]
    assert main(["validate", "depthwise", "--opt-level", "all", "--strict", "--quiet"]) == 0


def stale_output(folder: Path) -> None:
    out = folder / "test_data_set_0" / "output_0.pb"
    tensor = onnx.TensorProto()
    tensor.ParseFromString(out.read_bytes())
    y = numpy_helper.to_array(tensor).copy()
    y[0, 3, 4, 4] += 1.0
    out.write_bytes(numpy_helper.from_array(y, "output").SerializeToString())


def test_stale_stored_output_without_pytorch_fails_unless_declared_untrusted(tmp_path, capsys):
    folder = copy_graph("depthwise", tmp_path, manifest=False)
    stale_output(folder)
    argv = [
        "validate",
        str(folder),
        "--ep",
        "cpu",
        "--opt-level",
        "all",
        "--precision",
        "fp32",
        "--seeds",
        "0",
        "--quiet",
    ]
    assert main(argv) == 1
    assert "FAIL export" in capsys.readouterr().out
    assert main(argv + ["--stored", "untrusted"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "cpu/all/fp32" in line)
    assert "pass" in row and "stored outputs (declared untrusted) differ" in row  # shown


def nudge_one_weight(model: onnx.ModelProto) -> None:
    edit_weight(model, lambda w: w.__setitem__((0, 0, 1, 1), w[0, 0, 1, 1] + 1e-3))


def swap_shuffle_hw(model: onnx.ModelProto) -> None:
    node = next(n for n in model.graph.node if n.op_type == "Transpose")
    node.attribute[0].ints[:] = [0, 2, 1, 4, 3]


@pytest.mark.parametrize(
    "name,edit",
    [
        ("shuffle_unit", swap_shuffle_hw),
        ("standard", nudge_one_weight),
        ("grouped", nudge_one_weight),
    ],
)
def test_broken_graph_with_a_right_stored_output_exits_1(name, edit, tmp_path, capsys):
    folder = copy_graph(name, tmp_path, manifest=False)  # as a user would have it: no manifest
    plant(folder, edit)
    assert (
        main(
            [
                "validate",
                str(folder),
                "--ep",
                "cpu",
                "--opt-level",
                "disabled,all",
                "--precision",
                "fp32",
                "--seeds",
                "0",
                "--quiet",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "FAIL export" in out and "WARN" not in out


def test_unavailable_ep_is_never_passed_and_exit_1_when_asked(capsys):
    ep = absent_ep()  # not in this build, whatever the machine
    report = run([validate.load_subject("grouped", GRAPHS)], eps=["cpu", ep])
    statuses = {c.target: c.status for c in report.cells}
    assert statuses == {"cpu/all/fp32": "pass", f"{ep}/all/fp32": "unavailable"}
    assert "does not include" in report.cells[1].reason
    argv = [
        "validate",
        "grouped",
        "--graphs",
        str(GRAPHS),
        "--opt-level",
        "all",
        "--precision",
        "fp32",
        "--seeds",
        "0",
        "--quiet",
    ]
    assert main(argv + ["--ep", "cpu", "--ep", ep]) == 1
    captured = capsys.readouterr()
    assert "UNAVAILABLE" in captured.out
    assert f"required EP {ep} is not active" in captured.err


def test_default_matrix_holds_the_active_eps_and_names_the_others_once(capsys, tmp_path):
    argv = [
        "validate",
        "grouped",
        "--graphs",
        str(GRAPHS),
        "--opt-level",
        "all",
        "--precision",
        "fp32",
        "--seeds",
        "0",
        "--quiet",
    ]
    assert main(argv + ["--markdown", str(tmp_path / "v.md")]) == 0
    out = capsys.readouterr().out
    if CUDA_REASON is None:  # a GPU machine: cuda is in the matrix, and passes
        assert "cuda/all/fp32" in out and "not in the matrix" not in out
    else:  # no 88 unavailable rows: one line saying why cuda is left out
        assert "cuda/all/fp32" not in out and "UNAVAILABLE" not in out
        assert out.count("note: cuda is not in the matrix: ") == 1
        assert "cuda is not in the matrix" in (tmp_path / "v.md").read_text()
    assert main(argv + ["--require-ep"]) == (0 if CUDA_REASON is None else 1)


@cuda_only
@pytest.mark.parametrize("name", ["grouped", "depthwise", "shuffle_unit", "inception"])
def test_cuda_parity_every_level_and_precision_with_all_nodes_on_cuda(name):
    report = run(
        [validate.load_subject(name, GRAPHS)],
        eps=["cuda"],
        levels=LEVELS,
        precisions=["fp32", "fp16"],
    )
    for cell in report.cells:
        assert cell.status == "pass", (cell.target, cell.reason)
        assert set(cell.placement) == {"cuda"}, cell.placement
        assert cell.providers[0] == "CUDAExecutionProvider"


@pytest.mark.parametrize(
    "folder",
    [
        "test_Conv2d",
        "test_Conv2d_groups",
        "test_Conv2d_depthwise",
        "test_Conv2d_depthwise_with_multiplier",
        "test_Conv2d_depthwise_strided",
    ],
)
def test_onnx_shipped_conv_test_data_validates_on_cpu(folder):
    subject = validate.load_subject(str(ONNX_DATA / folder))
    assert subject.variant is None and subject.test_sets
    report = run([subject], levels=LEVELS)
    assert all(c.status == "pass" for c in report.cells), [
        (c.target, c.reason) for c in report.cells
    ]
    stored_case = report.cells[0].cases[0]
    assert stored_case.case == "test_data_set_0"
    assert set(stored_case.outputs[0].results) == {"stored", "reference_evaluator"}
    assert stored_case.outputs[0].decided_by == "stored"


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
    assert (
        main(
            [
                "validate",
                "channel_shuffle",
                "--graphs",
                str(GRAPHS),
                "--ep",
                "cpu",
                "--opt-level",
                "disabled,all",
                "--seeds",
                "0",
                "--quiet",
                "--json",
                str(out_json),
                "--markdown",
                str(out_md),
            ]
        )
        == 0
    )
    report = json.loads(out_json.read_text())
    assert report["kind"] == "validate" and report["schema"] == 2
    assert report["environment"]["versions"]["onnxruntime"]
    assert report["summary"] == {"pass": 4}
    assert report["settings"]["cuda_options"]["use_tf32"] == "0"
    cell = report["cells"][0]
    assert cell["target"] == "cpu/disabled/fp32" and cell["placement"] == {"cpu": 3}
    assert set(cell["worst"]) == {"torch", "stored", "reference_evaluator"}
    check = cell["cases"][0]["outputs"][0]
    assert (check["decided_by"], check["kind"], check["status"]) == ("torch", "", "pass")
    assert check["reference_vs_source"]["passed"]
    result = check["results"]["torch"]
    for key in (
        "max_abs",
        "max_rel",
        "mean_abs",
        "rms",
        "cosine",
        "n_bad",
        "frac_bad",
        "worst",
        "histogram",
        "nan_actual",
    ):
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
        numpy_helper.from_array(x, "input").SerializeToString()
    )
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
        code = main(
            [
                "validate",
                "--graphs",
                str(GRAPHS),
                "--quiet",
                "--seeds",
                "0",
                "--opt-level",
                "all",
                "--precision",
                "fp32",
                "--ep",
                "cpu",
            ]
            + argv
        )
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert word in err, (word, err)


def test_version_is_exposed():
    assert onnxconv.__version__


@pytest.mark.slow
@pytest.mark.parametrize("exporter,opset", [("dynamo", 18), ("torchscript", 17)])
def test_whole_networks_export_and_validate_at_every_level_and_precision(exporter, opset, tmp_path):
    from onnxconv.export import ExportOptions, export_variants

    export_variants(
        ["shufflenet", "mobilenet_v1"],
        tmp_path,
        ExportOptions(exporter=exporter, opset=opset, dynamic_batch=True),
    )
    subjects = [validate.load_subject(n, tmp_path) for n in ("shufflenet", "mobilenet_v1")]
    assert [s.variant for s in subjects] == ["shufflenet", "mobilenet_v1"]
    report = run(subjects, levels=LEVELS, precisions=["fp32", "fp16"])
    # BatchNorm statistics measured on data keep both networks' logits moving with the input
    # (drawn ones left MobileNet v1's insensitive: a pass proved nothing). In float16 a deep
    # network may pass past fp16's tolerance, within PyTorch's own float16 rounding.
    assert {(c.subject, c.status) for c in report.cells} == {
        ("shufflenet", "pass"),
        ("mobilenet_v1", "pass"),
    }, [(c.subject, c.target, c.reason) for c in report.cells if c.status != "pass"]
    assert [c.case for c in report.cells[0].cases][-1] == "wide/seed0/batch2"


def test_variant_without_a_graph_is_exported_now_and_validated(tmp_path):
    subject = validate.load_subject("shufflenet_v2_unit", tmp_path)  # empty graphs folder
    assert subject.variant == "shufflenet_v2_unit" and subject.test_sets
    assert "exported now" in str(subject.model_path)
    assert list(tmp_path.iterdir()) == []  # nothing written where the user keeps graphs
    assert run([subject], distributions=("normal",)).cells[0].status == "pass"


def test_dynamic_height_and_width_get_a_second_spatial_size(tmp_path):
    from onnxconv.export import ExportOptions, export_variants

    export_variants(
        ["shuffle_unit_s2"], tmp_path, ExportOptions(dynamic_batch=True, dynamic_hw=True)
    )
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

    export_variants(
        variants.names(),
        tmp_path,
        ExportOptions(exporter=exporter, opset=opset, dynamic_batch=True, dynamic_hw=True),
    )
    subjects = [validate.load_subject(n, tmp_path) for n in variants.names()]
    report = run(subjects, levels=["disabled", "all"], distributions=("normal",))
    # Every cell passes, but MobileNet v1's (random weights: see the whole-network test below).
    assert {c.status for c in report.cells if c.subject != "mobilenet_v1"} == {"pass"}, [
        (c.subject, c.target, c.reason) for c in report.cells if c.status != "pass"
    ]
    assert {(c.status, c.kind) for c in report.cells if c.subject == "mobilenet_v1"} <= {
        ("pass", ""),
        ("warn", "insensitive"),
    }
    sizes = {c.feeds["input"].shape[2:] for c in validate.make_cases(subjects[0], seeds=(0,))}
    assert len(sizes) == 2  # the export's size and another


def test_dissenting_reference_evaluator_is_a_warning_naming_the_node(monkeypatch):
    real = validate.reference_outputs

    def buggy_reference(model, feeds):  # a reference implementation with a bug, planted
        outputs = real(model, feeds)
        return {name: value + 0.5 for name, value in outputs.items()}

    monkeypatch.setattr(validate.cases, "reference_outputs", buggy_reference)  # make_case reads it
    report = run([validate.load_subject("grouped", GRAPHS)], distributions=("normal",))
    (cell,) = report.cells
    assert (cell.status, cell.kind) == ("warn", "reference")
    assert_every_case(cell, "warn", "reference")
    assert "the reference evaluator departs from onnxruntime and torch" in cell.reason
    check = cell.cases[0].outputs[0]
    assert check.results["torch"].passed and check.results["stored"].passed
    assert check.results["reference_evaluator"].max_abs == pytest.approx(0.5, abs=1e-4)
    assert cell.worst["reference_evaluator"]["max_abs"] == pytest.approx(0.5, abs=1e-4)


def test_pytorch_opinion_uses_the_weights_the_graph_was_exported_with(tmp_path):
    from onnxconv.export import ExportOptions, export_variants

    export_variants(["grouped"], tmp_path, ExportOptions(seed=3))
    report = run([validate.load_subject("grouped", tmp_path)], distributions=("normal",))
    assert report.cells[0].status == "pass", report.cells[0].reason


def test_an_input_too_large_to_allocate_is_exit_2_naming_it(tmp_path, capsys):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 100000, 100000])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 100000, 100000])
    model = make_model([onnx.helper.make_node("Relu", ["x"], ["y"])], [x], [y], [])
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    argv = ["validate", str(path), "--ep", "cpu", "--quiet", "--opt-level", "all"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err and "'x'" in err and "120 GB" in err and "4.29 GB limit" in err
    assert main(argv + ["--max-input-gb", "0"]) == 2


def test_a_graph_whose_outputs_are_all_nan_is_a_warning_with_the_counts(tmp_path, capsys):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 3, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 3, 3])
    nodes = [
        onnx.helper.make_node("Abs", ["x"], ["a"]),
        onnx.helper.make_node("Add", ["a", "one"], ["b"]),
        onnx.helper.make_node("Neg", ["b"], ["c"]),
        onnx.helper.make_node("Sqrt", ["c"], ["y"]),
    ]  # sqrt of a negative: NaN everywhere
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    path = tmp_path / "nan.onnx"
    onnx.save(make_model(nodes, [x], [y], [one]), path)
    (cell,) = run([validate.load_subject(str(path))]).cells
    assert (cell.status, cell.kind) == ("warn", "nonfinite")
    assert "36 NaN and 0 Inf of 36 elements" in cell.reason
    assert (
        main(
            [
                "validate",
                str(path),
                "--ep",
                "cpu",
                "--quiet",
                "--opt-level",
                "all",
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    assert "WARN nonfinite" in capsys.readouterr().out


def test_where_the_reference_evaluator_cannot_run_the_stored_outputs_still_decide(tmp_path):
    """A contrib op onnx's evaluator does not have (com.microsoft Gelu): the generated cases have
    no opinion to judge ORT by and are left out with a note; the stored test set decides."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    node = helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")
    model = helper.make_model(
        helper.make_graph([node], "contrib", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    folder = tmp_path / "contrib"
    (folder / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    feed = np.linspace(-3, 3, 8, dtype=np.float32).reshape(1, 8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": feed})
    for file, name, array in (("input_0", "x", feed), ("output_0", "y", out)):
        tensor = numpy_helper.from_array(array, name)
        (folder / "test_data_set_0" / f"{file}.pb").write_bytes(tensor.SerializeToString())
    report = tmp_path / "v.json"
    argv = ["validate", str(folder), "--precision", "fp32", "--opt-level", "all", "--quiet"]
    assert main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    (subject,) = data["subjects"]
    assert subject["cases"] == ["test_data_set_0"]
    assert [c["status"] for c in data["cells"]] == ["pass"]
    (note,) = [n for n in subject["notes"] if n.startswith("no generated cases: ")]
    assert note.endswith(
        "(no PyTorch module, no stored outputs of them); the stored test sets decide"
    )
    (folder / "test_data_set_0" / "output_0.pb").write_bytes(
        numpy_helper.from_array(out + 1, "y").SerializeToString()
    )
    assert main([*argv, "--json", str(report)]) == 1  # wrong stored outputs: not a pass


def test_a_folder_with_only_model_onnx_is_judged_as_a_bare_graph(tmp_path, capsys):
    folder = tmp_path / "lone"
    folder.mkdir()
    shutil.copy("graphs/grouped/model.onnx", folder / "model.onnx")  # no test data, no manifest
    report = tmp_path / "v.json"
    argv = ["validate", str(folder), "--precision", "fp32", "--opt-level", "all", "--quiet"]
    assert main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["subjects"][0]["opinions"] == ["reference_evaluator"]
    assert [c["status"] for c in data["cells"]] == ["pass"]
    tuned = tmp_path / "tuned"
    argv = ["tune", str(folder), "--rewrites", "none", "--no-settings", "--rounds", "1"]
    argv += ["--blocks", "1", "--calls", "3", "--no-profile", "--quiet", "--out", str(tuned)]
    assert main(argv) == 0
    assert main(["validate", str(tuned), "--quiet"]) == 0  # its record re-checks where it ships


def test_the_worst_error_says_how_much_of_its_tolerance_it_took(tmp_path):
    """A bare absolute error (7.33e+00 vs torch on a pass, 1.54e-02 on a pure data move) read as
    an alarm or as nothing: each opinion's worst also records the largest share of its tolerance
    any element took, and the headline shows it."""
    from onnxconv.validate.text import headline_text

    report = run([validate.load_subject("grouped")], distributions=("normal",))
    for cell in report.cells:
        used = cell.worst["torch"]["tol_used"]
        assert 0 <= used <= 1 and headline_text(cell).endswith(f"vs torch ({used:.0%} of tol)")
    folder = copy_graph("depthwise", tmp_path)
    stale_output(folder)  # one element 1.0 off: far outside
    (cell,) = run([validate.load_subject(str(folder))], distributions=("normal",)).cells
    assert cell.worst["stored"]["tol_used"] > 100
