"""Shared pieces of every report: the environment record and atomic file writes."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from . import machine


def environment() -> dict[str, Any]:
    """When, where and with what: machine, library versions, the env vars that matter."""
    return {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine.machine_info(), "versions": machine.versions(),
            "env": machine.relevant_env()}


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` whole or not at all (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
