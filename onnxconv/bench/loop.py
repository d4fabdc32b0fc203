"""The bench run itself: for every source and batch, deploy, time every cell in alternating
rounds of fresh worker processes, run the extra passes (profile, per node), then finish the
cells and the report (:class:`_Harness`). The method is :mod:`onnxconv.bench.harness`'s."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..user_model import torch_job
from .cells import BenchCell, cell_base, combine_roofs, finish_cell, pair, record_round
from .launch import run_worker, worker_env
from .pressure import cpu_pressure_since, cpu_stall
from .report import BenchReport, measurement_notes
from .settings import BenchSettings, Progress
from .sources import Prepared, Source, deploy_all, prepare


def _torch_devices(settings: BenchSettings) -> list[str]:
    devices = ["cpu"] if "cpu" in settings.eps else []
    if "cuda" in settings.eps:
        import torch

        if torch.cuda.is_available():
            devices.append("cuda")
    return devices


def run_sources(
    sources: list[Source], settings: BenchSettings, work: Path, progress: Progress | None
) -> BenchReport:
    """Bench resolved ``sources`` under checked ``settings``; ``work`` holds graphs and inputs."""
    return _Harness(sources, settings, work, progress).run()


class _Harness:
    """One bench run: the worker environments, the targets, the progress count, the report."""

    def __init__(
        self, sources: list[Source], settings: BenchSettings, work: Path, progress: Progress | None
    ) -> None:
        from ..runtime import ep_unavailable_reason

        self.sources, self.settings, self.work, self.progress = sources, settings, work, progress
        self.env = worker_env(settings.threads)
        self.torch_env = worker_env(settings.threads, settings.torch_malloc_env)
        self.ort_targets = [
            (ep, level, precision)
            for ep in settings.eps
            for precision in settings.precisions
            for level in settings.opt_levels
        ]
        self.torch_backends = ["torch"] + (["torch_compile"] if settings.compile else [])
        self.devices = _torch_devices(settings)
        eps = {*settings.eps, *(s.tuned.ep for s in sources if s.tuned)}
        self.unavailable_eps = {
            ep: reason
            for ep in eps
            if ep != "cpu" and (reason := ep_unavailable_reason(ep)) is not None
        }
        per_target = settings.rounds + settings.profile + settings.per_node
        per_variant = settings.rounds * len(self.torch_backends) * len(self.devices)
        self.total = (2 if settings.roofs else 1) + sum(
            len(self.batches_of(s))
            * (len(self.targets_of(s)) * per_target + 2 + per_variant * s.has_torch)
            for s in sources
        )
        self.done = 0
        self.roof_results: list[dict[str, Any]] = []
        self.cuda_roof_results: list[dict[str, Any]] = []

    def batches_of(self, source: Source) -> tuple[int, ...]:
        """The batches ``source`` is benched at: its own where it has one and the settings let
        it (:attr:`BenchSettings.own_batches`), else the settings'."""
        if self.settings.own_batches and source.own_batch is not None:
            return (source.own_batch,)
        return self.settings.batches

    def targets_of(self, source: Source) -> list[tuple[str, str, str]]:
        """``(ep, level, precision)`` of every ORT cell of ``source``: a tuned graph has its one."""
        t = source.tuned
        return [(t.ep, t.opt_level, t.precision)] if t else self.ort_targets

    def session_job(self, source: Source) -> dict[str, Any]:
        """The session part of an ORT worker job: the run's CUDA options, and a tuned graph's
        own settings over them."""
        t = source.tuned
        if t is None:
            return {"cuda_options": self.settings.cuda_options}
        return {
            "cuda_options": {**self.settings.cuda_options, **t.cuda_options},
            "session_config": t.session_config,
            "session_options": t.session_options,
        }

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, message)
        self.done += 1

    def worker(self, job: dict[str, Any], torch_side: bool = False) -> dict[str, Any]:
        before = cpu_stall()
        result = run_worker(
            {"threads": self.settings.threads, **job},
            self.torch_env if torch_side else self.env,
            self.settings.timeout_s,
        )
        return {**result, "cpu_pressure": cpu_pressure_since(before)}

    def measure_roofs(self, when: str) -> None:
        """The CPU's roofs, and the GPU's when CUDA cells run (what their % of roof is against)."""
        s = self.settings
        self.step(f"measuring roofs ({when})")
        if not s.roofs:
            self.roof_results.append({"ok": False, "error": "not measured (roofs=False)"})
            return
        if "cuda" in s.eps and "cuda" in self.devices:
            self.cuda_roof_results.append(
                self.worker(
                    {"kind": "roofs", "device": "cuda", "threads": 1, "repeats": s.roof_repeats},
                    torch_side=True,
                )
            )
        self.roof_results.append(
            self.worker(
                {
                    "kind": "roofs",
                    "matmul_n": s.roof_matmul_n,
                    "copy_mb": s.roof_copy_mb,
                    "repeats": s.roof_repeats,
                },
                torch_side=True,
            )
        )

    def run(self) -> BenchReport:
        from ..machine import machine_info, relevant_env, versions

        # Every graph and its inputs first: a batch the graph cannot take or a stored input it
        # cannot read is refused before anything is measured, the roofs included.
        prepared = {}
        for i, source in enumerate(self.sources):
            for batch in self.batches_of(source):
                self.step(f"{source.label} b{batch}: the graph and its inputs")
                prepared[i, batch] = prepare(source, batch, self.settings, self.work)
        self.measure_roofs("start")
        report = BenchReport(
            machine=machine_info(),
            versions=versions(),
            settings={
                **self.settings.to_dict(),
                "env": {"ort": relevant_env(self.env), "torch": relevant_env(self.torch_env)},
                "sources": [
                    {
                        "label": s.label,
                        "kind": s.kind,
                        "variant": s.variant,
                        "path": str(s.path) if s.path else None,
                        "overrides": s.overrides,
                        "tuned": dataclasses.asdict(s.tuned) if s.tuned else None,
                        "module": s.module,
                    }
                    for s in self.sources
                ],
                "order": "per round: every ORT target, then every torch backend",
            },
            roofs=None,
        )
        finishing: list[tuple[BenchCell, Prepared, list]] = []
        for i, source in enumerate(self.sources):
            for batch in self.batches_of(source):
                prep = prepared[i, batch]
                names = [p for _, _, p in self.targets_of(source)]
                names = list(dict.fromkeys(names))
                self.step(f"{source.label} b{batch}: deploying {', '.join(names)}")
                prep.deployed = deploy_all(prep, names, self.settings.seed)
                ort_cells, torch_cells = self.cells_of(source, prep)
                blocks = self.time_rounds(source, prep, ort_cells, torch_cells)
                self.extra_passes(prep, ort_cells)
                for cell in [*ort_cells.values(), *torch_cells.values()]:
                    finishing.append((cell, prep, blocks.get(cell.id, [])))
                report.pairs += [
                    pair(ort_cell, torch_cell)
                    for (ep, _level, _precision), ort_cell in ort_cells.items()
                    for (_backend, device), torch_cell in torch_cells.items()
                    if device == ep
                ]
        if self.settings.roofs:
            self.measure_roofs("end")
        report.roofs, report.roofs_error = combine_roofs(self.roof_results)
        if self.cuda_roof_results:
            report.cuda_roofs, report.cuda_roofs_error = combine_roofs(self.cuda_roof_results)
        for cell, prep, blocks_of_cell in finishing:
            finish_cell(
                cell,
                prep,
                blocks_of_cell,
                report.cuda_roofs if cell.device == "cuda" else report.roofs,
            )
            report.cells.append(cell.to_dict())
        report.notes = measurement_notes(report)
        if self.progress is not None:
            self.progress(self.total, self.total, "done")
        return report

    def cells_of(
        self, source: Source, prep: Prepared
    ) -> tuple[dict[tuple[str, str, str], BenchCell], dict[tuple[str, str], BenchCell]]:
        """The empty cells of one source at one batch: ``{(ep, level, precision): cell}``, and
        ``{(backend, device): cell}`` for PyTorch (variants only: a bare graph has no module)."""
        s = self.settings
        tuned = {}
        if source.tuned:
            t = source.tuned
            tuned = {"tuned": t.record, "tuned_settings": t.settings, "tuned_threads": t.threads}
        ort_cells = {
            (ep, level, precision): cell_base(
                prep,
                "ort",
                f"{ep}/{level}/{precision}",
                s,
                ep=ep,
                device=ep,
                opt_level=level,
                precision=precision,
                **tuned,
            )
            for ep, level, precision in self.targets_of(source)
        }
        torch_cells = {}
        if source.has_torch:
            torch_cells = {
                (backend, device): cell_base(prep, backend, device, s, device=device)
                for device in self.devices
                for backend in self.torch_backends
            }
        return ort_cells, torch_cells

    def time_rounds(
        self, source: Source, prep: Prepared, ort_cells: dict, torch_cells: dict
    ) -> dict[str, list]:
        """``rounds`` × (every ORT target, then every torch backend), each in a fresh worker."""
        s = self.settings
        blocks: dict[str, list] = defaultdict(list)
        inputs = {k: str(v) for k, v in prep.inputs.items()}
        for r in range(s.rounds):
            for (ep, level, precision), cell in ort_cells.items():
                self.step(f"{cell.id} round {r + 1}/{s.rounds}")
                deployed = prep.deployed.get(precision)
                if prep.error:
                    result = {"ok": False, "error": prep.error}
                elif isinstance(deployed, str):  # no such graph: nothing to time, not a failure
                    result = {"ok": False, "status": "undeployable", "error": deployed}
                elif ep in self.unavailable_eps:
                    result = {
                        "ok": False,
                        "status": "unavailable",
                        "error": self.unavailable_eps[ep],
                    }
                else:
                    result = self.worker(
                        {
                            "kind": "ort",
                            **deployed.job(),
                            "ep": ep,
                            "opt_level": level,
                            **self.session_job(source),
                            **_timing(s),
                        }
                    )
                record_round(cell, r, result, blocks)
            for (backend, device), cell in torch_cells.items():
                self.step(f"{cell.id} round {r + 1}/{s.rounds}")
                result = self.worker(
                    {
                        "kind": "torch",
                        "variant": source.variant,
                        "config": prep.config,
                        "seed": s.seed,
                        "input": inputs[next(iter(inputs))],
                        **(
                            torch_job(source.module, list(inputs.values())) if source.module else {}
                        ),
                        "device": device,
                        "compile": backend == "torch_compile",
                        "tf32": s.cuda_options.get("use_tf32") == "1",
                        **_timing(s),
                    },
                    torch_side=True,
                )
                record_round(cell, r, result, blocks)
        return blocks

    def each_ort_cell(self, prep: Prepared, ort_cells: dict, what: str, job: dict[str, Any]):
        """One more worker per ORT cell that ran: ``(ep, cell, result)``."""
        s = self.settings
        for (ep, level, precision), cell in ort_cells.items():
            self.step(f"{cell.id} {what}")
            if cell.status == "ok":
                yield (
                    ep,
                    cell,
                    self.worker(
                        {
                            **prep.deployed[precision].job(),
                            "ep": ep,
                            "opt_level": level,
                            **self.session_job(prep.source),
                            "warmup": s.warmup,
                            **job,
                        }
                    ),
                )

    def extra_passes(self, prep: Prepared, ort_cells: dict) -> None:
        """ORT's per-op profile and the per-node times: separate workers, never the timed one."""
        s = self.settings
        if s.profile:
            for ep, cell, result in self.each_ort_cell(
                prep,
                ort_cells,
                "profile",
                {
                    "kind": "ort",
                    "profile": True,
                    "profile_prefix": str(self.work / "profile"),
                    "warmup_s": s.warmup_s,
                    "blocks": 1,
                    "calls": s.profile_calls,
                },
            ):
                cell.per_op = result.get("profile") if result.get("ok") else None
                if cell.per_op is not None:
                    # ORT's release builds time a CUDA node's host side (its kernel launch), not
                    # the GPU kernel: the shares then say where launch time goes.
                    cell.per_op["clock"] = "host" if ep == "cuda" else "cpu"
                if not result.get("ok"):
                    cell.per_op_error = result.get("error")
        if s.per_node:
            for _ep, cell, result in self.each_ort_cell(
                prep, ort_cells, "per node", {"kind": "nodes", "calls": s.per_node_calls}
            ):
                cell.per_node = result.get("per_node") if result.get("ok") else None
                if not result.get("ok"):
                    cell.per_node_error = result.get("error")


def _timing(settings: BenchSettings) -> dict[str, Any]:
    return {
        "warmup": settings.warmup,
        "warmup_s": settings.warmup_s,
        "blocks": settings.blocks,
        "calls": settings.calls,
    }
