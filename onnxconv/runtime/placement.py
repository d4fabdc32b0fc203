"""Which EP ran which node, read from an ONNX Runtime profile."""

from __future__ import annotations

import json
import os
from pathlib import Path

from onnxconv.bench.stats import node_kernel_events
from onnxconv.errors import UserInputError
from onnxconv.errors import one_line as _one_line

from .eps import short_name


def node_placement(session_profile_json_path: str | os.PathLike) -> dict[str, list[str]]:
    """Which EP ran which node, read from ORT's profile: ``{"cpu": [node names...], ...}``.

    Node events (``cat == "Node"``, name ``<node>_kernel_time``) carry ``args.provider``. Names
    are those of the *optimised* graph (fused nodes keep the first node's name), each listed
    once in order of first execution; counts are ``len()`` of each list. Empty if the session
    never ran.
    """
    path = Path(session_profile_json_path)
    try:
        events = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserInputError(f"{path}: no such profile file") from exc
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"{path}: not an ONNX Runtime profile (JSON): {_one_line(exc)}"
        ) from exc
    if isinstance(events, dict):  # some tools wrap the list as {"traceEvents": [...]}
        events = events.get("traceEvents", [])
    if not isinstance(events, list):
        raise UserInputError(f"{path}: not an ONNX Runtime profile: expected a list of events")
    placement: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for node, args, _event in node_kernel_events(events):
        prov = args.get("provider")
        if not prov:
            continue
        ep = short_name(prov)
        if (ep, node) in seen:
            continue
        seen.add((ep, node))
        placement.setdefault(ep, []).append(node)
    return placement
