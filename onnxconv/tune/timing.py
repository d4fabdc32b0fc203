"""Timing candidates the way ``onnxconv bench`` times cells: every run in a fresh worker process
(:mod:`onnxconv.bench.worker`, the same warm-up, blocks of timed calls and thread pinning),
rounds alternating the default, each candidate and PyTorch eager, ratios paired by round.

The one difference from the bench harness is the order: bench times one source for all its
rounds before the next, while a tuning decision compares candidates with the default, so here
every round runs the default and every candidate (in reverse order on odd rounds, so drift
through a round hits both ends alike) and then PyTorch.

On a shared machine other processes can take the cores a run needs (a 2-thread ORT session that
spins, or PyTorch's OpenMP pool, slows down several-fold when one core is taken). Each run's CPU
pressure is read from Linux PSI (``/proc/pressure/cpu``: the share of the run in which some task
waited for a CPU); a run above ``Method.max_pressure`` is run again, up to ``Method.retries``
times, each time after waiting (up to ``Method.quiet_wait_s``) for the machine to quieten, and
the pressure and retries of the run kept are recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxconv.bench.harness import TORCH_MALLOC_ENV, run_worker, worker_env
from onnxconv.bench.pressure import cpu_pressure_since, cpu_stall, recent_pressure
from onnxconv.bench.stats import paired_ratios, summarize

from .settings import SessionSettings


@dataclass(frozen=True)
class Method:
    """How each process times: as ``onnxconv bench`` (its defaults)."""

    threads: int = 1
    rounds: int = 3
    blocks: int = 5
    calls: int = 100
    warmup: int = 10
    warmup_s: float = 0.3
    profile_calls: int = 50
    timeout_s: float = 600.0
    max_pressure: float = 0.1
    """A run in which some task waited for a CPU longer than this share of its time (Linux PSI)
    was contended by other processes: it is run again, up to ``retries`` times."""
    retries: int = 2
    quiet_wait_s: float = 60.0
    """Before a retry, wait up to this long for the CPU pressure of the last 10 s to fall below
    ``max_pressure``."""

    def timing(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "warmup_s": self.warmup_s,
            "blocks": self.blocks,
            "calls": self.calls,
        }


@dataclass(frozen=True)
class Job:
    """One ORT candidate to time: a model file under some settings."""

    key: str
    model: Path
    settings: SessionSettings


@dataclass
class Timing:
    """A candidate's timings: per-round p50s and the pooled statistics (ms)."""

    rounds_p50_ms: list[float | None] = field(default_factory=list)
    rounds_pressure: list[float | None] = field(default_factory=list)
    """CPU pressure of each round's kept run (Linux PSI ``some``: the share of its time in which
    a task waited for a CPU; None without PSI)."""
    rounds_retries: list[int] = field(default_factory=list)
    blocks_ns: list[list[int]] = field(default_factory=list)
    rounds_s: list[float] = field(default_factory=list)
    """Wall seconds of each round's run, retries included: what the time budget plans with
    (:mod:`.deadline`); not part of the report."""
    error: str | None = None
    session: dict[str, Any] = field(default_factory=dict)

    @property
    def stats(self) -> dict[str, Any] | None:
        return summarize(self.blocks_ns).to_dict() if self.blocks_ns else None

    def ratios_over(self, other: Timing) -> list[float]:
        """``other``'s p50 over this one's, round by round (> 1: this one is faster)."""
        return paired_ratios(other.rounds_p50_ms, self.rounds_p50_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds_p50_ms": self.rounds_p50_ms,
            "rounds_pressure": self.rounds_pressure,
            "rounds_retries": self.rounds_retries,
            "stats": self.stats,
            "error": self.error,
            "session": self.session,
        }


Progress = Callable[[str], None]


def ort_job(
    job: Job, ep: str, inputs: dict[str, Path], method: Method, **extra: Any
) -> dict[str, Any]:
    """The worker job of one ORT candidate (``extra``: e.g. profiling)."""
    s = job.settings
    return {
        "kind": "ort",
        "threads": method.threads,
        "model": str(job.model),
        "inputs": {k: str(v) for k, v in inputs.items()},
        "ep": ep,
        "opt_level": s.opt_level,
        "cuda_options": s.cuda_options() if ep == "cuda" else {},
        "session_config": s.session_config(),
        "session_options": s.session_options(),
        **method.timing(),
        **extra,
    }


def _wait_for_quiet(method: Method, until: float | None) -> None:
    """Sleep until PSI's 10-second average CPU pressure is below ``max_pressure`` (or the wait
    runs out, or ``until``, a ``time.monotonic()`` deadline, comes)."""
    end = time.monotonic() + method.quiet_wait_s
    if until is not None:
        end = min(end, until)
    while time.monotonic() < end:
        avg10 = recent_pressure()
        if avg10 is None or avg10 <= method.max_pressure:
            return
        time.sleep(1.0)


def _pressured_run(
    job: dict[str, Any],
    env: dict[str, str],
    method: Method,
    until: float | None,
    say: Progress | None = None,
) -> tuple[dict[str, Any], float | None, int]:
    """One worker run, again while it was contended: ``(result, pressure, retries)``. Past
    ``until`` (a ``time.monotonic()`` deadline) a contended run is kept, not retried: the
    report counts it as contended. ``say`` hears of every wait (they can add up to minutes)."""
    pressure = None
    for attempt in range(method.retries + 1):
        if attempt:
            if say:
                say(
                    f"contended ({pressure:.0%} of the run waited for a CPU): waiting up to "
                    f"{method.quiet_wait_s:g} s for quiet, then run {attempt + 1} of at most "
                    f"{method.retries + 1} (--retries 0 keeps contended runs)"
                )
            _wait_for_quiet(method, until)
        before = cpu_stall()
        result = run_worker(job, env, method.timeout_s)
        pressure = cpu_pressure_since(before)
        if pressure is None or pressure <= method.max_pressure or not result.get("ok"):
            break
        if until is not None and time.monotonic() >= until:
            break
    return result, pressure, attempt


def _record(
    timing: Timing,
    job: dict[str, Any],
    env: dict[str, str],
    method: Method,
    until: float | None,
    say: Progress | None = None,
) -> None:
    """Run ``job`` (again while contended, until ``until``) and add the run to ``timing``."""
    started = time.monotonic()
    result, pressure, retries = _pressured_run(job, env, method, until, say)
    timing.rounds_s.append(time.monotonic() - started)
    timing.rounds_pressure.append(pressure)
    timing.rounds_retries.append(retries)
    if result.get("ok"):
        timing.blocks_ns.extend(result["blocks_ns"])
        timing.rounds_p50_ms.append(summarize(result["blocks_ns"]).p50_ms)
        timing.session = {
            k: result[k]
            for k in ("providers", "session_options", "cuda_options", "io_binding")
            if k in result
        }
    else:
        timing.rounds_p50_ms.append(None)
        timing.error = timing.error or str(result.get("error"))


def time_rounds(
    jobs: list[Job],
    ep: str,
    inputs: dict[str, Path],
    method: Method,
    torch_job: dict[str, Any] | None = None,
    progress: Progress | None = None,
    until: float | None = None,
) -> tuple[dict[str, Timing], Timing | None]:
    """Time ``jobs`` (the default first) and PyTorch (``torch_job``: variant, config, seed and
    input, or the user's module recipe and inputs; see the bench worker) for ``method.rounds``
    rounds; ``({key: Timing}, torch Timing or None)``. ``until``: the time budget's deadline
    (``time.monotonic()``), past which contended runs are kept rather than retried."""
    env = worker_env(method.threads)
    torch_env = worker_env(method.threads, TORCH_MALLOC_ENV)
    timings = {job.key: Timing() for job in jobs}
    torch = Timing() if torch_job is not None else None
    for r in range(method.rounds):
        for job in jobs if r % 2 == 0 else jobs[::-1]:
            if progress:
                progress(f"{job.key} round {r + 1}/{method.rounds}")
            _record(
                timings[job.key], ort_job(job, ep, inputs, method), env, method, until, progress
            )
        if torch_job is not None and torch is not None:
            if progress:
                progress(f"pytorch round {r + 1}/{method.rounds}")
            job = {
                "kind": "torch",
                "threads": method.threads,
                "device": "cuda" if ep == "cuda" else "cpu",
                "compile": False,
                "tf32": False,
                **torch_job,
                **method.timing(),
            }
            _record(torch, job, torch_env, method, until, progress)
    return timings, torch


def profile(
    job: Job, ep: str, inputs: dict[str, Path], method: Method, work: Path
) -> dict[str, Any] | None:
    """ORT's per-op profile of one candidate from a separate (untimed) worker, as bench's."""
    result = run_worker(
        ort_job(
            job,
            ep,
            inputs,
            method,
            profile=True,
            profile_prefix=str(work / "profile"),
            blocks=1,
            calls=method.profile_calls,
        ),
        worker_env(method.threads),
        method.timeout_s,
    )
    return result.get("profile") if result.get("ok") else None


def node_times(
    job: Job, ep: str, inputs: dict[str, Path], method: Method, calls: int = 30
) -> dict[str, Any] | None:
    """Every node of one candidate's graph timed alone on ``ep``, in a separate worker, as
    ``onnxconv bench --per-node`` times them (:mod:`onnxconv.bench.node_times`); None when the
    worker failed."""
    nodes_job = ort_job(job, ep, inputs, method, kind="nodes", warmup=5, calls=calls)
    nodes_job["cuda_options"].pop("enable_cuda_graph", None)  # one launch: nothing to replay
    result = run_worker(nodes_job, worker_env(method.threads), method.timeout_s)
    return result.get("per_node") if result.get("ok") else None


def roofs(ep: str, method: Method) -> dict[str, Any] | None:
    """The roofs of the device ``ep`` runs on (the GPU's for CUDA), measured in a separate worker
    as ``onnxconv bench`` measures them (:mod:`onnxconv.bench.roofs`); None when it failed."""
    job = {"kind": "roofs", "threads": method.threads, "device": "cuda" if ep == "cuda" else "cpu"}
    result = run_worker(job, worker_env(method.threads, TORCH_MALLOC_ENV), method.timeout_s)
    return result.get("roofs") if result.get("ok") else None
