"""Timing: ONNX Runtime against PyTorch on the same input, threads and machine.

    harness.py     the run: sources, cells, alternating rounds in fresh processes, settings
    worker.py      one timed backend in one fresh process (python -m onnxconv.bench.worker)
    stats.py       percentiles, block spreads, paired ratios, ORT profile op groups and shares
    roofs.py       the machine's compute and memory roofs
    node_times.py  every node timed alone in a one-node model (--per-node)
    report.py      the report: JSON schema, Markdown, console rows
    compare.py     two reports side by side (bench-compare)
    plots.py       PNG plots

Importing this package imports nothing heavy: ``bench-compare`` reads reports without
onnxruntime or torch.
"""
