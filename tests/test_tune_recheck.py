"""``onnxconv validate DIR/tuned.json``: the deployment tune chose, checked again with its own EP,
settings, precision and budget; a graph or original changed since is refused, a planted defect in
the tuned graph fails. Timings are made up where a test needs a particular winner."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxconv.cli import main
from onnxconv.tune import search
from onnxconv.tune.timing import Timing

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
QUICK = ["--rounds", "2", "--blocks", "1", "--calls", "5", "--retries", "0", "--no-profile"]
QUICK += ["--quiet", "--no-settings"]


def _fast_candidates(monkeypatch, fast: str, blocks_ns: list | None = None) -> None:
    """Made-up timings: candidates whose name holds ``fast`` are 5x faster (with ``blocks_ns``
    as their calls, when given)."""

    def time_rounds(jobs, ep, inputs, method, torch_job, say, until=None):
        return {
            j.key: Timing(
                [1.0 if fast in j.key else 5.0] * method.rounds,
                blocks_ns=(blocks_ns or []) if fast in j.key else [],
            )
            for j in jobs
        }, None

    monkeypatch.setattr(search, "time_rounds", time_rounds)


def _tuned(tmp_path: Path, monkeypatch, graph: str, fast: str, *extra: str) -> Path:
    """A copy of a committed graph folder tuned with made-up timings (candidates whose name
    holds ``fast`` are 5x faster); returns its tuned.json."""
    shutil.copytree(GRAPHS / graph, tmp_path / graph)
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")

    _fast_candidates(monkeypatch, fast)
    assert main(["tune", str(tmp_path / graph), *QUICK, *extra]) == 0
    return tmp_path / graph / "tuned.json"


def _validate(record: Path, tmp_path: Path, capsys) -> tuple[int, dict, str]:
    report = tmp_path / "validate.json"
    code = main(["validate", str(record), "--quiet", "--json", str(report)])
    out = capsys.readouterr()
    return code, json.loads(report.read_text()) if report.exists() else {}, out.err


def _rewrite(record: Path, edit) -> None:
    """Edit the tuned graph and record its new sha256, as if tune had written it so."""
    model_path = record.parent / "model.tuned.onnx"
    model = onnx.load(model_path)
    edit(model)
    onnx.save(model, model_path)
    data = json.loads(record.read_text())
    data["sha256"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    record.write_text(json.dumps(data))


def _swap_first_two(model: onnx.ModelProto, op_type: str) -> None:
    """Swap two entries of the constant permutation feeding the first ``op_type``."""
    node = next(n for n in model.graph.node if n.op_type == op_type)
    for i, init in enumerate(model.graph.initializer):
        if init.name in node.input:
            perm = numpy_helper.to_array(init).copy()
            perm[[0, 1]] = perm[[1, 0]]
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(perm, init.name))


def test_a_tuned_folder_validates_into_markdown_and_refuses_another_budget(
    tmp_path, monkeypatch, capsys
):
    """validate tuned.json --markdown crashed on a KeyError after printing its pass; a budget
    given to a tuned record was ignored (it is checked within the one it was tuned with)."""
    record = _tuned(tmp_path, monkeypatch, "channel_shuffle", "gather", "--rewrites", "none")
    md = tmp_path / "v.md"
    assert main(["validate", str(record), "--quiet", "--markdown", str(md)]) == 0
    assert "- stored outputs: trusted" in md.read_text()
    capsys.readouterr()
    assert main(["validate", str(record), "--quiet", "--accuracy-budget", "sqnr_db=abc"]) == 2
    assert main(["validate", str(record), "--quiet", "--accuracy-budget", "sqnr_db=20"]) == 2
    assert "checked again within the budget it was tuned with" in capsys.readouterr().err


def test_a_tuned_formulation_passes_again_and_a_planted_defect_fails(tmp_path, monkeypatch, capsys):
    record = _tuned(
        tmp_path, monkeypatch, "channel_shuffle", "gather", "--rewrites", "shuffle_gather"
    )
    assert json.loads(record.read_text())["candidate"] == "shuffle_gather @ level=all"
    code, report, _ = _validate(record, tmp_path, capsys)
    assert code == 0
    (cell,) = report["cells"]
    assert cell["status"] == "pass" and cell["target"] == "cpu/all/fp32 level=all"
    assert "torch" in cell["deciders"] and report["settings"]["tuned"] == str(record)
    _rewrite(record, lambda m: _swap_first_two(m, "Gather"))
    code, report, _ = _validate(record, tmp_path, capsys)
    assert code == 1 and report["cells"][0]["status"] == "fail"


def test_a_tuned_int8_deployment_is_judged_within_its_budget(tmp_path, monkeypatch, capsys):
    extra = ("--rewrites", "none", "--precision", "int8", "--accuracy-budget", "sqnr_db=30")
    record = _tuned(tmp_path, monkeypatch, "grouped", "/int8", *extra)
    data = json.loads(record.read_text())
    assert data["precision"] == "int8" and "sqnr_db=30" in data["accuracy_budget"]
    code, report, _ = _validate(record, tmp_path, capsys)
    assert code == 0
    (cell,) = report["cells"]
    assert cell["target"].startswith("cpu/all/int8") and cell["quant"]["metrics"]
    assert report["settings"]["accuracy_budget"].startswith("sqnr_db >= 30")

    def scale_down_a_weight_scale(model: onnx.ModelProto) -> None:  # a wrong QDQ scale
        dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
        for i, init in enumerate(model.graph.initializer):
            if init.name == dq.input[1]:
                scale = numpy_helper.to_array(init) * np.float32(0.5)
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(scale, init.name))

    _rewrite(record, scale_down_a_weight_scale)
    code, report, _ = _validate(record, tmp_path, capsys)
    assert code == 1 and report["cells"][0]["kind"] == "quantization"


def test_a_tuned_graph_or_original_changed_since_is_refused(tmp_path, monkeypatch, capsys):
    record = _tuned(
        tmp_path, monkeypatch, "channel_shuffle", "gather", "--rewrites", "shuffle_gather"
    )
    tuned = record.parent / "model.tuned.onnx"
    tuned.write_bytes(tuned.read_bytes() + b"\0")
    code, _, err = _validate(record, tmp_path, capsys)
    assert code == 2 and "changed since tune wrote it" in err and len(err.splitlines()) == 1
    record = _tuned(tmp_path / "b", monkeypatch, "channel_shuffle", "gather")
    original = record.parent / "model.onnx"
    original.write_bytes(original.read_bytes() + b"\0")
    code, _, err = _validate(record, tmp_path, capsys)
    assert code == 2 and "changed since tune proved against it" in err
    code, _, err = _validate(tmp_path / "no" / "tuned.json", tmp_path, capsys)
    assert code == 2 and "no such file" in err


def test_bench_times_a_tuned_graph_on_its_own_target_and_settings(tmp_path, monkeypatch, capsys):
    extra = ("--rewrites", "none", "--precision", "int8", "--accuracy-budget", "default")
    shutil.copytree(GRAPHS / "grouped", tmp_path / "grouped")
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")  # PyTorch runs beside it
    record = _tuned(tmp_path / "t", monkeypatch, "grouped", "/int8", *extra, "--threads", "2")
    data = json.loads(record.read_text())
    data["session"]["session_config"] = {"session.intra_op.allow_spinning": "0"}  # as if chosen
    record.write_text(json.dumps(data))
    out = tmp_path / "bench"
    args = ["bench", str(tmp_path / "grouped"), str(record), "--rounds", "1", "--blocks", "1"]
    assert main([*args, "--calls", "5", "--quiet", "--no-roofs", "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    cells = report["cells"]
    tuned = [c for c in cells if c.get("tuned")]
    (cell,) = tuned  # one ORT cell: the tuned target only
    assert cell["label"] == "grouped.tuned" and cell["target"] == "cpu/all/int8"
    assert cell["status"] == "ok" and cell["tuned_threads"] == 2
    options = cell["session"]["session_options"]
    assert options["session_config"] == {"session.intra_op.allow_spinning": "0"}
    assert any(c["label"] == "grouped" and c["target"] == "cpu/all/fp32" for c in cells)
    # both graphs' manifests name the zoo variant: PyTorch eager is timed beside each, paired
    torch = {c["label"]: c for c in cells if c["backend"] == "torch"}
    assert set(torch) == {"grouped", "grouped.tuned"} and torch["grouped.tuned"]["status"] == "ok"
    assert torch["grouped.tuned"]["config"]["groups"] == 8
    paired = {p["ort_cell"] for p in report["pairs"] if p["torch_over_ort"]}
    assert cell["id"] in paired


def test_the_folder_tune_wrote_names_its_record(tmp_path, monkeypatch, capsys):
    from onnxconv.tune.recheck import tuned_record_path

    record = _tuned(tmp_path, monkeypatch, "channel_shuffle", "gather", "--rewrites", "none")
    in_place = record.parent  # the original's folder, tuned in place: it names the original
    assert tuned_record_path(in_place) is None and tuned_record_path(record) == record
    out = tmp_path / "out"
    shutil.copytree(in_place, out, ignore=shutil.ignore_patterns("model.onnx", "test_data_*"))
    assert tuned_record_path(out) == out / "tuned.json"
    code, report, _ = _validate(out, tmp_path, capsys)
    assert code == 0 and report["settings"]["tuned"] == str(out / "tuned.json")
    assert [c["status"] for c in report["cells"]] == ["pass"]
    assert tuned_record_path(tmp_path / "nowhere") is None
    from onnxconv.bench.sources import resolve_sources

    (source,) = resolve_sources([str(out)])  # bench takes the folder too
    assert source.label == "channel_shuffle.tuned" and source.tuned.record == str(
        out / "tuned.json"
    )
    # without --batch, bench times it at the batch it was tuned at
    assert source.own_batch == json.loads((out / "tuned.json").read_text())["batch"] == 1


def test_a_tuned_folder_checks_again_from_anywhere_and_after_moving_with_its_original(
    tmp_path, monkeypatch, capsys
):
    """tune ran with relative paths; the record names its original relative to itself."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(GRAPHS / "channel_shuffle", work / "g" / "channel_shuffle")
    shutil.copy(GRAPHS / "manifest.json", work / "g" / "manifest.json")

    _fast_candidates(monkeypatch, "gather")
    monkeypatch.chdir(work)
    argv = ["tune", "g/channel_shuffle", *QUICK, "--rewrites", "shuffle_gather", "--out", "tuned"]
    assert main(argv) == 0
    original = json.loads((work / "tuned" / "tuned.json").read_text())["original"]
    assert original["path"] == str(Path("..") / "g" / "channel_shuffle" / "model.onnx")
    monkeypatch.chdir(tmp_path)  # elsewhere
    code, report, err = _validate(work / "tuned", tmp_path, capsys)
    assert code == 0 and report["cells"][0]["status"] == "pass", err
    moved = shutil.move(work, tmp_path / "moved")  # both folders together, to another place
    code, report, err = _validate(Path(moved) / "tuned", tmp_path, capsys)
    assert code == 0 and report["cells"][0]["status"] == "pass", err


def test_a_hand_edited_record_with_a_bad_count_is_one_line(tmp_path, monkeypatch, capsys):
    """Hand edits are one line naming tuned.json, whatever they break."""
    record = _tuned(tmp_path, monkeypatch, "channel_shuffle", "gather")
    data = json.loads(record.read_text())
    session = data["session"]
    edits = [
        ("threads", "two", "threads must be a positive integer"),
        ("threads", 10**6, "threads: 1000000 threads is more than"),
        ("batch", 0, "batch must be a positive integer"),
        ("ep", "tpu", "unknown execution provider 'tpu'"),
        ("session", {**session, "opt_level": "turbo"}, "optimisation level 'turbo'"),
        ("session", {**session, "session_options": {"no_such": 3}}, "no attribute 'no_such'"),
        ("session", {**session, "session_config": "spin"}, "is not a tuned session"),
    ]
    for key, value, says in edits:
        record.write_text(json.dumps({**data, key: value}))
        code, _, err = _validate(record, tmp_path, capsys)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"{record}: " in err and says in err, err


def test_with_one_round_nothing_wins_and_the_report_says_why(tmp_path, monkeypatch, capsys):
    quick = [a if a != "2" else "1" for a in QUICK]  # --rounds 1
    shutil.copytree(GRAPHS / "channel_shuffle", tmp_path / "channel_shuffle")
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")

    _fast_candidates(monkeypatch, "gather")
    report = tmp_path / "t.json"
    argv = ["tune", str(tmp_path / "channel_shuffle"), *quick, "--rewrites", "shuffle_gather"]
    assert main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["decision"].startswith("the default stays")
    assert any("1 round measures no spread" in n for n in data["notes"])


def test_the_tuned_pair_and_the_reports_are_written_in_one_locked_write(
    tmp_path, monkeypatch, capsys
):
    """One write_files call (folder locks, signals held off): an interrupt or a second tune into
    the same --out cannot leave one run's tuned.json beside another's model."""
    from onnxconv import report as report_module
    from onnxconv.cli import tune_cmd

    calls = []

    def recording(files):
        calls.append(sorted(Path(p).name for p in files))
        return report_module.write_files(files)

    monkeypatch.setattr(tune_cmd, "write_files", recording)
    extra = ["--out", str(tmp_path / "out"), "--json", str(tmp_path / "t.json")]
    record = _tuned(tmp_path, monkeypatch, "channel_shuffle", "gather", *extra)
    assert calls == [["model.tuned.onnx", "t.json", "tuned.json"]]
    assert record.parent.name == "channel_shuffle" and not record.exists()  # went to --out
    data = json.loads((tmp_path / "out" / "tuned.json").read_text())
    model = (tmp_path / "out" / "model.tuned.onnx").read_bytes()
    assert data["sha256"] == hashlib.sha256(model).hexdigest()


def test_a_timing_held_up_on_most_calls_is_pointed_out(tmp_path, monkeypatch, capsys):
    """PyTorch once ran at p50 296 ms against a fastest call of 0.56 ms: torch/ORT read 3008."""
    shutil.copytree(GRAPHS / "channel_shuffle", tmp_path / "channel_shuffle")
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")
    held_up = [[560_000, 296_000_000, 296_000_000]]  # ns: one fast call, the rest 500x slower
    _fast_candidates(monkeypatch, "gather", blocks_ns=held_up)
    report = tmp_path / "t.json"
    argv = ["tune", str(tmp_path / "channel_shuffle"), *QUICK, "--rewrites", "shuffle_gather"]
    assert main([*argv, "--json", str(report)]) == 0
    notes = json.loads(report.read_text())["notes"]
    assert any("1 timing(s) had a p50 more than 10x their fastest call" in n for n in notes)


def test_a_stored_input_of_the_wrong_shape_names_the_users_file_not_a_candidates(tmp_path, capsys):
    from onnx import numpy_helper

    folder = tmp_path / "grouped"
    shutil.copytree(GRAPHS / "grouped", folder)
    wrong = numpy_helper.from_array(np.zeros((1, 64, 5, 5), np.float32), "input")
    (folder / "test_data_set_0" / "input_0.pb").write_bytes(wrong.SerializeToString())
    assert main(["tune", str(folder), *QUICK, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"({folder / 'model.onnx'}): input 'input' expected shape" in err, err
    assert "original.onnx" not in err and not (tmp_path / "t").exists()


def test_a_bit_identical_permutation_is_proven_where_the_outputs_are_too_small_to_judge(
    tmp_path, monkeypatch, capsys
):
    """The channel shuffle scaled by 1e-9: within tolerance of zero, so validate's pass would
    prove nothing (insensitive), but the Gather's outputs are the original's bit for bit."""
    from onnx import helper, numpy_helper

    model = onnx.load(GRAPHS / "channel_shuffle" / "model.onnx")
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{o}_unscaled" if o == out else o for o in node.output]
    scale = numpy_helper.from_array(np.array(1e-9, np.float32), "tiny")
    model.graph.initializer.append(scale)
    model.graph.node.append(helper.make_node("Mul", [f"{out}_unscaled", "tiny"], [out]))
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)

    _fast_candidates(monkeypatch, "gather")
    report = tmp_path / "t.json"
    argv = ["tune", str(path), *QUICK, "--rewrites", "shuffle_gather", "--out", str(tmp_path / "o")]
    assert main([*argv, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    gather = next(c for c in data["candidates"] if c["name"].startswith("shuffle_gather"))
    assert gather["proof"]["kind"] == "insensitive" and gather["proof"]["bit_identical"]
    assert gather["proof"]["disqualified"] is None
    assert data["decision"].startswith("shuffle_gather @ level=all")
    assert data["decision"].endswith(
        "proven bit for bit against the original (its sources are "
        "insensitive: no tolerance could tell it from a wrong graph)"
    )
    table = capsys.readouterr().out
    assert "pass bit for bit (sources insensitive)" in table
    # Checked again where it ships, the same way: bit for bit against the original.
    code, again, err = _validate(tmp_path / "o", tmp_path, capsys)
    assert code == 0 and again["cells"][0]["status"] == "pass", err
    assert again["cells"][0]["reason"].startswith("bit for bit the original's outputs on CPU")
    # A wrong permutation there was only "WARN insensitive", exit 0: the record requires bit
    # for bit, which it is not, so it fails as tune would have disqualified it.
    _rewrite(tmp_path / "o" / "tuned.json", lambda m: _swap_first_two(m, "Gather"))
    code, again, err = _validate(tmp_path / "o", tmp_path, capsys)
    (cell,) = again["cells"]
    assert code == 1 and (cell["status"], cell["kind"]) == ("fail", "export"), err
    assert cell["reason"].startswith("not bit for bit the original's outputs on CPU (largest ")
    assert "which tune proved and the record requires; output" in cell["reason"]


def test_a_record_proven_by_pytorch_builds_its_module_again_or_says_nothing_names_it(
    tmp_path, monkeypatch, capsys
):
    """tune of a bare graph decided by --module records the module: validate of its tuned.json
    builds it again and PyTorch judges, as in tune; with --no-module the note says that the
    original graph's own outputs judged instead (they did so quietly before)."""
    assert main(["export", "--module", "user_modules:ConvBN", "--input", "1,3,8,8",
                 "--out", str(tmp_path / "e"), "--quiet"]) == 0  # fmt: skip
    bare = tmp_path / "bare.onnx"
    shutil.copy(tmp_path / "e" / "ConvBN" / "model.onnx", bare)
    _fast_candidates(monkeypatch, "nothing is faster")
    out = tmp_path / "t"
    argv = ["tune", str(bare), "--module", "user_modules:ConvBN", "--out", str(out), *QUICK]
    assert main(argv) == 0
    data = json.loads((out / "tuned.json").read_text())
    assert data["proof"]["deciders"] == ["torch"]
    assert data["original"]["module"]["path"] == "user_modules:ConvBN"
    code, report, _ = _validate(out, tmp_path, capsys)
    assert code == 0
    assert "torch" in report["cells"][0]["deciders"]
    assert not [n for n in report["subjects"][0]["notes"] if "nothing names here" in n]
    report_path = tmp_path / "again.json"
    args = ["validate", str(out), "--no-module", "--quiet"]
    assert main([*args, "--json", str(report_path)]) == 0
    again = json.loads(report_path.read_text())
    (note,) = [n for n in again["subjects"][0]["notes"] if "PyTorch module" in n]
    assert note.startswith("tune proved this deployment against a PyTorch module, which nothing")


def test_changed_external_weights_of_the_original_are_a_changed_original(
    tmp_path, monkeypatch, capsys
):
    """The original's weights in model.onnx.data are part of what tune proved against."""
    model = onnx.load(GRAPHS / "channel_shuffle" / "model.onnx")
    weights = numpy_helper.from_array(np.ones((1, 64, 1, 1), np.float32), "scale")
    model.graph.initializer.append(weights)
    scaled = onnx.helper.make_node("Mul", [model.graph.node[-1].output[0], "scale"], ["scaled"])
    model.graph.node.append(scaled)
    model.graph.output[0].name = "scaled"
    path = tmp_path / "g" / "model.onnx"
    path.parent.mkdir()
    onnx.save(model, path, save_as_external_data=True, size_threshold=128, location="w.data")
    _fast_candidates(monkeypatch, "gather")
    out = tmp_path / "t"
    assert main(["tune", str(path), "--rewrites", "shuffle_gather", "--out", str(out), *QUICK]) == 0
    assert _validate(out, tmp_path, capsys)[0] == 0
    data = (tmp_path / "g" / "w.data").read_bytes()
    (tmp_path / "g" / "w.data").write_bytes(data[:-4] + np.float32(-1).tobytes())
    code, _, err = _validate(out, tmp_path, capsys)
    assert code == 2 and "changed since tune proved against it" in err, err


def test_tune_of_a_graph_from_other_weights_says_so(tmp_path, capsys):
    """--module-seed 0 beside a graph exported after seed 1: tune refused it as an export
    defect without validate's hint that the graph has other weights."""
    assert main(["export", "--module", "user_modules:ConvBN", "--input", "1,3,8,8",
                 "--module-seed", "1", "--out", str(tmp_path / "e"), "--quiet"]) == 0  # fmt: skip
    bare = tmp_path / "bare.onnx"
    shutil.copy(tmp_path / "e" / "ConvBN" / "model.onnx", bare)
    capsys.readouterr()
    argv = ["tune", str(bare), "--module", "user_modules:ConvBN", "--out", str(tmp_path / "t")]
    assert main([*argv, *QUICK]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fails validate on cpu: validate: fail export" in err[0]
    assert "another seed: --module-seed" in err[0]


def test_bench_counts_a_tuned_graphs_useful_work_not_the_zeros_it_multiplies(
    tmp_path, monkeypatch, capsys
):
    """grouped_merge doubles a grouped Conv's multiply-adds with zeros: the tuned cell's macs
    (and so its GFLOP/s) are its original's, the function both compute."""
    from onnxconv import machine

    monkeypatch.setattr(machine, "nchwc_block", lambda: 16)  # the merge applies on any CPU
    record = _tuned(tmp_path, monkeypatch, "grouped", "merge", "--rewrites", "grouped_merge")
    assert json.loads(record.read_text())["rewrites"] == ["grouped_merge"]
    out = tmp_path / "bench"
    args = ["bench", str(tmp_path / "grouped"), str(record), "--rounds", "1", "--blocks", "1"]
    assert main([*args, "--calls", "3", "--quiet", "--no-roofs", "--out", str(out)]) == 0
    cells = json.loads((out / "bench.json").read_text())["cells"]
    macs = {c["label"]: c["macs"] for c in cells if c["backend"] == "ort"}
    assert macs["grouped.tuned"] == macs["grouped"] > 0


def test_a_dynamic_original_is_benched_at_the_batch_its_tuned_folder_was_tuned_at(
    tmp_path, monkeypatch, capsys
):
    """tune --batch 2 of a dynamic-batch graph, then bench of the graph and its tuned folder
    without --batch: both at batch 2, so the tuned cell pairs with its original's (the original
    ran at batch 1 and no pair was made)."""
    from onnxconv.export import ExportOptions, export_variants

    export_variants(["channel_shuffle"], tmp_path / "g", ExportOptions(dynamic_batch=True))
    folder = tmp_path / "g" / "channel_shuffle"
    _fast_candidates(monkeypatch, "gather")
    out = tmp_path / "t"
    argv = ["tune", str(folder), "--batch", "2", "--rewrites", "shuffle_gather", *QUICK]
    assert main([*argv, "--out", str(out)]) == 0
    bench = tmp_path / "bench"
    args = ["bench", str(folder), str(out), "--rounds", "1", "--blocks", "1", "--calls", "3"]
    assert main([*args, "--opt-level", "all", "--quiet", "--no-roofs", "--out", str(bench)]) == 0
    cells = json.loads((bench / "bench.json").read_text())["cells"]
    assert {(c["label"], c["batch"]) for c in cells if c["backend"] == "ort"} == {
        ("channel_shuffle", 2),
        ("channel_shuffle.tuned", 2),
    }
