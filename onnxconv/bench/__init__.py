"""Timing: ONNX Runtime against PyTorch on the same input, threads and machine.

    harness.py     the entry (run_bench) and the method
    loop.py        the run: alternating rounds in fresh processes, extra passes, the report
    settings.py    BenchSettings: what a run is asked to do, checked up front
    sources.py     what is benched (variants, .onnx files) and its graph, inputs and cost
    launch.py      starting a worker process: its environment, its job, its result
    cells.py       a cell's record: rounds, statistics, roofline figures; pairs; roofs combined
    worker.py      one timed backend in one fresh process (python -m onnxconv.bench.worker)
    pressure.py    the CPU pressure (PSI) around a worker: was the machine contended
    stats.py       percentiles, block spreads, paired ratios, ORT profile op groups and shares
    roofs.py       the machine's compute and memory roofs
    node_times.py  every node timed alone in a one-node model (--per-node)
    report.py      the report record: JSON schema, write, load, re-render
    report_notes.py    what to distrust in a measurement (spread, contention, roofs)
    report_text.py     cells and runs in words; the console rows
    report_markdown.py the Markdown page
    compare.py     two reports side by side (bench-compare): the record and the verdicts
    compare_stats.py   bootstrap interval of a ratio, the verdict, busy cells
    compare_text.py    the comparison as a table and Markdown
    plots.py       PNG plots

Importing this package imports nothing heavy: ``bench-compare`` reads reports without
onnxruntime or torch.
"""
