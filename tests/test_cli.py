"""The command line: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onnxconv import variants
from onnxconv.cli import main


def test_list_table_names_every_variant(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in variants.names():
        assert name in out
    assert "137.46M" in out  # ShuffleNet 1x g=3


def test_list_json_is_machine_readable(capsys):
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == variants.names()
    shufflenet = next(e for e in entries if e["name"] == "shufflenet")
    assert shufflenet["input_shape"] == [1, 3, 224, 224]
    assert shufflenet["macs"] == 137460672


def test_console_script_runs_as_module():
    result = subprocess.run(
        [sys.executable, "-m", "onnxconv", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout)


def test_usage_error_exits_2():
    result = subprocess.run(
        [sys.executable, "-m", "onnxconv", "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode == 2


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_usage_errors_are_one_line_naming_the_argument(capsys):
    for argv in (["frobnicate"], ["validate", "--opt-level"], ["bench", "--threads", "x"]):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 2
        assert "error:" in one_line_error(capsys)


def test_zero_and_negative_sizes_are_refused_everywhere_exit_2(capsys, tmp_path):
    for argv in (
        ["validate", "graphs/standard", "--batch", "0"],
        ["inspect", "graphs/standard", "--batch", "0"],
        ["bench", "standard", "--batch", "-1"],
        ["bench", "standard", "--batch", "0"],
        ["bench", "standard", "--threads", "0"],
        ["bench", "standard", "--calls", "0"],
        ["validate", "standard", "--threads", "-1"],
        ["tune", "standard", "--threads", "0"],
        ["tune", "standard", "--rounds", "0"],
        ["tune", "standard", "--batch", "0"],
    ):
        try:
            main(argv)
        except SystemExit as exit:
            assert exit.code == 2
        assert "must be a positive integer" in one_line_error(capsys), argv
    out = tmp_path / "g"
    assert main(["export", "--variant", "standard", "--config", "batch=0", "--out", str(out)]) == 2
    assert "batch=0 must be a positive integer" in one_line_error(capsys)
    assert not out.exists()


def test_thread_counts_beyond_the_machine_are_refused_before_any_session(capsys):
    """--threads 100000 once started ~40,000 threads and stalled a 2-core host."""
    from onnxconv.machine import max_threads

    for command in ("validate", "bench", "tune"):
        try:
            main([command, "standard", "--threads", str(max_threads() + 1)])
        except SystemExit as exit:
            assert exit.code == 2
        assert f"at most {max_threads()}" in one_line_error(capsys), command


def test_an_extra_argument_is_refused_by_the_command_it_was_given_to(capsys):
    """It read "onnxconv: error: ... (see onnxconv --help)", naming no command."""
    for argv, extra in ((["tune", "grouped", "depthwise"], "depthwise"), (["list", "-x"], "-x")):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
        assert one_line_error(capsys) == (
            f"onnxconv {argv[0]}: error: unrecognized arguments: {extra} "
            f"(see onnxconv {argv[0]} --help)"
        )


def test_inspect_takes_a_variant_name_as_validate_bench_and_tune_do(capsys, tmp_path):
    assert main(["inspect", "shuffle_unit", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(
        Path("graphs/shuffle_unit/model.onnx")
    )
    assert main(["inspect", "shufle_unit"]) == 2
    assert one_line_error(capsys).endswith("no such file or folder (did you mean 'shuffle_unit'?)")
    assert main(["inspect", "grouped", "--graphs", str(tmp_path)]) == 2
    assert f"onnxconv export --variant grouped --out {tmp_path} writes it" in one_line_error(capsys)


def test_near_misses_get_a_suggestion(capsys):
    assert main(["validate", "shufle_unit"]) == 2
    assert "did you mean 'shuffle_unit'?" in one_line_error(capsys)
    assert main(["bench", "grouped_conv", "--quiet"]) == 2
    assert "did you mean 'grouped'?" in one_line_error(capsys)
    for argv, near in (
        (["validate", "grouped", "--ep", "cdua"], "cuda"),
        (["validate", "grouped", "--opt-level", "al"], "all"),
        (["validate", "grouped", "--precision", "fp61"], "fp16"),
        (["bench", "grouped", "--ep", "cdua"], "cuda"),
        (["bench", "grouped", "--config", "grups=4"], "groups"),
        (
            ["export", "--variant", "grouped", "--config", "grups=4", "--out", "/nonexistent"],
            "groups",
        ),
        (["tune", "grouped", "--rewrites", "shuffle_gater"], "shuffle_gather"),
    ):
        assert main([*argv, "--quiet"]) == 2, argv
        assert f"(did you mean {near!r}?)" in one_line_error(capsys), argv


def test_debug_works_after_the_command_too(capsys):
    assert main(["inspect", "no/such.onnx"]) == 2
    one_line_error(capsys)
    for argv in (["--debug", "inspect", "no/such.onnx"], ["inspect", "no/such.onnx", "--debug"]):
        try:
            main(argv)
            raise AssertionError("--debug should re-raise")
        except Exception as error:  # the traceback a --debug user asked for
            assert "no such file" in str(error)


def test_inspect_a_folder_without_model_onnx_says_so(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "no model.onnx in this folder" in one_line_error(capsys)


def test_inspect_groups_repeated_lint_findings(capsys):
    from onnxconv.cli.export_cmds import lint_lines
    from onnxconv.graph.checks import LintFinding

    findings = [LintFinding("rank5-tensor", "info", f"n{i}", "rank 5") for i in range(32)]
    lines = lint_lines(findings)
    assert len(lines) == 4  # two shown, the other 30 counted, a summary
    assert lines[2].startswith("lint: ... 30 more rank5-tensor at n2, n3")
    assert lines[3] == "lint summary: 32 finding(s): 32 info rank5-tensor"


def test_list_name_shows_the_config_keys(capsys):
    assert main(["list", "shuffle_unit"]) == 0
    out = capsys.readouterr().out
    assert "config keys" in out and "shuffle_rank" in out and "first_grouped" in out
    assert main(["list"]) == 0
    assert "family" not in capsys.readouterr().out.splitlines()[0]  # no column equal to name


def test_export_names_a_non_default_config(tmp_path, capsys):
    argv = ["export", "--variant", "shuffle_unit", "--shuffle-rank", "4", "--quiet"]
    assert main(argv + ["--out", str(tmp_path)]) == 0
    assert "config shuffle_rank=4" in capsys.readouterr().out


def test_export_without_out_never_rewrites_a_committed_graph_with_other_settings(capsys):
    """The README's `export --variant shuffle_unit --shuffle-rank 4` overwrote the committed
    graph and manifest of this checkout (a note said so afterwards); a module export added its
    entry to the committed manifest. Both are refused in one line before anything is written."""
    from onnxconv.export_layout import file_sha256

    committed = Path(__file__).resolve().parent.parent / "graphs"
    before = {p: file_sha256(p) for p in committed.rglob("*") if p.is_file()}
    argv = ["export", "--variant", "shuffle_unit", "--shuffle-rank", "4", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graphs: this checkout's committed graphs" in err[0], err
    assert "shuffle_unit with another config or option than committed" in err[0]
    assert main(["export", "--variant", "grouped", "--exporter", "torchscript", "--quiet"]) == 2
    # a variant that is not committed (a whole network), and --all, which holds them
    assert main(["export", "--variant", "shufflenet", "--quiet"]) == 2
    assert "shufflenet is not one of its committed variants" in capsys.readouterr().err
    assert main(["export", "--all", "--quiet"]) == 2
    argv = ["export", "--module", "user_modules:shuffled", "--input", "1,8,4,4", "--quiet"]
    assert main(argv) == 2
    assert "name --out DIR" in capsys.readouterr().err
    # an empty --out is no folder (it fell back to graphs/, or wrote into the current one)
    assert main(["export", "--variant", "standard", "--out", "", "--quiet"]) == 2
    assert main([*argv, "--out", ""]) == 2
    assert capsys.readouterr().err.count("--out: an empty path") == 2
    assert {p: file_sha256(p) for p in committed.rglob("*") if p.is_file()} == before


def test_validate_prints_each_subject_note_once_naming_its_graphs():
    from onnxconv.cli.validate_cmds import subject_note_lines

    shared, own = "torchvision's compiled ops did not load", "fp16: 4 weight extremes moved"
    subjects = [{"label": "a", "notes": [shared, own]}, {"label": "b", "notes": [shared]}]
    assert subject_note_lines(subjects) == [f"note: a, b: {shared}", f"note: a: {own}"]
    assert subject_note_lines(subjects[1:]) == [f"note: {shared}"]  # one graph: no names
    assert subject_note_lines([]) == []


def test_a_truncated_model_is_one_line_saying_it_may_be_truncated(tmp_path, capsys):
    whole = Path("graphs/standard/model.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(whole[: len(whole) // 2])
    for command in ("inspect", "validate", "bench", "tune"):
        assert (
            main([command, str(cut), "--quiet"] if command != "inspect" else [command, str(cut)])
            == 2
        )
        assert f"{cut}: not an ONNX model, or a truncated or corrupt one" in one_line_error(capsys)


def test_a_model_cut_just_before_its_opset_list_is_one_line_everywhere(tmp_path, capsys):
    """The opset_import entries end the file: a cut there still parses, as a graph of nodes in
    a domain no opset declares (inspect printed an empty opset and exited 0)."""
    import onnx

    whole = Path("graphs/standard/model.onnx").read_bytes()
    model = onnx.load_from_string(whole)
    opsets = b"".join(
        onnx.ModelProto(opset_import=[o]).SerializeToString() for o in model.opset_import
    )
    assert whole.endswith(opsets)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(whole[: -len(opsets)])
    for command in ("inspect", "validate", "bench", "tune"):
        argv = [command, str(cut)] + ([] if command == "inspect" else ["--quiet"])
        assert main(argv) == 2, command
        assert f"{cut}: no opset for the default ONNX domain" in one_line_error(capsys)


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`onnxconv inspect ... | head`: the pipe closes before the output is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxconv", "inspect", "graphs/grouped"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports it
    assert err == ""


def test_a_report_path_that_is_a_folder_is_refused_before_the_run_and_nothing_written(
    capsys, tmp_path
):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    report = tmp_path / "v.json"
    argv = ["validate", "channel_shuffle", "--opt-level", "all", "--precision", "fp32"]
    assert main([*argv, "--json", str(report), "--markdown", str(tmp_path / "folder")]) == 2
    assert "folder: is a folder; name a file to write" in one_line_error(capsys)
    assert not report.exists()
    assert main(["bench", "channel_shuffle", "--out", str(tmp_path / "file")]) == 2
    assert "file: exists and is not a folder" in one_line_error(capsys)
    assert main([*argv, "--json", str(tmp_path / "file" / "v.json")]) == 2
    assert f"{tmp_path / 'file'} is a file, not a folder" in one_line_error(capsys)


def test_module_options_go_with_a_module_and_a_seed_is_a_seed(capsys):
    """--module-seed without --module was ignored (the manifest recorded seed 0), and a seed
    past 2**63 crashed in torch with a traceback."""
    assert main(["export", "--variant", "standard", "--module-seed", "3", "--out", "x"]) == 2
    assert "--module-seed go with --module" in capsys.readouterr().err
    assert main(["validate", "grouped", "--module-seed", "3", "--quiet"]) == 2
    assert "--module-seed goes with --module" in capsys.readouterr().err
    assert main(["validate", "grouped", "--module-args", "a=1", "--quiet"]) == 2
    assert "--module-args goes with --module" in capsys.readouterr().err
    argv = ["export", "--module", "user_modules:ConvBN", "--input", "1,3,8,8", "--out", "x"]
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal
        main([*argv, "--module-seed", str(2**64)])
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a seed (an integer 0 to 2**63-1)" in err[0], err
