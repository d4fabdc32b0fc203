"""A bench report's cells and run in words, shared by the Markdown page, the console table
and the plot captions: where a cell's nodes ran, its input shapes, the configs of a run and
:func:`summary_rows`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..errors import UserInputError
from .report_notes import was_held_up
from .stats import OP_GROUPS, measured_spread, op_shares

if TYPE_CHECKING:
    from .report import BenchReport


def fmt(value: Any, spec: str = ".3g", scale: float = 1.0, suffix: str = "") -> str:
    """``value × scale`` formatted by ``spec``, then ``suffix``; ``"—"`` for ``None``."""
    if value is None:
        return "—"
    return f"{value * scale:{spec}}{suffix}"


def _ep_short(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda`` (as :func:`onnxconv.runtime.short_name`, without
    importing onnxruntime)."""
    return provider.removesuffix("ExecutionProvider").lower() or provider


def placement(cell: Mapping[str, Any]) -> str:
    """Where a cell's nodes ran: ``"cpu:3"``, ``"cuda:12, cpu:2"`` (ORT, from its profile),
    ``"cpu"`` / ``"cuda"`` for PyTorch (its device), ``"—"`` for an ORT cell without a profile.

    Reports before schema 3 name each EP's op types, not its node count: with one EP every
    node ran there; with several the op types are shown (``"cuda: Conv, Relu; cpu: Reshape"``).
    """
    if cell.get("backend") != "ort":
        return str(cell.get("device") or "—")
    per_op = cell.get("per_op") or {}
    counts = per_op.get("provider_nodes")
    if counts:
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{_ep_short(p)}:{n}" for p, n in ordered)
    providers = per_op.get("providers") or {}
    if len(providers) == 1 and per_op.get("nodes"):
        return f"{_ep_short(next(iter(providers)))}:{per_op['nodes']}"
    if providers:
        return "; ".join(f"{_ep_short(p)}: {', '.join(ops)}" for p, ops in providers.items())
    return "—"


def _variant_input_shape(cell: Mapping[str, Any]) -> list[int] | None:
    """The input shape of a variant cell from its config (reports before schema 3)."""
    if cell.get("kind") != "variant" or not cell.get("config"):
        return None
    from .. import variants

    try:
        return list(variants.get(cell["source"]).input_shape(cell["config"]))
    except (UserInputError, KeyError, TypeError):
        return None


def input_text(cell: Mapping[str, Any]) -> str:
    """The input shape(s) a cell was fed, e.g. ``1×64×56×56`` (``"—"`` when unknown)."""
    shapes = list((cell.get("input_shapes") or {}).values())
    if not shapes:
        shape = _variant_input_shape(cell)
        shapes = [shape] if shape else []
    return ", ".join("×".join(str(d) for d in shape) for shape in shapes) or "—"


def _config_text(config: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (config or {}).items() if k != "batch") or "—"


def describe_inputs(data: Mapping[str, Any]) -> list[str]:
    """One line per source: its label, the input shape at every batch, and its full config
    (a bare graph: its path)."""
    first: dict[str, list[Mapping[str, Any]]] = {}
    for c in data["cells"]:
        batches = first.setdefault(c["label"], [])
        if all(b["batch"] != c["batch"] for b in batches):
            batches.append(c)
    lines = []
    for label, cells in first.items():
        shapes = " and ".join(input_text(c) for c in cells)
        what = (
            f"config {_config_text(cells[0].get('config'))}"
            if cells[0].get("kind") == "variant"
            else f"graph {cells[0].get('source')}"
        )
        lines.append(f"{label}: input {shapes}; {what}")
    return lines


def _variant_defaults(source: Mapping[str, Any]) -> dict[str, Any]:
    if source.get("kind") != "variant" or not source.get("variant"):
        return {}
    from .. import variants

    try:
        return variants.get(source["variant"]).config()
    except UserInputError:
        return {}


def _overrides_text(sources: list[Mapping[str, Any]]) -> str:
    """What the run set: the overrides every source shares, then each source's own, leaving out
    values equal to the variant's default (reports before schema 3 recorded those too)."""
    given = [
        {
            k: v
            for k, v in (s.get("overrides") or {}).items()
            if str(_variant_defaults(s).get(k, object())) != str(v)
        }
        for s in sources
    ]
    common = dict(given[0]) if given else {}
    for overrides in given[1:]:
        common = {k: v for k, v in common.items() if str(overrides.get(k)) == str(v)}
    own = [
        f"{s.get('label')}: {_config_text({k: v for k, v in g.items() if k not in common})}"
        for s, g in zip(sources, given)
        if set(g) - set(common)
    ]
    return "; ".join([_config_text(common) if common else "defaults", *own])


def run_caption(data: Mapping[str, Any]) -> str:
    """The input shapes and config overrides of a run in a few words, for plot captions."""
    by_shape: dict[str, list[str]] = {}  # "64×56×56" (batch left out) -> the labels fed it
    batches: list[int] = []
    for c in data["cells"]:
        text = input_text(c)
        prefix = f"{c['batch']}×"
        labels = by_shape.setdefault(text.removeprefix(prefix) if "," not in text else text, [])
        if c["label"] not in labels:
            labels.append(c["label"])
        batches += [] if c["batch"] in batches else [c["batch"]]
    inputs = "; ".join(f"{shape} ({', '.join(labels)})" for shape, labels in by_shape.items())
    inputs = f"batch {', '.join(str(b) for b in batches)} × {inputs}"
    config = _overrides_text(data["settings"].get("sources") or [])
    return f"inputs: {inputs} · config set: {config}"


def _held_up(pair: Mapping[str, Any], cells: Mapping[str, Any]) -> bool:
    """Whether either cell of ``pair`` was held up (its ratio then says little)."""
    return any(
        was_held_up(cells[pair[k]].get("stats"))
        for k in ("ort_cell", "torch_cell")
        if pair[k] in cells
    )


def summary_rows(report: BenchReport | Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` for a console table: one row per cell, strings only."""
    data = report if isinstance(report, Mapping) else report.to_dict()
    pairs = {p["ort_cell"]: p for p in data["pairs"] if p["torch_backend"] == "torch"}
    by_id = {c["id"]: c for c in data["cells"]}
    headers = [
        "variant",
        "batch",
        "backend/target",
        "ran on",
        "p50 ms",
        "p90 ms",
        "spread",
        "GFLOP/s",
        "% peak",
        "torch/ORT (?: held up)",
        "conv/reshape+transpose/reorder/other %",
    ]
    rows = []
    for c in data["cells"]:
        st = c.get("stats") or {}
        fr, basis = op_shares(c)
        pair = pairs.get(c["id"])
        rows.append(
            [
                c["label"],
                str(c["batch"]),
                f"{c['backend']} {c['target']}",
                placement(c) if c["status"] == "ok" else "—",
                fmt(st.get("p50_ms"), ".4g") if c["status"] == "ok" else c["status"],
                fmt(st.get("p90_ms"), ".4g"),
                fmt(measured_spread(st), ".0f", 100, "%"),
                fmt(c.get("gflops"), ".1f"),
                fmt(c.get("compute_roof_fraction"), ".0f", 100),
                fmt(pair and pair["torch_over_ort"], ".2f")
                + ("?" if pair and _held_up(pair, by_id) else ""),
                "/".join(f"{100 * fr[g]:.0f}" for g in OP_GROUPS) + f" ({basis})" if fr else "—",
            ]
        )
    return headers, rows
