"""Session-setting candidates per execution provider.

A :class:`SessionSettings` is everything about an ONNX Runtime session that is not the graph:
the optimisation level, session config entries (``session.intra_op.allow_spinning``),
``SessionOptions`` attributes (``enable_cpu_mem_arena``) and CUDA provider options. The thread
count is not a candidate: it is what the user deploys with and stays as given.

CPU candidates: level ``all`` (NCHWc layout, ORT's default) or ``extended``, spinning on (ORT's
default) or off, the CPU memory arena on (default) or off — 8, the first being the default.

CUDA candidates (written for the GPU session; not run on a CPU-only machine):
``cudnn_conv_algo_search`` EXHAUSTIVE (ORT's default) / HEURISTIC / DEFAULT × ``prefer_nhwc``
0 / 1, then CUDA graphs (``enable_cuda_graph``, timed with IO binding) and
``cudnn_conv_use_max_workspace`` 0 (ORT's default is 1) on the best of those. CUDA graphs need
every node on CUDA and fixed shapes; :func:`cuda_graph_blocker` says when a graph cannot have
them. TF32 stays off everywhere: it changes fp32 numerics, and the proof would (rightly) reject
it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import onnx

from onnxconv.runtime import (
    DEFAULT_CUDA_OPTIONS,
    check_opt_level,
    input_specs,
    output_specs,
)

SPINNING = "session.intra_op.allow_spinning"


@dataclass(frozen=True)
class SessionSettings:
    """One way to build the session. ``config``: session config entries; ``options``:
    ``SessionOptions`` attributes; ``cuda``: CUDA provider options over the defaults."""

    opt_level: str = "all"
    config: tuple[tuple[str, str], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    cuda: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check_opt_level(self.opt_level)

    @property
    def name(self) -> str:
        """``level=all`` plus every non-default entry, e.g. ``level=extended,spinning=0``."""
        parts = [f"level={self.opt_level}"]
        parts += [f"{_short(k)}={v}" for k, v in self.config]
        parts += [f"{_short(k)}={_plain(v)}" for k, v in self.options]
        parts += [f"{_short(k)}={v}" for k, v in self.cuda]
        return ",".join(parts)

    @property
    def cuda_graph(self) -> bool:
        return dict(self.cuda).get("enable_cuda_graph") == "1"

    def session_config(self) -> dict[str, str]:
        return dict(self.config)

    def session_options(self) -> dict[str, Any]:
        return dict(self.options)

    def cuda_options(self) -> dict[str, str]:
        """The CUDA provider options of the session (defaults, then these)."""
        return {**DEFAULT_CUDA_OPTIONS, **dict(self.cuda)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "opt_level": self.opt_level,
            "session_config": self.session_config(),
            "session_options": self.session_options(),
            "cuda_options": dict(self.cuda),
        }


_SHORT = {
    SPINNING: "spinning",
    "enable_cpu_mem_arena": "arena",
    "cudnn_conv_algo_search": "algo",
    "prefer_nhwc": "nhwc",
    "cudnn_conv_use_max_workspace": "max_workspace",
    "enable_cuda_graph": "cuda_graph",
}


def _short(key: str) -> str:
    return _SHORT.get(key, key)


def _plain(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


DEFAULT = SessionSettings()
"""What ``make_session`` and ``onnxconv bench`` use: level ``all``, ORT's defaults otherwise."""


def cpu_candidates() -> list[SessionSettings]:
    """Level × spinning × arena; the default first."""
    found = []
    for level, spin, arena in itertools.product(("all", "extended"), ("1", "0"), (True, False)):
        found.append(
            SessionSettings(
                opt_level=level,
                config=() if spin == "1" else ((SPINNING, "0"),),
                options=() if arena else (("enable_cpu_mem_arena", False),),
            )
        )
    return found


#: The first CUDA pass, ``(cudnn_conv_algo_search, prefer_nhwc)``: the default first, then the
#: most promising first (what an H100 measured for issue 14: HEURISTIC with NHWC 5x the default
#: on the ShuffleNet unit at batch 32, HEURISTIC 3.7x on the whole network), so a time budget
#: that cuts the pass short cuts the least likely.
CUDA_FIRST_PASS = (
    ("EXHAUSTIVE", "0"),
    ("HEURISTIC", "1"),
    ("HEURISTIC", "0"),
    ("EXHAUSTIVE", "1"),
    ("DEFAULT", "1"),
    ("DEFAULT", "0"),
)


def cuda_candidates(best_of_first: SessionSettings | None = None) -> list[SessionSettings]:
    """Without ``best_of_first``: algorithm search × NHWC (:data:`CUDA_FIRST_PASS`). With it:
    that one with CUDA graphs (first: the launches they save are what bounds a small batch),
    and with the max workspace off."""
    if best_of_first is None:
        return [
            SessionSettings(
                cuda=tuple(
                    (k, v)
                    for k, v in (("cudnn_conv_algo_search", algo), ("prefer_nhwc", nhwc))
                    if (k, v)
                    not in (("cudnn_conv_algo_search", "EXHAUSTIVE"), ("prefer_nhwc", "0"))
                )
            )
            for algo, nhwc in CUDA_FIRST_PASS
        ]
    base = best_of_first.cuda
    return [
        SessionSettings(best_of_first.opt_level, cuda=(*base, ("enable_cuda_graph", "1"))),
        SessionSettings(
            best_of_first.opt_level, cuda=(*base, ("cudnn_conv_use_max_workspace", "0"))
        ),
    ]


def passes(ep: str) -> int:
    """How many settings passes ``ep`` has: CUDA two (see :func:`cuda_candidates`), the second
    refining the first's best once; CPU and any other EP one."""
    return 2 if ep == "cuda" else 1


def candidates(ep: str, n: int, best: SessionSettings | None = None) -> list[SessionSettings]:
    """The settings to try on ``ep`` in settings pass ``n`` (1, 2, ...; see :func:`passes`),
    ``best`` being the best of the pass before; any EP but CPU and CUDA has the default only.
    Past its last pass an EP has none, so the search ends."""
    if n > passes(ep):
        return []
    if n == 1:
        if ep == "cpu":
            return cpu_candidates()
        return cuda_candidates() if ep == "cuda" else [DEFAULT]
    return cuda_candidates(best or DEFAULT)


def cuda_graph_blocker(model: onnx.ModelProto, placement: dict[str, int]) -> str | None:
    """Why CUDA graphs cannot run this graph (None when they can): every node must be on CUDA
    (``placement``: nodes per EP from the proof's profile), every input shape fixed, and every
    output shape declared and fixed (the timed run binds each output to a buffer allocated
    before the graph is captured)."""
    outside = {ep: n for ep, n in placement.items() if ep != "cuda"}
    if outside:
        return f"nodes run outside CUDA: {outside}"
    declared = [("input", s) for s in input_specs(model)]
    declared += [("output", s) for s in output_specs(model)]
    for kind, spec in declared:
        if spec.shape is None:
            return f"{kind} {spec.name!r} has no declared shape"
        if any(not isinstance(d, int) for d in spec.shape):
            return f"{kind} {spec.name!r} has a dynamic dimension"
        if kind == "output" and (spec.dtype is None or spec.dtype == object):
            return f"output {spec.name!r} is {spec.onnx_type}, which cannot be bound to a buffer"
    return None
