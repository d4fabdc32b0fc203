"""The command line: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

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
