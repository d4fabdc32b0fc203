"""The README's Python examples run as a new user runs them, in a fresh interpreter, and print
what their comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_a_readme_example_prints_what_its_comments_say(block, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    said = [
        line.split("#", 1)[1].strip()
        for line in block.splitlines()
        if line.startswith("print(") and "#" in line
    ]
    printed = done.stdout.splitlines()
    assert said and len(printed) == len(said)
    for comment, line in zip(said, printed):
        assert line.strip() and comment.startswith(line), (line, comment)


def test_a_script_beside_a_clone_named_onnxconv_imports_the_package(tmp_path):
    """The clone's default folder name is onnxconv/; a script in the folder that holds it used
    to import that folder as an empty namespace package ("module 'onnxconv' has no attribute
    'validate_module'"), because setuptools' editable install finds the package after the path
    search. scripts/_env.sh puts the checkout on sys.path."""
    (tmp_path / "onnxconv" / "notes").mkdir(parents=True)  # a folder without __init__.py
    script = "import onnxconv; print(onnxconv.validate_module.__name__)"
    (tmp_path / "mine.py").write_text(script)
    done = subprocess.run(
        [sys.executable, "mine.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "validate_module"
