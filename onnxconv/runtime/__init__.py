"""ONNX Runtime sessions per target, with proof of which execution provider (EP) ran.

A :class:`Target` names where and how a model runs: ``ep`` (``cpu``, ``cuda`` or any other EP
ONNX Runtime knows, by short name), ``opt_level`` (``disabled``, ``basic``, ``extended``,
``all``) and ``precision`` (:data:`onnxconv.precisions.NAMES`). Its ``id`` reads ``cpu/all/fp32``.

EP truth (what ONNX Runtime 1.32 actually does, checked on the CPU build)
-------------------------------------------------------------------------
- Asking for an EP the build does not include (``providers=["CUDAExecutionProvider"]`` on the
  CPU-only ``onnxruntime`` wheel) only *warns* and silently builds a CPU session. Listing an EP
  proves nothing; :func:`make_session` therefore checks availability first and afterwards that
  ``session.get_providers()[0]`` is the requested EP.
- If the EP is listed but cannot be created (``onnxruntime-gpu`` without the CUDA/cuDNN
  libraries, or no GPU), ORT only *logs* the load error and again falls back to CPU. The
  Python wrapper additionally retries with ``["CPUExecutionProvider"]`` after an EP error and
  prints to stdout; we pass ``enable_fallback=0`` so the original error is raised instead.
- ``session.disable_cpu_ep_fallback = "1"`` makes session creation fail when any node would be
  assigned to the CPU EP: "This session contains graph nodes that are assigned to the default
  CPU EP, but fallback to CPU EP has been explicitly disabled by the user."
- With that option set, the CPU EP must **not** be listed in ``providers``: ORT refuses with
  INVALID_ARGUMENT "Conflicting session configuration: explicitly added the CPU EP to the
  session, but also disabled fallback to the CPU EP". So a strict target uses
  ``providers=[ep]`` only (ORT adds CPU implicitly, and the option forbids it from receiving
  nodes). For ``cpu`` itself the option cannot be used at all.
- Consequence: on CUDA, ORT deliberately places shape-computing subgraphs (``Shape`` ->
  ``Gather`` -> ``Concat`` feeding ``Reshape``) on CPU; a strict session then fails. Such a model
  is reported as :class:`EpUnavailable` ("cannot run every node"), never as passing on CUDA.
  ``make_session(..., allow_cpu_fallback=True)`` builds ``[ep, CPU]`` without the option; then
  :func:`node_placement` on the profile says which nodes ran where.
- ``get_providers()`` alone is not proof that anything ran on the EP: with CPU listed, the CPU
  build's ``AzureExecutionProvider`` is reported first although it takes no Conv/Relu node at
  all; only the profile shows every node on CPU. Strict sessions (the default) rule this out.

CUDA provider options (defaults, override with ``cuda_options``)
-----------------------------------------------------------------
- ``use_tf32 = "0"``: TF32 keeps a 10-bit mantissa; with it on, fp32 convs on Ampere+ differ from
  the fp32 reference by ~1e-3 relative, which would hide real fp32 defects.
- ``cudnn_conv_algo_search = "EXHAUSTIVE"``: ORT's own default. cuDNN benchmarks every
  algorithm once per shape (slower first run) and the fastest is then used for every run, so
  parity checks the same kernels the benchmark times. ``"HEURISTIC"`` starts faster.
- ``device_id = "0"``.

Precision
---------
A session runs the graph it is given: ``target.precision`` names what that graph *is*, and
:func:`onnxconv.precisions.deploy` makes it (fp16 by a converter, int8 by a quantizer). So that
no fp32 graph is ever reported as an fp16 or int8 deployment, :func:`make_session` checks the
precision ``deploy`` stamped into the model against the target's. ``fp32`` means the graph as
given: a graph that is float16 already (a user's, or a mutant) runs there as it is.

Intermediate tensors
--------------------
:func:`onnxconv.divergence.with_all_outputs` exposes every node output as a graph output. ORT
may fuse nodes away at opt levels above ``disabled`` (e.g. Conv+Relu -> FusedConv); a tensor
that is a graph output must
be materialised, so exposing outputs *prevents* those fusions. ``first_divergence`` therefore
localises defects of the unfused computation; a defect that lives only in a fused kernel shows
up as a mismatch of the final outputs without a divergent intermediate.

Modules
-------
    eps.py        EP names, which EPs can run here and why not, CUDA library preloading, ORT's
                  native log while probing
    sessions.py   Target, make_session, SessionInfo, session settings, loading a model
    inputs.py     TensorSpec, input_specs, output_specs, check_feeds, run
    placement.py  node_placement: which EP ran which node, from a profile
"""

from __future__ import annotations

from .eps import (
    DEFAULT_CUDA_OPTIONS,
    EpUnavailable,
    available_eps,
    default_eps,
    ep_unavailable_reason,
    preload_cuda_libraries,
    provider_name,
    set_ort_log_severity,
    short_name,
)
from .inputs import TensorSpec, check_feeds, input_specs, output_specs, run
from .placement import node_placement
from .sessions import (
    OPT_LEVELS,
    ModelSource,
    SessionInfo,
    Target,
    apply_session_settings,
    check_loads_from_file,
    check_opt_level,
    load_model_proto,
    make_session,
)

__all__ = [
    "check_loads_from_file",
    "check_opt_level",
    "DEFAULT_CUDA_OPTIONS",
    "OPT_LEVELS",
    "EpUnavailable",
    "ModelSource",
    "SessionInfo",
    "Target",
    "TensorSpec",
    "apply_session_settings",
    "available_eps",
    "check_feeds",
    "default_eps",
    "ep_unavailable_reason",
    "input_specs",
    "output_specs",
    "load_model_proto",
    "make_session",
    "node_placement",
    "preload_cuda_libraries",
    "provider_name",
    "run",
    "set_ort_log_severity",
    "short_name",
]
