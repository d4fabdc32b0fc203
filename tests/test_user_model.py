"""Your own model: ``--module`` through export, validate, bench and tune, and the Python API.

The modules are in tests/user_modules.py, imported by path the way a user's code is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import onnxconv
from onnxconv import mutations
from onnxconv.cli import main
from onnxconv.errors import UserInputError
from onnxconv.user_model import InputSpec, ModuleRecipe, parse_module_args

TWO = "user_modules:TwoInputs"
TWO_INPUTS = ["--input", "1,8,8,8", "--input", "1,4,8,8"]
FP32_ALL = ["--quiet", "--opt-level", "all", "--precision", "fp32"]


def export_two(out: Path, *extra: str) -> Path:
    assert main(["export", "--module", TWO, *TWO_INPUTS, "--out", str(out), "--quiet", *extra]) == 0
    return out / "TwoInputs"


def test_input_shapes_and_module_args_parse():
    assert InputSpec.parse("1,3,224,224") == InputSpec((1, 3, 224, 224), "float32")
    assert InputSpec.parse("2,16:int64") == InputSpec((2, 16), "int64")
    assert parse_module_args("num_classes=10,aux_logits=False,mode=fast") == {
        "num_classes": 10,
        "aux_logits": False,
        "mode": "fast",
    }
    for bad in ("1,3,x", "0,3", "1,3:complex64"):
        with pytest.raises(UserInputError, match="--input"):
            InputSpec.parse(bad)
    with pytest.raises(UserInputError, match="key=value"):
        parse_module_args("10")


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_writes_test_data_and_a_manifest_that_can_rebuild_the_module(tmp_path, exporter):
    folder = export_two(tmp_path, "--exporter", exporter, "--opset", "18", "--dynamic-batch")
    data = folder / "test_data_set_0"
    assert sorted(p.name for p in data.iterdir()) == [
        "input_0.pb",
        "input_1.pb",
        "output_0.pb",
        "output_1.pb",
    ]
    entry = json.loads((tmp_path / "manifest.json").read_text())["graphs"]["TwoInputs"]
    assert entry["module"] == {
        "path": TWO,
        "args": {},
        "inputs": [
            {"shape": [1, 8, 8, 8], "dtype": "float32"},
            {"shape": [1, 4, 8, 8], "dtype": "float32"},
        ],
        "seed": 0,
    }
    assert [i["dynamic_axes"] for i in entry["inputs"]] == [{"0": "batch"}, {"0": "batch"}]
    assert entry["structure"]["convs"] == {"depthwise": 1, "pointwise": 2}
    model = onnx.load(folder / "model.onnx")
    assert [i.name for i in model.graph.input] == ["input_0", "input_1"]
    assert [o.name for o in model.graph.output] == ["output_0", "output_1"]
    # the recipe rebuilds the very weights that were exported
    module, _ = ModuleRecipe.from_dict(entry["module"]).build()
    from onnxconv.user_model import weights_fingerprint

    assert weights_fingerprint(module) == entry["weights_sha256"]


def test_validate_an_export_folder_judges_by_the_rebuilt_module(tmp_path, capsys):
    export_two(tmp_path, "--dynamic-batch")
    report = tmp_path / "v.json"
    assert main(["validate", str(tmp_path), *FP32_ALL, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    (subject,) = data["subjects"]
    assert subject["module"] == TWO
    assert "torch" in subject["opinions"]
    assert any("batch2" in case for case in subject["cases"])  # the dynamic batch was used
    assert all(c["deciders"][0] == "torch" for c in data["cells"])


def test_a_planted_defect_in_a_user_graph_fails_as_an_export_defect(tmp_path, capsys):
    folder = export_two(tmp_path)
    mutant = mutations.weight_sign_flip(onnx.load(folder / "model.onnx"))
    onnx.save(mutant.model, folder / "model.onnx")
    report = tmp_path / "v.json"
    assert main(["validate", str(folder), *FP32_ALL, "--json", str(report)]) == 1
    (cell,) = json.loads(report.read_text())["cells"]
    assert cell["status"] == "fail" and cell["kind"] == "export"
    assert "changed since export; PyTorch (user_modules:TwoInputs) still decides" in (
        capsys.readouterr().out
    )


def test_a_rebuilt_module_with_other_weights_never_speaks_for_the_graph(tmp_path, capsys):
    export_two(tmp_path)
    manifest = tmp_path / "manifest.json"
    data = json.loads(manifest.read_text())
    data["graphs"]["TwoInputs"]["module"]["seed"] = 1  # the factory now draws other weights
    manifest.write_text(json.dumps(data))
    report = tmp_path / "v.json"
    assert main(["validate", str(tmp_path), *FP32_ALL, "--json", str(report)]) == 0
    assert "other weights than the module exported" in capsys.readouterr().out
    (subject,) = json.loads(report.read_text())["subjects"]
    assert "torch" not in subject["opinions"]  # the stored outputs decide instead


def export_with_an_unimportable_module(out: Path) -> Path:
    """The TwoInputs export, its manifest naming a module path no machine can import (a CI box
    without the model's code); returns the manifest."""
    export_two(out)
    manifest = out / "manifest.json"
    data = json.loads(manifest.read_text())
    data["graphs"]["TwoInputs"]["module"]["path"] = "elsewhere.nets:TwoInputs"
    manifest.write_text(json.dumps(data))
    return manifest


def test_a_manifest_module_that_cannot_be_imported_names_the_manifest(tmp_path, capsys):
    manifest = export_with_an_unimportable_module(tmp_path)
    capsys.readouterr()
    assert main(["validate", str(tmp_path), *FP32_ALL]) == 2
    assert capsys.readouterr().err.strip() == (
        f"onnxconv validate: error: {manifest}: module elsewhere.nets:TwoInputs: cannot import "
        "elsewhere.nets: ModuleNotFoundError: No module named 'elsewhere' (onnxconv imports "
        "from the current folder and PYTHONPATH); --no-module lets the folder's "
        "stored outputs decide"
    )
    # A CI box without the model's code: the stored outputs decide, and the report says why.
    report = tmp_path / "v.json"
    assert main(["validate", str(tmp_path), *FP32_ALL, "--no-module", "--json", str(report)]) == 0
    (subject,) = json.loads(report.read_text())["subjects"]
    assert "stored" in subject["opinions"] and "torch" not in subject["opinions"]
    assert any(
        "not rebuilt (--no-module): the stored outputs decide" in n for n in subject["notes"]
    )


def test_bench_of_a_folder_whose_module_cannot_be_imported_is_one_line_or_ort_alone(
    tmp_path, capsys
):
    """bench used to time ONNX Runtime, then fail every PyTorch cell on the import; now the
    module is built before anything is timed, and --no-module times ONNX Runtime alone."""
    manifest = export_with_an_unimportable_module(tmp_path)
    capsys.readouterr()
    fast = ["--threads", "1", "--rounds", "1", "--blocks", "1", "--calls", "2", "--quiet"]
    fast += ["--opt-level", "all", "--no-profile", "--no-roofs", "--no-plots"]
    out = tmp_path / "b"
    assert main(["bench", str(tmp_path / "TwoInputs"), *fast, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"onnxconv bench: error: {manifest}: module elsewhere.nets:TwoInputs:")
    assert err.endswith("; --no-module times ONNX Runtime alone there") and "\n" not in err
    assert not out.exists()  # nothing timed, nothing written
    assert (
        main(["bench", str(tmp_path / "TwoInputs"), *fast, "--out", str(out), "--no-module"]) == 0
    )
    report = json.loads((out / "bench.json").read_text())
    assert {c["backend"] for c in report["cells"]} == {"ort"}
    assert (  # among the notes (a busy machine adds its own on the measurement)
        f"PyTorch is not timed beside TwoInputs: the module {manifest} names is not imported "
        "(--no-module)"
    ) in report["notes"]
    assert "note: PyTorch is not timed beside TwoInputs" in capsys.readouterr().out


def test_where_onnxconv_imports_from_is_said_only_when_the_path_itself_is_not_found(
    tmp_path, capsys
):
    argv = ["export", "--input", "1,1,4,4", "--out", str(tmp_path), "--quiet", "--module"]
    assert main([*argv, "no_such_package.nets:Net"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "No module named 'no_such_package' (onnxconv imports from the current folder and "
            "PYTHONPATH)"
        )
    )
    assert main([*argv, "user_module_needs_dep:Net"]) == 2  # found; its own import failed
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("No module named 'not_installed_dependency_of_a_user_module'")
    )


def test_exporting_another_module_under_a_taken_name_says_what_it_replaced(tmp_path, capsys):
    argv = ["export", "--module", "user_modules:shuffled", "--input", "1,8,4,4", "--quiet"]
    argv += ["--out", str(tmp_path)]
    assert main([*argv, "--module-args", "groups=2"]) == 0
    assert main([*argv, "--module-args", "groups=2"]) == 0  # the same again: nothing to say
    assert "replaced" not in capsys.readouterr().err
    assert main([*argv, "--module-args", "groups=4"]) == 0
    assert capsys.readouterr().err.strip() == (
        f"note: replaced {tmp_path / 'shuffled'}, which held user_modules:shuffled (inputs "
        "1×8×4×4 float32; args groups=2); --name NAME keeps both"
    )


def test_module_beside_a_bare_onnx_adds_the_pytorch_opinion(tmp_path, capsys):
    spec = "user_modules:shuffled"
    args = ["--module-args", "groups=2"]
    out = tmp_path / "out"
    assert main(["export", "--module", spec, *args, "--input", "1,8,4,4", "--out", str(out)]) == 0
    assert "1 channel shuffles (g=2)" in capsys.readouterr().out
    bare = tmp_path / "shuffled.onnx"
    shutil.copy(out / "shuffled" / "model.onnx", bare)
    report = tmp_path / "v.json"
    right = ["validate", str(bare), "--module", spec, *FP32_ALL, "--json", str(report)]
    capsys.readouterr()
    assert main([*right, *args]) == 0
    assert "torch" in json.loads(report.read_text())["subjects"][0]["opinions"]
    assert "weight tensors" not in capsys.readouterr().out
    assert main([*right, "--module-args", "groups=4"]) == 1  # another module: it fails,
    notes = json.loads(report.read_text())["subjects"][0]["notes"]  # and the note says why
    assert any("none of the 4 weight tensors of user_modules:shuffled is among" in n for n in notes)

    # A BatchNorm folded into the Conv changes every weight: no note where nothing failed
    argv = ["export", "--module", "user_modules:ConvBN", "--input", "1,3,8,8"]
    assert main([*argv, "--exporter", "torchscript", "--out", str(out), "--quiet"]) == 0
    folded = shutil.copy(out / "ConvBN" / "model.onnx", tmp_path / "folded.onnx")
    argv = ["validate", str(folded), "--module", "user_modules:ConvBN", *FP32_ALL]
    assert main([*argv, "--json", str(report)]) == 0
    assert not any(
        "weight tensors" in n for n in json.loads(report.read_text())["subjects"][0]["notes"]
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--module", "user_modules:not_a_module"], "returned an object of type dict, not a"),
        (["--module", "user_modules:fails"], "the factory failed: ValueError: channels must be"),
        (["--module", "user_modules:missing"], "user_modules has no attribute 'missing'"),
        (["--module", "user_module_broken:x"], "cannot import user_module_broken: ImportError:"),
        (["--module", "no_such_package.models:net"], "No module named 'no_such_package'"),
        (["--module", "user_modules"], "expected package.module:factory"),
        (["--module", "user_modules:Unexportable"], "aten.linalg_eig"),
        (
            ["--module", "user_modules:Unexportable", "--exporter", "torchscript"],
            "aten::linalg_eigvals",
        ),
        (["--module", TWO, "--input", "1,8,8,8"], "rejects inputs of shape [1, 8, 8, 8]"),
    ],
)
def test_bad_user_models_are_exit_2_with_one_line_and_nothing_written(
    tmp_path, capsys, argv, message
):
    out = tmp_path / "out"
    if "--input" not in argv:
        argv = [*argv, "--input", "1,1,4,4"]
    assert main(["export", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_integer_inputs_come_from_the_stored_sample_or_inputs_npz(tmp_path, capsys):
    """Token ids have valid values only the model knows (here an Embedding of 10 rows):
    validate and tune take them from the export's stored input, repeated along the batch, or
    from --inputs; floats are still drawn per seed."""
    spec = ["--input", "1,3,4,4", "--input", "1,5:int64", "--dynamic-batch"]
    argv = ["export", "--module", "user_modules:Embedded", *spec, "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    folder = tmp_path / "Embedded"
    report = tmp_path / "v.json"
    argv = ["validate", str(folder), *FP32_ALL, "--json", str(report)]
    assert main(argv) == 0
    data = json.loads(report.read_text())
    assert [c["status"] for c in data["cells"]] == ["pass"]
    assert {"test_data_set_0", "normal/seed0/batch1", "wide/seed1/batch2"} <= set(
        data["subjects"][0]["cases"]
    )
    ids = np.array([[9, 0, 9, 0, 9]], dtype=np.int64)
    image = np.ones((1, 3, 4, 4), dtype=np.float32)
    np.savez(tmp_path / "inputs.npz", input_0=image, input_1=ids)
    argv += ["--inputs", str(tmp_path / "inputs.npz")]
    assert main(argv) == 0
    assert "inputs" in json.loads(report.read_text())["subjects"][0]["cases"]
    argv = ["tune", str(folder), "--no-settings", "--rounds", "1", "--blocks", "1", "--calls", "3"]
    argv += ["--no-profile", "--quiet", "--out", str(tmp_path / "tuned")]
    assert main(argv) == 0
    assert (tmp_path / "tuned" / "tuned.json").is_file()
    bare = shutil.copy(folder / "model.onnx", tmp_path / "bare.onnx")  # no sample: one line
    capsys.readouterr()
    assert main(["validate", str(bare), *FP32_ALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "input 'input_1' is int64, whose valid values only the model knows; onnxconv draws "
        "float inputs only, and takes this one from a sample: the graph's "
        "test_data_set_0/input_1.pb (as export writes it) or validate's --inputs FILE.npz"
    )
    assert "\n" not in err


def test_a_mask_sample_cannot_follow_another_height_and_width_so_those_cases_are_left_out(
    tmp_path, capsys
):
    spec = ["--input", "1,3,8,8", "--input", "1,1,8,8:bool", "--dynamic-batch", "--dynamic-hw"]
    argv = ["export", "--module", "user_modules:Masked", *spec, "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    report = tmp_path / "v.json"
    assert main(["validate", str(tmp_path / "Masked"), *FP32_ALL, "--json", str(report)]) == 0
    (subject,) = json.loads(report.read_text())["subjects"]
    assert "normal/seed0/batch2" in subject["cases"]  # the mask repeated along the batch
    assert not any("x13" in case for case in subject["cases"])  # no 11x13 mask to be had
    (note,) = [n for n in subject["notes"] if n.startswith("no generated cases at 11x13: ")]
    assert "input 'input_1' comes from a sample of shape [1, 1, 8, 8], which cannot take" in note


def test_int8_evaluation_inputs_take_integer_inputs_from_inputs_npz(tmp_path, capsys):
    spec = ["--input", "1,3,4,4", "--input", "1,5:int64"]
    argv = ["export", "--module", "user_modules:Embedded", *spec, "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    bare = shutil.copy(tmp_path / "Embedded" / "model.onnx", tmp_path / "bare.onnx")
    ids = np.array([[1, 2, 3, 4, 5]], dtype=np.int64)
    image = np.ones((1, 3, 4, 4), dtype=np.float32)
    np.savez(tmp_path / "inputs.npz", input_0=image, input_1=ids)
    argv = ["validate", str(bare), "--inputs", str(tmp_path / "inputs.npz"), "--quiet"]
    code = main([*argv, "--opt-level", "all", "--precision", "int8", "--json", str(tmp_path / "r")])
    assert code in (0, 1), capsys.readouterr().err  # judged, not refused for want of ids
    (cell,) = json.loads((tmp_path / "r").read_text())["cells"]
    assert cell["target"] == "cpu/all/int8"
    assert cell["status"] == "pass" or cell["kind"] == "quantization"  # a judgement of int8


def test_generated_integer_inputs_repeat_the_sample_along_a_symbolic_batch():
    from onnx import TensorProto, helper

    from onnxconv import feeds

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 2])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["y"])], "g", [image, ids], [out]
    )
    model = helper.make_model(graph)
    sample = {"ids": np.array([[1, 2, 3], [4, 5, 6]])}
    made = feeds.generate(
        model, "m", batch=3, spatial={1: 2}, distribution="normal", seed=0, samples=sample
    )
    assert list(made) == ["image", "ids"]
    assert made["image"].shape == (3, 2) and made["image"].dtype == np.float32
    assert made["ids"].tolist() == [[1, 2, 3], [4, 5, 6], [1, 2, 3]]
    assert made["ids"].dtype == np.int64
    one = feeds.generate(
        model, "m", batch=1, spatial={1: 2}, distribution="normal", seed=0, samples=sample
    )
    assert one["ids"].tolist() == [[1, 2, 3]]
    assert np.array_equal(one["image"], made["image"][:1])  # floats drawn as without a sample
    with pytest.raises(UserInputError, match="^m: input 'ids' is int64"):
        feeds.generate(model, "m", batch=1, spatial={}, distribution="normal", seed=0)
    for bad in (np.zeros((0, 3), np.int64), np.zeros((2, 4), np.int64), np.int64(3)):
        with pytest.raises(feeds.SampleDoesNotFit, match="^m: input 'ids' comes from a sample"):
            feeds.generate(
                model, "m", batch=2, spatial={}, distribution="normal", seed=0, samples={"ids": bad}
            )
    unshaped = helper.make_tensor_value_info("ids", TensorProto.INT64, None)
    model.graph.input[1].CopyFrom(unshaped)  # no shape declared: the sample is taken as it is
    free = feeds.generate(
        model,
        "m",
        batch=2,
        spatial={},
        distribution="normal",
        seed=0,
        samples={"ids": np.arange(5)},
    )
    assert free["ids"].tolist() == [0, 1, 2, 3, 4]
    model.graph.input[1].CopyFrom(ids)
    with pytest.raises(UserInputError, match="over the 100 B limit"):  # the sample's bytes count
        feeds.generate(
            model,
            "m",
            batch=9,
            spatial={1: 2},
            distribution="normal",
            seed=0,
            samples=sample,
            max_bytes=100,
        )


def test_validate_module_api_from_a_module_in_memory():
    module = torch.nn.Sequential(
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 1)
    )
    report = onnxconv.validate_module(module, (torch.randn(1, 4, 8, 8),), eps=["cpu"])
    assert report.summary() == {"pass": 2}
    assert "torch" in report.subjects[0]["opinions"]
    with torch.no_grad():
        module[2].weight[0, 0] += 1.0  # the graph was exported before: now it disagrees
    # a fresh call exports the changed module again: it still passes
    assert onnxconv.validate_module(module, (torch.randn(1, 4, 8, 8),), eps=["cpu"]).summary() == {
        "pass": 2
    }


def test_bench_times_pytorch_beside_a_user_graph(tmp_path):
    from test_bench import FAST

    from onnxconv.bench.harness import BenchSettings, run_bench

    folder = export_two(tmp_path / "graphs")
    report = run_bench(
        [folder],
        BenchSettings(**{**FAST, "rounds": 1}, eps=["cpu"], profile=False, roofs=False),
    )
    cells = {c["backend"]: c for c in report.to_dict()["cells"]}
    assert set(cells) == {"ort", "torch"}
    assert cells["torch"]["status"] == "ok", cells["torch"]
    assert report.to_dict()["pairs"]  # ORT against PyTorch, side by side


@pytest.mark.slow
def test_tune_proves_candidates_against_the_users_module(tmp_path):
    folder = export_two(tmp_path / "graphs")
    report = tmp_path / "tune.json"
    argv = ["tune", str(folder), "--threads", "1", "--rounds", "1", "--blocks", "2"]
    argv += ["--calls", "3", "--no-profile", "--quiet", "--out", str(tmp_path / "tuned")]
    assert main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    text = json.dumps(data)
    assert "torch: PyTorch module user_modules:TwoInputs" in text


def test_a_dynamic_height_and_width_export_records_the_multiply_adds_of_its_example(
    tmp_path, capsys
):
    """Every Conv after the shuffle's Reshape, whose target dynamo computes from Shape, Squeeze,
    Add, Div and Reshape, is counted at the example's 6x6 (the manifest once said 0)."""
    argv = ["export", "--module", "user_modules:shuffled", "--input", "1,8,6,6", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "static")]) == 0
    assert main([*argv, "--dynamic-hw", "--out", str(tmp_path / "dynamic")]) == 0
    macs = [
        json.loads((tmp_path / out / "manifest.json").read_text())["graphs"]["shuffled"]["macs"]
        for out in ("static", "dynamic")
    ]
    assert macs[0] == macs[1] == 2 * 6 * 6 * 8 * 4  # two 1x1 convs, 8 -> 8 in 2 groups
    # inspect sizes the folder's symbolic height and width by its stored input, and says so
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "dynamic" / "shuffled"), "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["macs"] == macs[0] and cost["sized_by"] == "at the stored inputs' size (1x8x6x6)"


def test_bench_times_a_dynamic_height_and_width_export_at_its_stored_inputs_size(tmp_path, capsys):
    argv = ["export", "--module", "user_modules:shuffled", "--input", "1,8,6,6", "--dynamic-hw"]
    argv += ["--module-seed", "5"]
    assert main([*argv, "--out", str(tmp_path / "g"), "--quiet"]) == 0
    folder = tmp_path / "g" / "shuffled"
    quick = ["--rounds", "1", "--blocks", "1", "--calls", "3", "--no-roofs", "--no-profile"]
    quick += ["--opt-level", "all"]
    assert main(["bench", str(folder), *quick, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    (cell,) = [c for c in report["cells"] if c["backend"] == "ort"]
    assert list(cell["input_shapes"].values()) == [[1, 8, 6, 6]]
    # the PyTorch timed beside it is the module as exported: its recipe, seed included
    (source,) = report["settings"]["sources"]
    assert source["module"]["path"] == "user_modules:shuffled" and source["module"]["seed"] == 5
    assert cell["macs"] == 2 * 6 * 6 * 8 * 4
    bare = shutil.copy(folder / "model.onnx", tmp_path / "bare.onnx")  # nothing to size it by
    assert main(["bench", str(bare), *quick, "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert "no stored input to take its size from" in capsys.readouterr().err


def test_a_graph_from_other_weights_is_named_even_beside_a_fresh_batchnorm():
    """A fresh BatchNorm's ones and zeros are the same under every seed: they matched, so a
    ShuffleNet exported after another seed had "112 of 282" weights in the graph and its export
    failure came without the note that it has other weights. Tensors of one value say nothing
    of where weights came from and are not compared."""
    from onnx import helper, numpy_helper

    from onnxconv.user_model import weights_in_graph
    from onnxconv.validate import Subject, attach_module

    def built(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(8)
        )

    def graph_of(module: torch.nn.Module) -> onnx.ModelProto:
        inits = [
            numpy_helper.from_array(t.detach().numpy().astype(np.float32), name)
            for name, t in module.state_dict().items()
            if t.is_floating_point()
        ]
        graph = helper.make_graph([], "weights", [], [], inits)
        return helper.make_model(graph)

    same, other = graph_of(built(0)), graph_of(built(1))
    assert weights_in_graph(built(0), same) == (2, 2)  # the Conv's weight and bias
    assert weights_in_graph(built(0), other) == (0, 2)  # the BatchNorm's ones/zeros not counted
    subject = Subject("g", Path("g.onnx"), other)
    attach_module(subject, built(0), "m:built")
    assert subject.foreign_weights and subject.foreign_weights.startswith(
        "none of the 2 weight tensors of m:built is among the initializers of g.onnx"
    )


def test_module_seed_draws_the_weights_the_graph_was_exported_with(tmp_path, capsys):
    """A graph exported after torch.manual_seed(1): --module-seed 1 rebuilds its module, the
    default seed 0 draws other weights, fails as an export defect and says why."""
    assert main(["export", *export_args(tmp_path), "--module-seed", "1"]) == 0
    graph = tmp_path / "ConvBN" / "model.onnx"
    bare = tmp_path / "bare.onnx"
    shutil.copy(graph, bare)  # without its manifest: only --module speaks for it
    argv = ["validate", str(bare), "--module", "user_modules:ConvBN", *FP32_ALL, "--seeds", "0"]
    assert main([*argv, "--module-seed", "1"]) == 0
    report = tmp_path / "r.json"
    assert main([*argv, "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    assert data["cells"][0]["kind"] == "export"
    assert any("another seed: --module-seed" in n for n in data["subjects"][0]["notes"])


def export_args(out: Path) -> list[str]:
    return ["--module", "user_modules:ConvBN", "--input", "1,3,8,8", "--out", str(out), "--quiet"]


def test_import_torchvision_gives_its_models_in_a_users_own_script():
    """PyPI's torchvision beside the CPU torch fails on a bare ``import torchvision`` (its
    compiled ops do not load); ``onnxconv.import_torchvision()`` makes the allowance --module
    makes, so a user's own export script gets the models."""
    torchvision = onnxconv.import_torchvision()
    model = torchvision.models.shufflenet_v2_x0_5(weights=None)
    assert isinstance(model, torch.nn.Module)
    assert onnxconv.import_torchvision() is torchvision  # imported once


def test_a_module_of_another_output_shape_is_the_wrong_module_in_one_line(tmp_path, capsys):
    """The wrong --module (or --module-args) gave one FAIL export per cell ("shape mismatch");
    the module the user names for a graph is checked against the shapes the graph declares."""
    assert main(["export", *export_args(tmp_path)]) == 0
    graph = tmp_path / "bare.onnx"
    shutil.copy(tmp_path / "ConvBN" / "model.onnx", graph)
    argv = ["validate", str(graph), "--module", "user_modules:ConvBNPooled", *FP32_ALL]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gives output" in err[0] and "of shape 1x8x1x1" in err[0], err
    assert "where the graph declares 1x8x8x8: is it this graph's source" in err[0]
