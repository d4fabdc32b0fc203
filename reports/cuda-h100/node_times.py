"""One-off experiment: where does ORT's CUDA time go in shuffle_unit at batch 32, 960x56x56?

Times every node of the exported graph alone (its own one-node model, IO binding) on the EP,
under each cudnn_conv_algo_search, and the whole graph, then PyTorch layer by layer.
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, shape_inference

from onnxconv import variants
from onnxconv.export import ExportOptions, export_variants
from onnxconv.runtime import preload_cuda_libraries

EP = sys.argv[1] if len(sys.argv) > 1 else "cuda"
BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 32
HW = int(sys.argv[3]) if len(sys.argv) > 3 else 56
N = 20
preload_cuda_libraries()
tmp = Path(tempfile.mkdtemp())
config = {"height": HW, "width": HW, "batch": BATCH}
(res,) = export_variants(["shuffle_unit"], tmp, ExportOptions(), overrides=config)
model = shape_inference.infer_shapes(onnx.load(res.model_path))
g = model.graph
inits = {i.name: i for i in g.initializer}
shapes = {v.name: v for v in list(g.value_info) + list(g.input) + list(g.output)}


def providers(search):
    if EP == "cpu":
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": search, "use_tf32": "0"})]


def time_model(m, search):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=providers(search))
    feeds = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
             for i in s.get_inputs()}
    dev = "cuda" if EP == "cuda" else "cpu"
    b = s.io_binding()
    for k, v in feeds.items():
        b.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v, dev, 0))
    for o in s.get_outputs():
        b.bind_output(o.name, dev, 0)
    for _ in range(3):
        s.run_with_iobinding(b)
    t = []
    for _ in range(N):
        t0 = time.perf_counter()
        s.run_with_iobinding(b)
        t.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(t))


def one_node(node):
    ins = [n for n in node.input if n and n not in inits]
    used_inits = [inits[n] for n in node.input if n in inits]
    graph = helper.make_graph([node], "one", [shapes[n] for n in ins],
                              [shapes[n] for n in node.output], used_inits)
    m = helper.make_model(graph, opset_imports=model.opset_import)
    m.ir_version = model.ir_version
    return m


searches = ["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] if EP == "cuda" else ["-"]
print(f"shuffle_unit batch {BATCH} {HW}x{HW} on {EP}: ms (median of {N})")
print("node".ljust(40), *(s.ljust(11) for s in searches))
for node in g.node:
    m = one_node(node)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in ("group", "kernel_shape", "perm")}
    label = f"{node.op_type} {attrs}"[:40]
    print(label.ljust(40), *(f"{time_model(m, s):<11.3f}" for s in searches), flush=True)
print("whole graph".ljust(40), *(f"{time_model(model, s):<11.3f}" for s in searches), flush=True)

import torch  # noqa: E402

dev = "cuda" if EP == "cuda" else "cpu"
torch.backends.cudnn.allow_tf32 = False
torch.backends.cudnn.benchmark = True
module = variants.get("shuffle_unit").build({"height": HW, "width": HW, "batch": BATCH}).to(dev)
x = torch.randn(BATCH, 960, HW, HW, device=dev)


def ttime(fn):
    with torch.inference_mode():
        for _ in range(3):
            fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        t = []
        for _ in range(N):
            t0 = time.perf_counter()
            fn()
            if dev == "cuda":
                torch.cuda.synchronize()
            t.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(t))


print("torch whole module", f"{ttime(lambda: module(x)):.3f}")
for name, child in module.named_modules():
    if isinstance(child, torch.nn.Conv2d):
        cin = torch.randn(BATCH, child.in_channels, *( (HW, HW) ), device=dev)
        print(f"torch {name} Conv2d {child.in_channels}->{child.out_channels} k{child.kernel_size} g{child.groups}",
              f"{ttime(lambda: child(cin)):.3f}", flush=True)
