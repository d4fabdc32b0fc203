"""A tune run's files: the report (JSON, Markdown) and the deployment beside the original
(``model.tuned.onnx`` and ``tuned.json``), each written atomically.

Report JSON (schema ``onnxconv.tune`` version 1; :meth:`.search.TuneReport.to_dict`): ``created``;
``subject`` (label, model, variant, config, the ``sources`` that decide, notes); ``ep``,
``threads``, ``batch``; ``options`` (rewrites allowed, whether settings were searched, the timing
``method``, proof ``seeds``, ``distributions`` and ``proof_batches`` (null: the graph's fixed
batch), ``precisions`` tried, ``accuracy_budget``, ``calibration``, ``time_budget_s``);
``default`` and ``winner``
(candidate names) and ``decision`` (one sentence); ``candidates[]``: ``name`` (``formulation @
settings``), ``winner`` (bool), ``stage`` (``formulations``, ``settings-1``, ...), ``formulation``,
``rewrites``, ``changes`` (what each rewrite did where), ``settings`` (opt_level, session_config,
session_options, cuda_options), ``exact_permutation``, ``macs``, ``proof`` (validate's
``status``/``kind``/``reason``, ``deciders``, ``worst`` error per opinion, ``placement``,
``cases``, ``bit_identical`` and whether it was required, ``max_abs_vs_original``,
``disqualified``; a precision candidate's ``quant``: its metrics against the budget),
``precision``, ``timing`` (``rounds_p50_ms``, ``rounds_pressure``, ``rounds_retries``, pooled
``stats`` as bench's LatencyStats, ``session``) or null when not timed, ``speedup_vs_default`` and
``speedup_rounds`` (default p50 over this p50, per round; > 1 faster), ``torch_over_ort`` and
``torch_rounds`` (PyTorch eager p50 over this p50; > 1: ORT faster), ``reference`` and
``beats_reference``; ``torch`` (per stage, PyTorch eager's timing); ``per_op`` (ORT's profile by op
group for the default and the winner); ``bound`` (what bounds the winner, :mod:`.bounds`: its
p50 split into ``parts_ms``, the ``bound`` part, ``sentence``, the roofs and ``per_node``; null
when not analysed); ``machine``, ``versions``; ``notes``; ``skipped_stages`` (the stages the time
budget cut short: some or all of their candidates were not proven or timed); ``held_up`` (the
timings, candidates' or ``PyTorch eager``, whose p50 was over 10x their fastest call).

``tuned.json`` (schema ``onnxconv.tuned`` version 1): ``model`` (``model.tuned.onnx``) and its
``sha256``, ``original`` (path, sha256), ``target`` (``ep/level/precision``), ``precision``
(``fp32`` unless a lower one won under the budget) and then its ``accuracy_budget``
(``metric=value,...``), ``ep``, ``threads``,
``batch``, ``session`` (the settings to build the session with), ``rewrites`` and ``changes``,
``default_kept``, ``timing`` (p50/p90, speedup over the default, torch/ORT), ``proof`` (the
winner's), ``decision``, ``machine``, ``versions``, ``created``.

With a Markdown path the PNG of :mod:`.plots` is written beside it (same stem, ``.png``) and
linked from the page, as bench writes its plots beside ``bench.md``. ``python -m
onnxconv.tune.report REPORT.json ...`` writes both again from a report JSON, with today's
renderer (the JSON itself is left as it is).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from onnxconv.bench.stats import OP_GROUPS, largest_ops
from onnxconv.errors import UserInputError, one_line
from onnxconv.export_layout import graph_sha256
from onnxconv.machine import describe_gpus
from onnxconv.quant_check import headline
from onnxconv.quant_metrics import describe_budget, parse_budget
from onnxconv.report import json_text, rerender_main, write_files

from .bounds import sentence
from .candidates import FORMULATIONS, SCHEMA, TuneReport
from .proof import REFERENCE_BATCHES, SEEDS
from .rewrites import REWRITES

#: How the winner is chosen (:func:`.search.beats`), as the reports say it.
WIN_RULE = (
    "a candidate wins only if it beats its reference (the stage's incumbent, or for the "
    "incumbent the default) and the default: faster in every paired round, its slowest round "
    "faster than the other's fastest; of those, the largest median speedup over the default wins"
)


def beats_text(reference: str | None, beats_reference: bool) -> str:
    """A candidate's "beats reference" cell: ``—`` without a reference, else yes or no."""
    return "—" if not reference else "yes" if beats_reference else "no"


TUNED_SCHEMA = "onnxconv.tuned"
TUNED_MODEL, TUNED_JSON = "model.tuned.onnx", "tuned.json"


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "—" if value is None else f"{value:{spec}}"


#: A proven candidate whose sources are insensitive: its proof is bit-identity alone.
BIT_FOR_BIT = "pass bit for bit (sources insensitive)"


def proof_word(proof: dict[str, Any]) -> str:
    """How a candidate's proof ended, in a few words (a :class:`.proof.Proof` as a dict)."""
    if proof["disqualified"]:
        return f"no: {proof['status']} {proof['kind']}".strip()
    if proof.get("quant"):
        return "within budget"
    return BIT_FOR_BIT if proof["status"] != "pass" else "pass"


def _proof_cell(c: dict[str, Any]) -> str:
    proof, said = c["proof"], proof_word(c["proof"])
    if proof["disqualified"]:
        return f"**{said[:2]}**{said[2:]}"
    if proof.get("quant"):
        return f"{said} ({headline(proof['quant'])})"
    worst = ", ".join(f"{op} {w['max_abs']:.2g}" for op, w in proof["worst"].items())
    return f"{said} ({worst})" if worst and said == "pass" else said


def _bits(c: dict[str, Any]) -> str:
    proof = c["proof"]
    if proof["bit_identical"] is None:
        return "—"
    said = "yes" if proof["bit_identical"] else f"no ({proof['max_abs_vs_original']:.2g})"
    return said + (" (required)" if proof["bit_identical_required"] else "")


def to_markdown(report: TuneReport | dict[str, Any], plot_name: str | None = None) -> str:
    """The Markdown page of a tune report; ``plot_name`` (the PNG's name beside the page) adds
    the plot under the candidates' intro."""
    data = report.to_dict() if isinstance(report, TuneReport) else report
    m, v, s, method = data["machine"], data["versions"], data["subject"], data["options"]["method"]
    lines = [
        f"# onnxconv tune: {s['label']}",
        "",
        f"- created: {data['created']}",
        f"- graph: `{s['model']}`"
        + (f" (variant {s['variant']}, config {s['config']})" if s["variant"] else ""),
        f"- target: {data['ep']}, batch {data['batch']}, {data['threads']} thread(s)",
        f"- machine: {m.get('cpu_model')} — {m.get('usable_cores')} usable / "
        f"{m.get('logical_cores')} logical cores; GPU: {describe_gpus(m) or 'none'}",
        f"- versions: onnxruntime {v.get('onnxruntime')}, torch {v.get('torch')}, onnx "
        f"{v.get('onnx')}, numpy {v.get('numpy')}, Python {v.get('python')}",
        "- proof: validate's checks against "
        + "; ".join(s["sources"])
        + (
            f", seeds {data['options']['seeds']} × {data['options']['distributions']}"
            if data["options"]["seeds"]  # none: the sources above name the inputs drawn
            else ""
        )
        + f"{_batches_text(data['options'].get('proof_batches'))}, fp32, on the target "
        "EP at each candidate's level and session settings; formulations that only move data "
        "must be bit-identical to the original on ORT CPU",
        f"- method: as `onnxconv bench`: each run a fresh process, warm-up ≥ {method['warmup']} "
        f"calls and ≥ {method['warmup_s']} s, {method['blocks']} blocks × {method['calls']} "
        f"calls; {method['rounds']} rounds per stage alternating the default, every candidate "
        "and PyTorch eager; ratios paired by round, medians quoted",
        f"- {WIN_RULE}",
        *_budget_lines(data["options"]),
        f"- **decision**: {data['decision']}",
        "",
        "## Candidates",
        "",
        "p50/p90 in ms over every timed call of the stage; × default: the default's p50 over "
        "this one's (median of paired rounds, > 1 faster); torch/ORT: PyTorch eager's p50 over "
        "this one's (> 1: ORT faster).",
        *(["", f"![candidates and where the time goes]({plot_name})"] if plot_name else []),
        "",
        "| stage | candidate | MACs | proof (worst abs error) | bit-identical | p50 | p90 | "
        "× default | torch/ORT | beats reference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in data["candidates"]:
        stats = (c["timing"] or {}).get("stats") or {}
        winner = " **(winner)**" if c["winner"] else ""
        lines.append(
            f"| {c['stage']} | `{c['name']}`{winner} | {_fmt(c['macs'], ',')} | "
            f"{_proof_cell(c)} | {_bits(c)} | {_fmt(stats.get('p50_ms'), '.4g')} | "
            f"{_fmt(stats.get('p90_ms'), '.4g')} | {_fmt(c['speedup_vs_default'], '.2f')} | "
            f"{_fmt(c['torch_over_ort'], '.2f')} | "
            f"{beats_text(c['reference'], c['beats_reference'])} |"
        )
    for stage, torch in data["torch"].items():
        stats = (torch or {}).get("stats")
        if not stats:
            continue
        lines.append(
            f"\nPyTorch eager ({stage}): p50 {_fmt(stats.get('p50_ms'), '.4g')} ms, "
            f"p90 {_fmt(stats.get('p90_ms'), '.4g')} ms"
        )
    lines += _bound_lines(data.get("bound"))
    lines += _details(data)
    return "\n".join(lines) + "\n"


def _bound_lines(bound: dict[str, Any] | None) -> list[str]:
    """What bounds the winner (:mod:`.bounds`), when it was analysed."""
    if not bound:
        return []
    if "error" in bound:
        return ["", "## What bounds the winner", "", f"Not analysed: {bound['error']}."]
    parts = bound["parts_ms"]
    lines = [
        "",
        "## What bounds the winner",
        "",
        f"**{sentence(bound)}.**",
        "",
        f"Each of the winner's {bound['nodes']} nodes timed alone on its EP "
        f"({bound['clock']}), set beside the winner's p50; the overhead is the p50 less the sum "
        "of the nodes alone. Roofs measured on this machine as `onnxconv bench` measures them.",
        "",
        "| part | ms | share of p50 |",
        "|---|---|---|",
    ]
    for part, ms in parts.items():
        lines.append(f"| {part} | {ms:.4g} | {ms / bound['p50_ms']:.0%} |")
    nodes_ms = sum(ms for part, ms in parts.items() if part != "overhead")
    if nodes_ms > bound["p50_ms"]:
        lines += [
            "",
            f"The nodes alone sum to {nodes_ms:.4g} ms, more than the p50: timed alone, each "
            "pays a launch and a synchronisation that the whole run overlaps, so the overhead "
            "shows as 0 and the shares add up to more than 100%.",
        ]
    return lines


def _batches_text(batches: list[int] | None) -> str:
    """The proof's batches in words (None: the graph's own, fixed)."""
    if not batches:
        return ""
    small = [b for b in batches if b in REFERENCE_BATCHES]
    large = [b for b in batches if b not in REFERENCE_BATCHES]
    said = f" at batch{'es' if len(small) > 1 else ''} {', '.join(map(str, small))}"
    if large:
        said += f" and seed {SEEDS[0]} at batch {', '.join(map(str, large))}"
        said += " (the reference evaluator at the small batches only)"
    return said


def _budget_lines(options: dict[str, Any]) -> list[str]:
    if not options.get("precisions"):
        return ["- precisions: fp32 only (lower ones need an explicit --accuracy-budget)"]
    return [
        f"- precisions tried: {', '.join(options['precisions'])} (int8 calibrated by "
        f"{options['calibration']}), each proven within the user's accuracy budget "
        f"({describe_budget(parse_budget(options['accuracy_budget']))}) against the fp32 source "
        "on the evaluation inputs"
    ]


def _details(data: dict[str, Any]) -> list[str]:
    used = sorted({r for c in data["candidates"] for r in c["rewrites"]}, key=list(REWRITES).index)
    lines = ["", "## Rewrites", ""]
    lines += [f"- `{name}`: {REWRITES[name].description}" for name in used]
    changed = {c["formulation"]: c["changes"] for c in data["candidates"] if c["changes"]}
    if changed:
        lines += ["", "What each formulation changed:", ""]
        for name, changes in changed.items():
            lines.append(f"- `{name}`:")
            lines += [f"  - {change}" for change in changes]
    elif FORMULATIONS in data.get("skipped_stages", []):
        lines.append("No formulation but the original was timed: the time budget skipped them.")
    else:
        allowed = ", ".join(f"`{name}`" for name in data["options"]["rewrites"]) or "none allowed"
        lines.append(f"No rewrite applies to this graph (allowed: {allowed}).")
    rejected = [c for c in data["candidates"] if c["proof"]["disqualified"]]
    if rejected:
        lines += ["", "## Disqualified", ""]
        lines += [f"- `{c['name']}`: {c['proof']['disqualified']}" for c in rejected]
    profiles = {k: v for k, v in data["per_op"].items() if v}
    if profiles:
        lines += [
            "",
            "## Where the time goes (ORT profile, µs per run)",
            "",
            "| candidate | " + " | ".join(OP_GROUPS) + " | run | largest op types |",
            "|---|" + "---|" * (len(OP_GROUPS) + 2),
        ]
        for name, p in profiles.items():
            groups = " | ".join(f"{p['groups_us'][g]:.1f}" for g in OP_GROUPS)
            lines.append(
                f"| `{name}` | {groups} | {_fmt(p.get('run_us_per_run'), '.1f')} | "
                f"{largest_ops(p.get('by_op_us') or {})} |"
            )
        if data["ep"] == "cuda":
            lines += [
                "",
                "On the CUDA EP the profile's node times are the host's time to launch each "
                "node's kernels (they run asynchronously; `run` is the whole synchronised call), "
                "and a CUDA graph's replay records no node at all: for device time per node see "
                '"What bounds the winner", where each node is timed alone with IO binding.',
            ]
    notes = [*data["subject"]["notes"], *data["notes"]]
    if notes:
        lines += ["", *(f"- note: {note}" for note in notes)]
    return lines


def plot_path(markdown_path: str | os.PathLike) -> Path:
    """Where a report's plot goes: beside its Markdown page, with the same stem."""
    return Path(markdown_path).with_suffix(".png")


def report_files(
    report: TuneReport | dict[str, Any], json_path: str | None, markdown_path: str | None
) -> dict[Path, bytes | str]:
    """The files of a tune report: the JSON at ``json_path``, the Markdown at ``markdown_path``
    and its PNG beside it (same stem, ``.png``)."""
    data = report.to_dict() if isinstance(report, TuneReport) else report
    files: dict[Path, bytes | str] = {}
    if json_path:
        files[Path(json_path)] = json_text(data)
    if markdown_path:
        from .plots import plot_png

        plot = plot_path(markdown_path)
        files[plot] = plot_png(data)  # before the page that links it
        files[Path(markdown_path)] = to_markdown(data, plot.name)
    return files


def write_report(
    report: TuneReport | dict[str, Any], json_path: str | None, markdown_path: str | None
) -> list[Path]:
    """:func:`report_files`, each written whole, the PNG before the page. Returns the files."""
    return write_files(report_files(report, json_path, markdown_path))


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """A tune report JSON as written by :func:`write_report`; a :class:`UserInputError` (one
    line) when it cannot be read or is another tool's report."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: not a readable tune report ({one_line(error)})") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise UserInputError(f"{path}: not a tune report (schema {schema!r}, not {SCHEMA!r})")
    return data


def rerender(path: str | os.PathLike) -> list[Path]:
    """Write the Markdown and PNG again beside a report JSON (same stem), from its data and with
    today's renderer; the JSON itself is left as it is. Returns the files written."""
    path = Path(path)
    data = load_report(path)
    try:
        return write_report(data, None, str(path.with_suffix(".md")))
    except KeyError as error:
        raise UserInputError(f"{path}: not a readable tune report (no field {error})") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m onnxconv.tune.report REPORT_JSON ...``: re-render committed reports."""
    return rerender_main(argv, "onnxconv.tune.report", "REPORT_JSON", rerender)


def tuned_record(report: TuneReport, model_bytes: bytes, out_dir: Path) -> dict[str, Any]:
    """What ``tuned.json`` (written into ``out_dir``) says: how to deploy the tuned model, and
    why it may be trusted. The original's path is relative to ``out_dir``, so the record reads
    from any working directory and when both folders move together; ``absolute`` as well."""
    w = report.winner
    stats = (w.timing.stats if w.timing else None) or {}
    original = Path(report.subject["model"]).resolve()
    return {
        "schema": TUNED_SCHEMA,
        "schema_version": 1,
        "created": report.created,
        "model": TUNED_MODEL,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "original": {
            "path": os.path.relpath(original, Path(out_dir).resolve()),
            "absolute": str(original),
            "sha256": graph_sha256(original) if original.is_file() else None,
            "module": report.subject.get("module"),
        },
        "target": f"{report.ep}/{w.settings.opt_level}/{w.precision}",
        "precision": w.precision,
        "accuracy_budget": report.options.get("accuracy_budget") if w.precision != "fp32" else None,
        "ep": report.ep,
        "threads": report.threads,
        "batch": report.batch,
        "session": w.settings.to_dict(),
        "candidate": w.name,
        "rewrites": w.rewrites,
        "changes": w.changes,
        "default_kept": w.is_default,
        "timing": {
            "p50_ms": stats.get("p50_ms"),
            "p90_ms": stats.get("p90_ms"),
            "speedup_vs_default": w.speedup,
            "torch_over_ort": w.torch_over_ort,
        },
        "proof": w.proof.to_dict(),
        "decision": report.decision,
        "machine": report.machine,
        "versions": report.versions,
    }


def tuned_files(report: TuneReport, out_dir: str | Path) -> dict[Path, bytes | str]:
    """``model.tuned.onnx`` (the winner's graph; the original's when no rewrite won) and
    ``tuned.json`` for ``out_dir``."""
    out = Path(out_dir)
    data = report.winner.model.SerializeToString()
    return {out / TUNED_MODEL: data, out / TUNED_JSON: json_text(tuned_record(report, data, out))}


if __name__ == "__main__":
    raise SystemExit(main())
